package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/pgserver"
)

// privateServer starts a PostgreSQL server for one test, with a database
// jobmanager on it, and removes it when the test ends.
func privateServer(t *testing.T) *pgServer {
	t.Helper()

	base, err := os.MkdirTemp("", "jobmanager-replicas-pg-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(base, 0o755))
	dir := filepath.Join(base, "pg")

	s, err := pgserver.Start(dir)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = s.Remove()
		_ = os.RemoveAll(base)
	})

	conn, err := pgx.Connect(context.Background(), s.URL("postgres"))
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), "CREATE DATABASE jobmanager")
	require.NoError(t, err)
	conn.Close(context.Background())

	return &pgServer{
		url:  s.URL("jobmanager"),
		stop: s.Stop,
		start: func() error {
			_, err := pgserver.Start(dir)
			return err
		},
	}
}
