package postgres

// The admin's queries: lists with paging, usage summaries, backups. The
// sqlite package implements the same queries; keep the two alike.
//
// Sorting: only the fields of store.UserSortFields and
// store.RecordSortFields, mapped to SQL here; anything else is refused
// before any SQL runs. Text fields sort case-insensitively in byte order
// (lower(x) COLLATE "C"), as SQLite's COLLATE NOCASE does for ASCII, so the
// order does not depend on the database's locale; every order ends with the
// id as a tie-breaker in the same direction.
//
// Search: a case-insensitive substring of the name or the email (ILIKE),
// with %, _ and \ taken literally.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwebui-monitor/owmon/internal/store"
)

// userSort maps store.UserSortFields to SQL.
var userSort = map[string]string{
	"created_at": "created_at",
	"balance":    "balance",
	"name":       `lower(name) COLLATE "C"`,
	"email":      `lower(email) COLLATE "C"`,
	"role":       `lower(role) COLLATE "C"`,
}

// recordSort maps store.RecordSortFields to SQL.
var recordSort = map[string]string{
	"created_at":    "created_at",
	"cost":          "cost",
	"input_tokens":  "input_tokens",
	"output_tokens": "output_tokens",
	"model":         `lower(model) COLLATE "C"`,
	"user_id":       `lower(user_id) COLLATE "C"`,
	"nickname":      `lower(nickname) COLLATE "C"`,
	"balance_after": "balance_after",
}

// orderBy returns the ORDER BY list for a sort field ("" is created_at),
// ending with tie, the id, as a tie-breaker.
func orderBy(fields map[string]string, field string, desc bool, tie string) (string, error) {
	if field == "" {
		field = "created_at"
	}
	col, ok := fields[field]
	if !ok {
		return "", fmt.Errorf("%w: cannot sort by %q", store.ErrInvalidQuery, field)
	}
	dir := " ASC"
	if desc {
		dir = " DESC"
	}
	return col + dir + ", " + tie + dir, nil
}

// where builds a WHERE clause with numbered parameters.
type where struct {
	conds []string
	args  []any
}

// arg adds a parameter and returns its placeholder.
func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *where) add(cond string) { w.conds = append(w.conds, cond) }

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// likeEscaper makes LIKE's wildcards (and its escape) literal.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// usCeil is the first stored time (microseconds) not before t, so that
// created_at >= usCeil(t) and created_at < usCeil(t) are exact.
func usCeil(t time.Time) time.Time {
	u := t.UTC().Truncate(time.Microsecond)
	if u.Before(t) {
		u = u.Add(time.Microsecond)
	}
	return u
}

// between adds col in [from, to); zero times are unbounded.
func (w *where) between(col string, from, to time.Time) {
	if !from.IsZero() {
		w.add(col + " >= " + w.arg(usCeil(from)))
	}
	if !to.IsZero() {
		w.add(col + " < " + w.arg(usCeil(to)))
	}
}

// readTx runs fn in a read-only REPEATABLE READ transaction: one snapshot
// for all its statements.
func (s *Store) readTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
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

// queryer is a pool or a transaction.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// collect runs a query and scans every row.
func collect[T any](ctx context.Context, q queryer, scan func(pgx.Row) (T, error), query string, args ...any) ([]T, error) {
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

// ListUsers returns a page of users and how many match in all.
func (s *Store) ListUsers(ctx context.Context, q store.UserQuery) ([]store.User, int64, error) {
	limit, offset, err := store.LimitOffset(q.Page, q.PageSize)
	if err != nil {
		return nil, 0, err
	}
	order, err := orderBy(userSort, q.SortField, q.Descending, `id COLLATE "C"`)
	if err != nil {
		return nil, 0, err
	}
	var w where
	if q.Search != "" {
		p := w.arg("%" + likeEscaper.Replace(q.Search) + "%")
		w.add(`(name ILIKE ` + p + ` ESCAPE '\' OR email ILIKE ` + p + ` ESCAPE '\')`)
	}
	if q.Blocked != nil {
		w.add("deleted = " + w.arg(*q.Blocked))
	}
	count, countArgs := `SELECT COUNT(*) FROM users`+w.String(), w.args
	list := `SELECT ` + userCols + ` FROM users` + w.String() +
		` ORDER BY ` + order + ` LIMIT ` + w.arg(limit) + ` OFFSET ` + w.arg(offset)
	var (
		users []store.User
		total int64
	)
	err = s.readTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, count, countArgs...).Scan(&total); err != nil {
			return err
		}
		var err error
		users, err = collect(ctx, tx, scanUser, list, w.args...)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return users, total, nil
}

// DeleteUser removes a user with their records and balance changes. The
// user's row is locked first, so no charge can add a record meanwhile.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	_, err := retry(ctx, func() (struct{}, error) {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return struct{}{}, err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		var one int
		err = tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, id).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return struct{}{}, store.ErrNotFound
		}
		if err != nil {
			return struct{}{}, err
		}
		for _, q := range []string{
			`DELETE FROM balance_changes WHERE user_id = $1`,
			`DELETE FROM usage_records WHERE user_id = $1`,
			`DELETE FROM usage_daily WHERE user_id = $1`,
			`DELETE FROM users WHERE id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, tx.Commit(ctx)
	})
	return err
}

const changeCols = `id, user_id, actor, reason, old_balance, new_balance, created_at`

func scanChange(row pgx.Row) (store.BalanceChange, error) {
	var c store.BalanceChange
	err := row.Scan(&c.ID, &c.UserID, &c.Actor, &c.Reason, &c.OldBalance, &c.NewBalance, &c.CreatedAt)
	c.CreatedAt = c.CreatedAt.UTC()
	return c, err
}

// defaultChanges is how many balance changes BalanceChanges returns when
// the caller gives no limit.
const defaultChanges = 50

// BalanceChanges returns a user's latest balance changes, newest first (an
// unknown user has none).
func (s *Store) BalanceChanges(ctx context.Context, userID string, limit int) ([]store.BalanceChange, error) {
	if limit <= 0 {
		limit = defaultChanges
	}
	return collect(ctx, s.pool, scanChange, `SELECT `+changeCols+` FROM balance_changes
		WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, userID, limit)
}

// recordWhere is the WHERE clause of a record query. The id lists are one
// array parameter each.
func recordWhere(q store.RecordQuery) where {
	var w where
	if len(q.Users) > 0 {
		w.add("user_id = ANY(" + w.arg(q.Users) + ")")
	}
	if len(q.Models) > 0 {
		w.add("model = ANY(" + w.arg(q.Models) + ")")
	}
	w.between("created_at", q.From, q.To)
	return w
}

// ListRecords returns a page of records and how many match in all.
func (s *Store) ListRecords(ctx context.Context, q store.RecordQuery) ([]store.Record, int64, error) {
	limit, offset, err := store.LimitOffset(q.Page, q.PageSize)
	if err != nil {
		return nil, 0, err
	}
	order, err := orderBy(recordSort, q.SortField, q.Descending, "id")
	if err != nil {
		return nil, 0, err
	}
	w := recordWhere(q)
	count, countArgs := `SELECT COUNT(*) FROM usage_records`+w.String(), w.args
	list := `SELECT ` + recordCols + ` FROM usage_records` + w.String() +
		` ORDER BY ` + order + ` LIMIT ` + w.arg(limit) + ` OFFSET ` + w.arg(offset)
	var (
		recs  []store.Record
		total int64
	)
	err = s.readTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, count, countArgs...).Scan(&total); err != nil {
			return err
		}
		var err error
		recs, err = collect(ctx, tx, scanRecord, list, w.args...)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return recs, total, nil
}

// EachRecord calls fn for every matching record in ListRecords' order,
// ignoring paging. pgx reads the rows from the connection as fn takes them.
func (s *Store) EachRecord(ctx context.Context, q store.RecordQuery, fn func(store.Record) error) error {
	order, err := orderBy(recordSort, q.SortField, q.Descending, "id")
	if err != nil {
		return err
	}
	w := recordWhere(q)
	rows, err := s.pool.Query(ctx, `SELECT `+recordCols+` FROM usage_records`+w.String()+` ORDER BY `+order, w.args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

func scanTotals(row pgx.Row, lead ...any) (store.UsageTotals, error) {
	var t store.UsageTotals
	err := row.Scan(append(lead, &t.Cost, &t.Calls, &t.InputTokens, &t.OutputTokens)...)
	return t, err
}

// usageRows is the common table expression "x" of UsageBetween: one row per
// rollup row of the whole UTC days inside [from, to), and one per final
// record of the partial days at its edges, all with the same columns.
func usageRows(from, to time.Time) (string, []any) {
	var roll, edges where
	roll.add("calls > 0")
	a, b := from, to // the whole days are [a, b)
	if !from.IsZero() {
		a = dayCeil(from)
	}
	if !to.IsZero() {
		b = dayOf(to)
	}
	if !from.IsZero() && !to.IsZero() && !a.Before(b) {
		// No whole day: every row comes from the records.
		edges.between("created_at", from, to)
		return recordRows(edges), edges.args
	}
	if !from.IsZero() {
		roll.add("day >= " + roll.arg(a) + "::date")
	}
	if !to.IsZero() {
		roll.add("day < " + roll.arg(b) + "::date")
	}
	q := `SELECT day, user_id, model, calls, cost, input_tokens, output_tokens FROM usage_daily` + roll.String()
	args := roll.args
	var parts []string
	if !from.IsZero() {
		var e where
		e.args = args
		e.between("created_at", from, a)
		parts = append(parts, "("+strings.Join(e.conds, " AND ")+")")
		args = e.args
	}
	if !to.IsZero() {
		var e where
		e.args = args
		e.between("created_at", b, to)
		parts = append(parts, "("+strings.Join(e.conds, " AND ")+")")
		args = e.args
	}
	if len(parts) > 0 {
		edges.add("(" + strings.Join(parts, " OR ") + ")")
		q += ` UNION ALL ` + recordRows(edges)
	}
	return q, args
}

// recordRows selects the final records matching w as rollup rows.
func recordRows(w where) string {
	w.add("status <> 'pending'")
	return `SELECT (created_at AT TIME ZONE 'UTC')::date, user_id, model, 1::BIGINT, cost, input_tokens,
		output_tokens FROM usage_records` + w.String()
}

// rollSums are the sums of store.UsageTotals over usageRows, in its order;
// a sum beyond the BIGINT range saturates at its end (clamp).
var rollSums = clamp(`COALESCE(SUM(cost), 0)`) + `, ` + clamp(`COALESCE(SUM(calls), 0)`) + `,
	` + clamp(`COALESCE(SUM(input_tokens), 0)`) + `, ` + clamp(`COALESCE(SUM(output_tokens), 0)`)

// UsageBetween summarises the final (not pending) records created in
// [from, to), in one snapshot: whole UTC days from the daily rollups, the
// partial days at the edges from the records. One statement reads them
// once, grouped three ways (GROUPING SETS, hashed), and the groups are
// sorted here.
func (s *Store) UsageBetween(ctx context.Context, from, to time.Time) (store.Usage, error) {
	rows, args := usageRows(from, to)
	// GROUPING(day, user_id, model) tells the sets apart: 3 by day, 5 by
	// user, 6 by model. The names are the users' current ones.
	query := `WITH x (day, user_id, model, calls, cost, input_tokens, output_tokens) AS (` + rows + `)
		SELECT g.set, g.day, g.user_id, g.model, COALESCE(u.name, ''), g.cost, g.calls, g.input_tokens,
			g.output_tokens
		FROM (SELECT GROUPING(day, user_id, model) AS set, day::timestamp AS day, user_id, model, ` + rollSums + `
			FROM x GROUP BY GROUPING SETS ((day), (user_id), (model))) g (set, day, user_id, model, cost, calls,
				input_tokens, output_tokens)
		LEFT JOIN users u ON u.id = g.user_id`
	u := store.Usage{ByModel: []store.ModelUsage{}, ByUser: []store.UserUsage{}, ByDay: []store.DayUsage{}}
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		r, err := tx.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			var (
				set         int32
				day         *time.Time
				user, model *string
				name        string
			)
			t, err := scanTotals(r, &set, &day, &user, &model, &name)
			if err != nil {
				return err
			}
			switch {
			case set == 3 && day != nil:
				u.ByDay = append(u.ByDay, store.DayUsage{Day: day.UTC(), UsageTotals: t})
			case set == 5 && user != nil:
				u.ByUser = append(u.ByUser, store.UserUsage{UserID: *user, Name: name, UsageTotals: t})
			case set == 6 && model != nil:
				u.ByModel = append(u.ByModel, store.ModelUsage{Model: *model, UsageTotals: t})
			default:
				return fmt.Errorf("postgres: unexpected usage group %d", set)
			}
		}
		return r.Err()
	})
	if err != nil {
		return store.Usage{}, err
	}
	slices.SortFunc(u.ByModel, func(a, b store.ModelUsage) int {
		return cmp.Or(cmp.Compare(b.Cost, a.Cost), strings.Compare(a.Model, b.Model))
	})
	slices.SortFunc(u.ByUser, func(a, b store.UserUsage) int {
		return cmp.Or(cmp.Compare(b.Cost, a.Cost), strings.Compare(a.UserID, b.UserID))
	})
	slices.SortFunc(u.ByDay, func(a, b store.DayUsage) int { return a.Day.Compare(b.Day) })
	// The totals follow from the groups (saturating).
	u.ActiveUsers, u.Models = int64(len(u.ByUser)), int64(len(u.ByModel))
	for _, d := range u.ByDay {
		u.Total.Add(d.UsageTotals)
	}
	return u, nil
}

// ListModelPrices returns every price row, by id (in byte order, as SQLite).
func (s *Store) ListModelPrices(ctx context.Context) ([]store.ModelPrice, error) {
	return collect(ctx, s.pool, scanPrice, `SELECT `+priceCols+` FROM model_prices ORDER BY id COLLATE "C"`)
}

// Export returns every row, in one snapshot.
func (s *Store) Export(ctx context.Context) (store.Backup, error) {
	var b store.Backup
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		var err error
		b, err = exportRows(ctx, tx)
		return err
	})
	if err != nil {
		return store.Backup{}, err
	}
	return b, nil
}

// exportRows reads every row.
func exportRows(ctx context.Context, tx pgx.Tx) (b store.Backup, err error) {
	if b.Users, err = collect(ctx, tx, scanUser, `SELECT `+userCols+` FROM users ORDER BY id COLLATE "C"`); err != nil {
		return b, err
	}
	if b.ModelPrices, err = collect(ctx, tx, scanPrice, `SELECT `+priceCols+` FROM model_prices ORDER BY id COLLATE "C"`); err != nil {
		return b, err
	}
	if b.Records, err = collect(ctx, tx, scanRecord, `SELECT `+recordCols+` FROM usage_records ORDER BY id`); err != nil {
		return b, err
	}
	b.BalanceChanges, err = collect(ctx, tx, scanChange, `SELECT `+changeCols+` FROM balance_changes ORDER BY id`)
	return b, err
}

// Import replaces every row with the backup's in one transaction: the rows
// keep their ids, keys, times and statuses, and the id sequences continue
// after the largest ids. Any failure (a record of a user the backup lacks,
// two rows with one id or key, an error from keep) undoes all of it. The
// tables are locked first, until the end, so no charge interleaves with
// the import, and keep sees exactly the rows the import replaces.
func (s *Store) Import(ctx context.Context, b store.Backup, keep func(replaced store.Backup) error) error {
	_, err := retry(ctx, func() (struct{}, error) { return struct{}{}, s.importRows(ctx, b, keep) })
	if err != nil {
		return fmt.Errorf("postgres: import: %w", err)
	}
	return nil
}

func (s *Store) importRows(ctx context.Context, b store.Backup, keep func(store.Backup) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `LOCK TABLE users, model_prices, usage_records, balance_changes, usage_daily
		IN ACCESS EXCLUSIVE MODE`); err != nil {
		return err
	}
	if keep != nil {
		old, err := exportRows(ctx, tx)
		if err != nil {
			return err
		}
		if err := keep(old); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `TRUNCATE users, model_prices, usage_records, balance_changes, usage_daily`); err != nil {
		return err
	}
	err = copyRows(ctx, tx, "users", []string{"id", "email", "name", "role", "balance", "initial_balance", "deleted",
		"created_at", "updated_at"}, b.Users, func(u store.User) []any {
		return []any{u.ID, u.Email, u.Name, u.Role, int64(u.Balance), int64(u.InitialBalance), u.Blocked,
			u.CreatedAt, u.UpdatedAt}
	})
	if err != nil {
		return err
	}
	err = copyRows(ctx, tx, "model_prices", []string{"id", "name", "base_model_id", "input_price", "output_price",
		"per_msg_price", "priced", "created_at", "updated_at"}, b.ModelPrices, func(p store.ModelPrice) []any {
		return []any{p.ID, p.Name, p.BaseModelID, int64(p.Input), int64(p.Output), int64(p.PerMessage), p.Priced,
			p.UpdatedAt, p.UpdatedAt}
	})
	if err != nil {
		return err
	}
	err = copyRows(ctx, tx, "usage_records", []string{"id", "user_id", "nickname", "model", "input_tokens",
		"output_tokens", "cached_tokens", "reasoning_tokens", "cost", "balance_after", "source", "status", "estimated",
		"purpose", "chat_id", "message_id", "idem_key", "duration_ms", "created_at", "expires_at"}, b.Records,
		func(r store.Record) []any {
			return []any{r.ID, r.UserID, r.Nickname, r.Model, r.InputTokens, r.OutputTokens, r.CachedTokens,
				r.ReasoningTokens, int64(r.Cost), int64(r.BalanceAfter), r.Source, r.Status, r.Estimated, r.Purpose,
				r.ChatID, r.MessageID, nullKey(r.Key), r.DurationMS, r.CreatedAt, r.ExpiresAt}
		})
	if err != nil {
		return err
	}
	err = copyRows(ctx, tx, "balance_changes", []string{"id", "user_id", "actor", "reason", "old_balance",
		"new_balance", "created_at"}, b.BalanceChanges, func(c store.BalanceChange) []any {
		return []any{c.ID, c.UserID, c.Actor, c.Reason, int64(c.OldBalance), int64(c.NewBalance), c.CreatedAt}
	})
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, rebuildDaily); err != nil {
		return fmt.Errorf("usage rollups: %w", err)
	}
	// The identities continue after the imported ids (at 1 when empty).
	for _, table := range []string{"usage_records", "balance_changes"} {
		if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('`+table+`', 'id'),
			COALESCE((SELECT MAX(id) FROM `+table+`), 0) + 1, false)`); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// copyRows loads rows into a table with COPY. The foreign keys, primary
// keys and unique keys are checked as the rows arrive.
func copyRows[T any](ctx context.Context, tx pgx.Tx, table string, cols []string, rows []T, values func(T) []any) error {
	if len(rows) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
		return values(rows[i]), nil
	}))
	if err != nil {
		return fmt.Errorf("%s: %w", strings.ReplaceAll(table, "_", " "), err)
	}
	return nil
}
