package postgres

// PostgreSQL's side of package sqlstore: its dialect, the adapters of pgx,
// the backend (short retried transactions, or the pool), and Import with
// its table locks, COPY and sequences.

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlstore"
)

// dialect is PostgreSQL's: timestamptz (microseconds) and date columns,
// row locks (FOR UPDATE, SKIP LOCKED to choose among holds), exact NUMERIC
// sums clamped to a BIGINT, case-insensitive sorting in byte order
// (lower(x) COLLATE "C", as SQLite's NOCASE for ASCII, whatever the
// database's locale), ILIKE (which folds "É" too) and array parameters.
var dialect = sqlstore.Dialect{
	Name:        "postgres",
	Precision:   time.Microsecond,
	Time:        func(t time.Time) any { return t },
	Day:         func(t time.Time) any { return t },
	DayOf:       func(col string) string { return `(` + col + ` AT TIME ZONE 'UTC')::date` },
	ForUpdate:   ` FOR UPDATE`,
	SkipLocked:  ` FOR UPDATE SKIP LOCKED`,
	Fold:        func(col string) string { return `lower(` + col + `) COLLATE "C"` },
	Bytes:       func(col string) string { return col + ` COLLATE "C"` },
	Search:      func(col, p string) string { return col + ` ILIKE ` + p + ` ESCAPE '\'` },
	ArrayParams: true,
}

// pgQ is a pool or a transaction.
type pgQ interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// q is a pgQ as a sqlstore.Querier.
type q struct{ c pgQ }

func (q q) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return q.c.QueryRow(ctx, query, args...)
}

func (q q) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	r, err := q.c.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (q q) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := q.c.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

// backend runs sqlstore's statements on the pool.
type backend struct{ s *Store }

// Tx runs fn in a READ COMMITTED transaction and commits it, again while
// it loses a race for an idempotency key or hits a deadlock (retry).
func (b backend) Tx(ctx context.Context, fn func(ctx context.Context, q sqlstore.Querier) error) error {
	_, err := retry(ctx, func() (struct{}, error) {
		tx, err := b.s.pool.Begin(ctx)
		if err != nil {
			return struct{}{}, err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		if err := fn(ctx, q{tx}); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, tx.Commit(ctx)
	})
	return err
}

// Stmt runs fn on the pool: one statement is its own transaction.
func (b backend) Stmt(ctx context.Context, fn func(ctx context.Context, q sqlstore.Querier) error) error {
	_, err := retry(ctx, func() (struct{}, error) { return struct{}{}, fn(ctx, q{b.s.pool}) })
	return err
}

// Snapshot runs fn in a read-only REPEATABLE READ transaction.
func (b backend) Snapshot(ctx context.Context, fn func(q sqlstore.Querier) error) error {
	return b.s.readPgx(ctx, func(tx pgx.Tx) error { return fn(q{tx}) })
}

func (b backend) Reader() sqlstore.Querier { return q{b.s.pool} }
func (b backend) Writer() sqlstore.Querier { return q{b.s.pool} }

// readPgx runs fn in a read-only REPEATABLE READ transaction: one snapshot
// for all its statements.
func (s *Store) readPgx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read only
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// importSteps lock the tables first, until the end, so no charge
// interleaves with the import and keep sees exactly the rows the import
// replaces; the identities continue after the imported ids (at 1 when
// empty).
var importSteps = sqlstore.ImportSteps{
	Lock: []string{`LOCK TABLE users, model_prices, usage_records, balance_changes, usage_daily,
		usage_breakdown, usage_breakdown_all, usage_minute IN ACCESS EXCLUSIVE MODE`},
	Clear: []string{`TRUNCATE users, model_prices, usage_records, balance_changes, usage_daily, usage_breakdown,
		usage_breakdown_all, usage_minute`},
	After: []string{setval("usage_records"), setval("balance_changes")},
}

func setval(table string) string {
	return `SELECT setval(pg_get_serial_sequence('` + table + `', 'id'),
		COALESCE((SELECT MAX(id) FROM ` + table + `), 0) + 1, false)`
}

// Import replaces every row with the backup's in one transaction, the id
// sequences continuing after the largest ids. Any failure (a record of a
// user the backup lacks, two rows with one id or key, an error from keep)
// undoes all of it.
func (s *Store) Import(ctx context.Context, b store.Backup, keep func(replaced store.Backup) error) error {
	_, err := retry(ctx, func() (struct{}, error) {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return struct{}{}, err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		if err := sqlstore.Import(ctx, dialect, q{tx}, importSteps, copyRows(tx), b, keep); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, tx.Commit(ctx)
	})
	if err != nil {
		return fmt.Errorf("postgres: import: %w", err)
	}
	return nil
}

// copyRows loads rows into a table with COPY. The foreign keys, primary
// keys and unique keys are checked as the rows arrive.
func copyRows(tx pgx.Tx) sqlstore.Load {
	return func(ctx context.Context, table string, cols []string, n int, row func(int) []any) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			return row(i), nil
		}))
		return err
	}
}
