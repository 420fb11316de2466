// Package migrations holds the database schema as goose migrations. The
// files are embedded into the binary, and sqlc reads them as the schema.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
