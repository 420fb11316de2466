// Package store keeps jobs in PostgreSQL. It is the only package that
// speaks SQL: queries live in db/queries, sqlc turns them into the sealed
// sqldb package, and this package turns rows into domain values.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/store/internal/sqldb"
	"github.com/industrial-data/jobmanager/migrations"
)

// Store reads and changes jobs in the database.
type Store struct {
	pool *pgxpool.Pool
	q    *sqldb.Queries
	opts Options
}

// New returns a store on a connection pool.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, q: sqldb.New(pool)}
}

// Migrate brings the schema up to date. It holds a PostgreSQL session lock
// while it works, so that replicas starting together apply each migration
// once.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	provider, err := newProvider(db)
	if err != nil {
		return err
	}

	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}

	return nil
}

// Migrated reports whether every migration has been applied.
func Migrated(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	provider, err := newProvider(db)
	if err != nil {
		return false, err
	}

	pending, err := provider.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("check migrations: %w", err)
	}

	return !pending, nil
}

func newProvider(db *sql.DB) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}

	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}

	return provider, nil
}

// inTx runs fn in a transaction and commits it when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(q *sqldb.Queries) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(s.q.WithTx(tx))
	})
}

// notFound turns a missing row into the domain's not-found error.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return job.ErrNotFound
	}

	return err
}
