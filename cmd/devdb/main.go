// Command devdb prints the connection URL of a database for `make run`:
// DATABASE_URL when it is set; else the database jobmanager on the
// PostgreSQL server at 127.0.0.1:5432; else the same database on a
// private server under .data/pg, started from the machine's PostgreSQL
// binaries and left running for the next `make run`. Databases are created
// when missing.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/industrial-data/jobmanager/internal/pgserver"
)

const (
	localServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	localDB     = "postgres://postgres@127.0.0.1:5432/jobmanager?sslmode=disable"
	privateDir  = ".data/pg"
)

func main() {
	url, err := databaseURL(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "devdb:", err)
		os.Exit(1)
	}

	fmt.Println(url)
}

func databaseURL(ctx context.Context) (string, error) {
	if url := os.Getenv("DATABASE_URL"); url != "" {
		return url, nil
	}

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	if err := createDatabase(ctx, localServer); err == nil {
		return localDB, nil
	}

	fmt.Fprintf(os.Stderr, "devdb: no PostgreSQL on 127.0.0.1:5432; starting one under %s\n", privateDir)

	server, err := pgserver.Start(privateDir)
	if err != nil {
		return "", err
	}

	if err := createDatabase(ctx, server.URL("postgres")); err != nil {
		return "", err
	}

	return server.URL("jobmanager"), nil
}

// createDatabase creates the database jobmanager on the server whose
// maintenance database adminURL names, unless it exists.
func createDatabase(ctx context.Context, adminURL string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)

	_, err = conn.Exec(ctx, "CREATE DATABASE jobmanager")
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") {
		return fmt.Errorf("create database jobmanager: %w", err)
	}

	return nil
}
