package sqlite

// SQLite's side of package sqlstore: its dialect, the adapters of
// database/sql, the backend (writes on the single writer, prepared once per
// store; reads on the readers), and the methods whose running differs:
// AdoptHold's read before the write, Import's prepared INSERTs.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlstore"
)

// dialect is SQLite's: times as INTEGER unix milliseconds, days as the
// milliseconds of their UTC midnight, no row locks (the single writer and
// BEGIN IMMEDIATE serialise writers), sums split in 32-bit halves (SUM
// fails beyond an int64), COLLATE NOCASE, LIKE on lower() (ASCII letters
// only: "É" does not find "é" here) and IN lists.
var dialect = sqlstore.Dialect{
	Name:      "sqlite",
	Precision: time.Millisecond,
	Time:      func(t time.Time) any { return t.UnixMilli() },
	Day:       func(t time.Time) any { return t.UnixMilli() },
	DayOf: func(col string) string {
		return col + ` - (((` + col + ` % 86400000) + 86400000) % 86400000)`
	},
	SplitSums: true,
	Fold:      func(col string) string { return col + ` COLLATE NOCASE` },
	Bytes:     func(col string) string { return col },
	Search: func(col, p string) string {
		return `lower(` + col + `) LIKE lower(` + p + `) ESCAPE '\'`
	},
}

// sqlQ is what database/sql runs statements on: *sql.DB, *sql.Tx, wtx,
// reader.
type sqlQ interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// q is an sqlQ as a sqlstore.Querier.
type q struct{ sqlQ }

func (q q) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return q.QueryRowContext(ctx, query, args...)
}

func (q q) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	r, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

func (q q) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

type rows struct{ *sql.Rows }

func (r rows) Close() { _ = r.Rows.Close() }

// reader runs one-row queries on the readers, prepared once (read).
type reader struct{ s *Store }

func (r reader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return r.s.read(ctx, query, args...)
}

func (r reader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return r.s.r.QueryContext(ctx, query, args...)
}

func (r reader) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return r.s.r.ExecContext(ctx, query, args...)
}

func (s *Store) readSQL(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // read only
	return fn(tx)
}

// backend runs sqlstore's statements: writes on the single writer (write),
// prepared once per store; reads on the readers.
type backend struct{ s *Store }

func (b backend) Tx(ctx context.Context, fn func(ctx context.Context, q sqlstore.Querier) error) error {
	_, err := write(ctx, b.s, func(ctx context.Context, tx wtx) (struct{}, error) { return struct{}{}, fn(ctx, q{tx}) })
	return err
}

func (b backend) Stmt(ctx context.Context, fn func(ctx context.Context, q sqlstore.Querier) error) error {
	return b.Tx(ctx, fn)
}

// Snapshot runs fn in a read transaction: one snapshot for all its statements.
func (b backend) Snapshot(ctx context.Context, fn func(q sqlstore.Querier) error) error {
	return b.s.readSQL(ctx, func(tx *sql.Tx) error { return fn(q{tx}) })
}

func (b backend) Reader() sqlstore.Querier { return q{reader{b.s}} }
func (b backend) Writer() sqlstore.Querier { return q{b.s.w} }

// AdoptHold makes another path's pending hold the provider meter's. The
// single writer serialises it with every other write (and BEGIN IMMEDIATE
// with other processes' writes), so no two calls adopt one hold.
func (s *Store) AdoptHold(ctx context.Context, a store.Adoption) (store.Record, bool, error) {
	if err := sqlstore.CheckAdoption(dialect, a); err != nil {
		return store.Record{}, false, err
	}
	// Most provider calls find nothing to adopt: a read spares them a
	// write. A hold to adopt was committed before its call reached
	// OpenWebUI, so the read sees it.
	if ok, err := sqlstore.Adoptable(ctx, s.Store.B.Reader(), a.UserID); err != nil || !ok {
		return store.Record{}, false, err
	}
	return s.Store.AdoptHold(ctx, a)
}

// importSteps empty the tables children first: the foreign keys are
// checked at once.
var importSteps = sqlstore.ImportSteps{Clear: []string{
	`DELETE FROM usage_daily`, `DELETE FROM usage_breakdown`, `DELETE FROM usage_breakdown_all`, `DELETE FROM usage_minute`,
	`DELETE FROM balance_changes`, `DELETE FROM usage_records`,
	`DELETE FROM users`, `DELETE FROM model_prices`,
}}

// Import replaces every row with the backup's in one write. Any failure (a
// record of a user the backup lacks, two rows with one id or key, an error
// from keep) undoes all of it. keep sees the rows as they are in the write
// transaction, before the import: no other write comes between.
func (s *Store) Import(ctx context.Context, b store.Backup, keep func(replaced store.Backup) error) error {
	_, err := write(ctx, s, func(ctx context.Context, tx wtx) (struct{}, error) {
		return struct{}{}, sqlstore.Import(ctx, dialect, q{tx.Tx}, importSteps, insertAll(tx.Tx), b, keep)
	})
	if err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	return nil
}

// insertAll loads rows with one INSERT prepared in the transaction.
func insertAll(tx *sql.Tx) sqlstore.Load {
	return func(ctx context.Context, table string, cols []string, n int, row func(int) []any) (err error) {
		st, err := tx.PrepareContext(ctx, sqlstore.InsertSQL(table, cols))
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, st.Close()) }()
		for i := range n {
			if _, err := st.ExecContext(ctx, row(i)...); err != nil {
				return fmt.Errorf("row %d: %w", i+1, err)
			}
		}
		return nil
	}
}
