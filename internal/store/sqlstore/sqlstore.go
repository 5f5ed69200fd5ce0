// Package sqlstore is the one SQL implementation of the store's rules, used
// by store/sqlite and store/postgres: charging, reserving and netting
// pending holds, adopting and re-keying holds, balance changes, the daily
// rollups, the list and usage queries, export and import, and the int64
// bounds checks that keep every balance and sum in range.
//
// Store implements store.Store (all but Kind, UsageBetween, Import and
// Close) on a Backend, which says how to run a write transaction, a single
// statement, a read snapshot; the backends embed it. Its functions, used
// by Store and by a backend's own methods, run statements on a Querier (a
// transaction, or a pool or connection where one statement suffices) that
// the backend hands them, and write their SQL for a Dialect: how times and days are stored, row
// locks, case-insensitive sorting and search, lists of ids, and sums that
// cannot overflow. The backends keep what truly differs: opening the
// database, transactions (SQLite's single writer with group commit and
// savepoints, PostgreSQL's pool with retries), statement caching and
// migrations.
//
// Placeholders are $1, $2, … in both dialects (SQLite takes them as
// numbered parameters); upserts are ON CONFLICT in both; booleans are
// bound as Go bools (SQLite stores 0/1). An insert that loses the race for
// an idempotency key (ON CONFLICT DO NOTHING) reports ErrRace, which the
// PostgreSQL backend retries; "no row" becomes store.ErrNotFound.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/openwebui-monitor/owmon/internal/store"
)

// Row is one result row (*sql.Row, pgx.Row).
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result set being read.
type Rows interface {
	Row
	Next() bool
	Err() error
	Close()
}

// Querier runs statements: a transaction, a pool or a connection. A
// QueryRow that finds no row reports an error that errors.Is
// sql.ErrNoRows (pgx.ErrNoRows does).
type Querier interface {
	QueryRow(ctx context.Context, query string, args ...any) Row
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	// Exec returns how many rows the statement changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
}

// Dialect is what differs between the SQL of the two backends.
type Dialect struct {
	// Name prefixes errors: "sqlite", "postgres".
	Name string
	// Precision is the time columns' precision.
	Precision time.Duration
	// Time encodes a time (already at Precision, in UTC) as a parameter.
	Time func(t time.Time) any
	// Day encodes a UTC midnight as a parameter for usage_daily.day.
	Day func(t time.Time) any
	// DayOf is SQL for the UTC day of a time column, as usage_daily.day
	// stores it.
	DayOf func(col string) string
	// ForUpdate is appended to a SELECT of rows the transaction will
	// change ("" where writers are serialised anyway).
	ForUpdate string
	// SkipLocked is appended to a subquery choosing one row among several
	// to change, so that concurrent transactions choose different rows.
	SkipLocked string
	// SplitSums: the database's SUM fails beyond an int64, so sums are
	// taken in two parts, the high and the low 32 bits (store.JoinSum).
	// Otherwise SUM is exact (NUMERIC) and clamped to the int64 range.
	SplitSums bool
	// Fold is SQL sorting a text column case-insensitively, in byte order
	// otherwise.
	Fold func(col string) string
	// Bytes is SQL sorting a text column in byte order.
	Bytes func(col string) string
	// Search is SQL for a case-insensitive LIKE of col against the
	// placeholder p, with \ as the escape.
	Search func(col, p string) string
	// ArrayParams: a list of values is one array parameter (= ANY($n));
	// otherwise IN with one parameter per value.
	ArrayParams bool
}

// ErrRace means an insert lost the race for its idempotency key; the
// transaction may be run again, and then finds the winner's record.
var ErrRace = errors.New("lost the race for an idempotency key")

// noRows reports whether err says that a query found no row.
func noRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// found maps "no row" to store.ErrNotFound.
func found(err error) error {
	if noRows(err) {
		return store.ErrNotFound
	}
	return err
}

func (d Dialect) errorf(format string, args ...any) error {
	return fmt.Errorf(d.Name+": "+format, args...)
}

// Now is the store's clock, at the columns' precision.
func (d Dialect) Now() time.Time { return time.Now().UTC().Truncate(d.Precision) }

// Stamp is t at the columns' precision, or now when t is zero.
func (d Dialect) Stamp(t time.Time) time.Time {
	if t.IsZero() {
		return d.Now()
	}
	return t.UTC().Truncate(d.Precision)
}

// StampPtr is Stamp of an optional time, nil staying nil.
func (d Dialect) StampPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC().Truncate(d.Precision)
	return &v
}

// Ceil is the first stored time not before t, so that col >= Ceil(t) and
// col < Ceil(t) are exact.
func (d Dialect) Ceil(t time.Time) time.Time {
	u := t.UTC().Truncate(d.Precision)
	if u.Before(t) {
		u = u.Add(d.Precision)
	}
	return u
}

func (d Dialect) timePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return d.Time(*t)
}

// Time scans a time column: INTEGER unix milliseconds or a timestamp or date.
type Time time.Time

// Scan implements sql.Scanner.
func (t *Time) Scan(src any) error {
	switch v := src.(type) {
	case int64:
		*t = Time(time.UnixMilli(v).UTC())
	case time.Time:
		*t = Time(v.UTC())
	default:
		return fmt.Errorf("sqlstore: cannot scan %T as a time", src)
	}
	return nil
}

// nullTime scans a nullable time column.
type nullTime struct{ p **time.Time }

func (n nullTime) Scan(src any) error {
	if src == nil {
		*n.p = nil
		return nil
	}
	var t Time
	if err := t.Scan(src); err != nil {
		return err
	}
	v := time.Time(t)
	*n.p = &v
	return nil
}

// nullKey stores an empty idempotency key as NULL.
func nullKey(k string) *string {
	if k == "" {
		return nil
	}
	return &k
}

// Sum is a sum taken as the dialect can (see SplitSums).
type Sum struct{ hi, lo int64 }

// Value is the sum, saturated at the ends of an int64.
func (s Sum) Value() int64 { return store.JoinSum(s.hi, s.lo) }

// Sum is SQL for the sum of an integer column (0 over no rows): two
// result columns when SplitSums, else one.
func (d Dialect) Sum(col string) string {
	if d.SplitSums {
		return `COALESCE(SUM(` + col + ` >> 32), 0), COALESCE(SUM(` + col + ` & 4294967295), 0)`
	}
	return clamp(`COALESCE(SUM(` + col + `), 0)`)
}

// SumDiff is SQL for the sum of a - b, like Sum.
func (d Dialect) SumDiff(a, b string) string {
	if d.SplitSums {
		return `COALESCE(SUM(` + a + ` >> 32), 0) - COALESCE(SUM(` + b + ` >> 32), 0), ` +
			`COALESCE(SUM(` + a + ` & 4294967295), 0) - COALESCE(SUM(` + b + ` & 4294967295), 0)`
	}
	return clamp(`COALESCE(SUM(` + a + `::NUMERIC - ` + b + `), 0)`)
}

// Dest is the scan destinations of a Sum's columns.
func (d Dialect) Dest(s *Sum) []any {
	if d.SplitSums {
		return []any{&s.hi, &s.lo}
	}
	return []any{&s.lo}
}

// clamp is SQL giving a NUMERIC expression as a BIGINT, saturated at the
// ends of the range rather than failing beyond them.
func clamp(expr string) string {
	return `LEAST(GREATEST(` + expr + `, -9223372036854775808), 9223372036854775807)::BIGINT`
}

// collect runs a query and scans every row.
func collect[T any](ctx context.Context, q Querier, scan func(Row) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

const userCols = `id, email, name, role, balance, initial_balance, deleted, created_at, updated_at`

func scanUser(row Row) (store.User, error) {
	var u store.User
	err := row.Scan(&u.ID, &u.Email, &u.Name, &u.Role, (*int64)(&u.Balance), (*int64)(&u.InitialBalance),
		&u.Blocked, (*Time)(&u.CreatedAt), (*Time)(&u.UpdatedAt))
	return u, found(err)
}

const recordCols = `id, user_id, nickname, model, input_tokens, output_tokens, cached_tokens,
	reasoning_tokens, cost, balance_after, source, status, estimated, purpose, chat_id, message_id,
	COALESCE(idem_key, ''), duration_ms, created_at, expires_at`

func scanRecord(row Row) (store.Record, error) {
	var r store.Record
	err := row.Scan(&r.ID, &r.UserID, &r.Nickname, &r.Model, &r.InputTokens, &r.OutputTokens,
		&r.CachedTokens, &r.ReasoningTokens, (*int64)(&r.Cost), (*int64)(&r.BalanceAfter), &r.Source, &r.Status,
		&r.Estimated, &r.Purpose, &r.ChatID, &r.MessageID, &r.Key, &r.DurationMS, (*Time)(&r.CreatedAt),
		nullTime{&r.ExpiresAt})
	return r, found(err)
}

const priceCols = `id, name, base_model_id, input_price, output_price, per_msg_price, priced, updated_at`

func scanPrice(row Row) (store.ModelPrice, error) {
	var p store.ModelPrice
	err := row.Scan(&p.ID, &p.Name, &p.BaseModelID, (*int64)(&p.Input), (*int64)(&p.Output),
		(*int64)(&p.PerMessage), &p.Priced, (*Time)(&p.UpdatedAt))
	return p, found(err)
}

const changeCols = `id, user_id, actor, reason, old_balance, new_balance, created_at`

func scanChange(row Row) (store.BalanceChange, error) {
	var c store.BalanceChange
	err := row.Scan(&c.ID, &c.UserID, &c.Actor, &c.Reason, (*int64)(&c.OldBalance), (*int64)(&c.NewBalance),
		(*Time)(&c.CreatedAt))
	return c, err
}

// Migrate brings db's schema up to date with the migrations in fsys.
// The provider is not closed: that would close db.
func Migrate(ctx context.Context, name string, dialect goose.Dialect, db *sql.DB, fsys fs.FS, opts ...goose.ProviderOption) error {
	p, err := goose.NewProvider(dialect, db, fsys, append(opts, goose.WithDisableGlobalRegistry(true))...)
	if err != nil {
		return fmt.Errorf("%s: migrations: %w", name, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("%s: migrate: %w", name, err)
	}
	return nil
}
