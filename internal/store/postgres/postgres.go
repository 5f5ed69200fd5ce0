// Package postgres is the PostgreSQL store, for production and for several
// instances sharing one database. It runs on pgxpool with raw SQL.
//
// Every write is one short transaction under READ COMMITTED. Balances move
// with UPDATE … RETURNING, so concurrent charges of one user serialise on
// that user's row and never lose an update. Idempotency keys are UNIQUE: a
// charge that loses an insert race for its key rolls back and is retried,
// and then finds the winner's record (a duplicate).
//
// This package owns the pool, the transactions and their retries, and the
// migrations under an advisory lock; the SQL of every Store method but
// UsageBetween is package sqlstore's, in PostgreSQL's dialect (store.go).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlstore"
	"github.com/openwebui-monitor/owmon/migrations"
)

// minConns is the least pool size Open sets when the DSN does not choose one.
const minConns = 8

// maxAttempts bounds the retries of a transaction that lost a race for an
// idempotency key (or hit a deadlock or serialization failure).
const maxAttempts = 10

// Store is the PostgreSQL implementation of store.Store.
type Store struct {
	sqlstore.Store // the shared SQL, on backend{s}
	pool           *pgxpool.Pool
	adopted        *Adoption // the old monitor's database Open took over, if any
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a postgres:// or postgresql:// URL,
// or key=value settings) and brings its schema up to date. Instances that
// start at once take turns migrating under an advisory lock.
//
// A schema that holds the old monitor's tables is adopted first, in one
// transaction (see legacy.go and Adopted); one that holds other tables is
// refused, untouched.
//
// The pool keeps pgxpool's size (max(4, CPUs)) but at least 8 connections,
// unless the DSN sets pool_max_conns; application_name defaults to "owmon".
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DSN: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") && cfg.MaxConns < minConns {
		cfg.MaxConns = minConns
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "owmon"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	adopted, err := prepare(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, adopted: adopted}
	s.Store = sqlstore.Store{D: dialect, B: backend{s}}
	return s, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close() // does not close the pool
	// Poll for the lock every second, for up to 5 minutes.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	return sqlstore.Migrate(ctx, "postgres", goose.DialectPostgres, db, migrations.Postgres,
		goose.WithSessionLocker(locker))
}

// Kind returns "postgres".
func (s *Store) Kind() string { return "postgres" }

// Pool returns the connection pool, for queries the Store interface does not
// cover (reports, LISTEN/NOTIFY).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// retryable reports errors after which the whole transaction may be run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return true
		}
	}
	return false
}

// retry runs fn until it neither loses a race nor hits a retryable error.
func retry[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		v, err = fn()
		if err == nil || !(errors.Is(err, sqlstore.ErrRace) || retryable(err)) {
			return v, err
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
	}
	return v, fmt.Errorf("postgres: gave up after %d attempts: %w", maxAttempts, err)
}
