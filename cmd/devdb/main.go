// Command devdb prints the connection URL of a database for `make run`:
// DATABASE_URL when it is set; else the database jobmanager on the
// PostgreSQL server at 127.0.0.1:5432, created when missing.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	localServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	localDB     = "postgres://postgres@127.0.0.1:5432/jobmanager?sslmode=disable"
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

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	conn, err := pgx.Connect(ctx, localServer)
	if err != nil {
		return "", fmt.Errorf("no DATABASE_URL set and no PostgreSQL on 127.0.0.1:5432: %w", err)
	}
	defer conn.Close(ctx)

	_, err = conn.Exec(ctx, "CREATE DATABASE jobmanager")
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") {
		return "", fmt.Errorf("create database jobmanager: %w", err)
	}

	return localDB, nil
}
