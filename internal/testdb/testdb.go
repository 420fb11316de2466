// Package testdb gives each test a fresh, migrated PostgreSQL database.
//
// The server is the one TEST_DATABASE_URL names; else the one on
// 127.0.0.1:5432 (user postgres), if it answers; else a throwaway server
// started from the machine's initdb and pg_ctl in a temporary directory.
// Each test package migrates one template database, and each test gets a
// copy of it, so tests run in parallel without seeing each other. Only
// databases this package created are ever dropped.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/industrial-data/jobmanager/internal/pgserver"
	"github.com/industrial-data/jobmanager/internal/store"
)

var (
	once     sync.Once
	admin    string // URL of the server's maintenance database
	template string // name of this process's migrated template
	setupErr error
	stopper  func()
)

// Main runs a package's tests, then the given clean-ups, then drops the
// template and stops any server it started. Call it from TestMain; it
// exits the process, so deferred calls there would never run.
func Main(m interface{ Run() int }, cleanups ...func()) {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}

	cleanup()
	os.Exit(code)
}

// URL returns the connection URL of a new migrated database that is
// dropped when the test ends.
func URL(t testing.TB) string {
	t.Helper()

	once.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatalf("test database: %v", setupErr)
	}

	name := "jobmanager_test_" + randomSuffix()
	ctx := context.Background()

	if err := execAdmin(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, template)); err != nil {
		t.Fatalf("create test database: %v", err)
	}

	t.Cleanup(func() {
		if err := execAdmin(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})

	return withDatabase(admin, name)
}

// Pool returns a pool on a new migrated database, closed when the test ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()

	pool, err := pgxpool.New(context.Background(), URL(t))
	if err != nil {
		t.Fatalf("connect to test database: %v", err)
	}

	t.Cleanup(pool.Close)

	return pool
}

// setup finds or starts a server and migrates this process's template.
func setup() error {
	ctx := context.Background()

	switch {
	case os.Getenv("TEST_DATABASE_URL") != "":
		admin = os.Getenv("TEST_DATABASE_URL")
	case answers("127.0.0.1:5432"):
		admin = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	default:
		dir, err := os.MkdirTemp("", "jobmanager-pg-")
		if err != nil {
			return err
		}

		server, err := pgserver.Start(dir)
		if err != nil {
			return err
		}

		admin = server.URL("postgres")
		stopper = func() { _ = server.Remove() }
	}

	template = "jobmanager_tpl_" + randomSuffix()
	if err := execAdmin(ctx, "CREATE DATABASE "+template); err != nil {
		return fmt.Errorf("create template: %w", err)
	}

	pool, err := pgxpool.New(ctx, withDatabase(admin, template))
	if err != nil {
		return fmt.Errorf("connect to template: %w", err)
	}
	defer pool.Close()

	if err := store.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrate template: %w", err)
	}

	return nil
}

func cleanup() {
	if template != "" {
		_ = execAdmin(context.Background(), "DROP DATABASE IF EXISTS "+template+" WITH (FORCE)")
	}

	if stopper != nil {
		stopper()
	}
}

func execAdmin(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)

	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, sql)
		// Copying a template fails while another session uses it; that
		// is brief, so try again.
		if err == nil || attempt == 20 || !strings.Contains(err.Error(), "is being accessed by other users") {
			return err
		}

		time.Sleep(50 * time.Millisecond)
	}
}

func withDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(fmt.Sprintf("database URL %q: %v", rawURL, err))
	}

	u.Path = "/" + name

	return u.String()
}

func answers(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}

	conn.Close()

	return true
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)

	return hex.EncodeToString(b)
}
