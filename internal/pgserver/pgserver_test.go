package pgserver_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/pgserver"
)

func TestServerStartsStopsAndStartsAgainWithItsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Not t.TempDir: its mode keeps out the postgres user the server runs
	// as when the tests run as root.
	base, err := os.MkdirTemp("", "pgserver-test-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(base, 0o755))
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	dir := filepath.Join(base, "nested", "pg")

	s, err := pgserver.Start(dir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Remove() })

	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
	require.NoError(t, err)
	conn.Close(ctx)

	again, err := pgserver.Start(dir)
	require.NoError(t, err, "a running server is reused")
	require.Equal(t, s.URL("postgres"), again.URL("postgres"))

	require.NoError(t, s.Stop())
	_, err = pgx.Connect(ctx, s.URL("postgres"))
	require.Error(t, err, "a stopped server refuses connections")

	s, err = pgserver.Start(dir)
	require.NoError(t, err)

	conn, err = pgx.Connect(ctx, s.URL("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)

	var n int
	require.NoError(t, conn.QueryRow(ctx, "SELECT n FROM kept").Scan(&n))
	require.Equal(t, 42, n)
}
