package sqlite

// The admin's queries: lists with paging, usage summaries, backups. The
// postgres package implements the same queries; keep the two alike.
//
// Sorting: only the fields of store.UserSortFields and
// store.RecordSortFields, mapped to SQL here; anything else is refused
// before any SQL runs. Text fields sort case-insensitively (COLLATE NOCASE:
// ASCII letters folded, then byte order), every order ends with the id as a
// tie-breaker in the same direction.
//
// Search: a case-insensitive substring of the name or the email, with %, _
// and \ taken literally. SQLite's lower() and LIKE fold ASCII letters only,
// so "É" does not find "é" here (PostgreSQL's ILIKE folds them).

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// userSort maps store.UserSortFields to SQL.
var userSort = map[string]string{
	"created_at": "created_at",
	"balance":    "balance",
	"name":       "name COLLATE NOCASE",
	"email":      "email COLLATE NOCASE",
	"role":       "role COLLATE NOCASE",
}

// recordSort maps store.RecordSortFields to SQL.
var recordSort = map[string]string{
	"created_at":    "created_at",
	"cost":          "cost",
	"input_tokens":  "input_tokens",
	"output_tokens": "output_tokens",
	"model":         "model COLLATE NOCASE",
	"user_id":       "user_id COLLATE NOCASE",
	"nickname":      "nickname COLLATE NOCASE",
	"balance_after": "balance_after",
}

// orderBy returns the ORDER BY list for a sort field ("" is created_at),
// ending with the id as a tie-breaker.
func orderBy(fields map[string]string, field string, desc bool) (string, error) {
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
	return col + dir + ", id" + dir, nil
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

// list adds one parameter per value and returns their placeholders, for IN.
func (w *where) list(vs []string) string {
	ps := make([]string, len(vs))
	for i, v := range vs {
		ps[i] = w.arg(v)
	}
	return strings.Join(ps, ", ")
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

// msCeil is the first stored time (unix milliseconds) not before t, so that
// created_at >= msCeil(t) and created_at < msCeil(t) are exact.
func msCeil(t time.Time) int64 {
	v := t.UnixMilli()
	if t.Nanosecond()%int(time.Millisecond) != 0 {
		v++
	}
	return v
}

// between adds created_at in [from, to); zero times are unbounded.
func (w *where) between(col string, from, to time.Time) {
	if !from.IsZero() {
		w.add(col + " >= " + w.arg(msCeil(from)))
	}
	if !to.IsZero() {
		w.add(col + " < " + w.arg(msCeil(to)))
	}
}

// readTx runs fn in a read transaction: one snapshot for all its statements.
func (s *Store) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // read only
	return fn(tx)
}

// queryer is a *sql.DB or a *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// collect runs a query and scans every row.
func collect[T any](ctx context.Context, q queryer, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
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
	order, err := orderBy(userSort, q.SortField, q.Descending)
	if err != nil {
		return nil, 0, err
	}
	var w where
	if q.Search != "" {
		p := w.arg("%" + likeEscaper.Replace(q.Search) + "%")
		w.add(`(lower(name) LIKE lower(` + p + `) ESCAPE '\' OR lower(email) LIKE lower(` + p + `) ESCAPE '\')`)
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
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, count, countArgs...).Scan(&total); err != nil {
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

// DeleteUser removes a user with their records and balance changes.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	_, err := write(ctx, s, func(ctx context.Context, tx wtx) (struct{}, error) {
		if _, err := tx.ExecContext(ctx, `DELETE FROM balance_changes WHERE user_id = $1`, id); err != nil {
			return struct{}{}, err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM usage_records WHERE user_id = $1`, id); err != nil {
			return struct{}{}, err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM usage_daily WHERE user_id = $1`, id); err != nil {
			return struct{}{}, err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, id)
		if err != nil {
			return struct{}{}, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return struct{}{}, err
		}
		if n == 0 {
			return struct{}{}, store.ErrNotFound
		}
		return struct{}{}, nil
	})
	return err
}

const changeCols = `id, user_id, actor, reason, old_balance, new_balance, created_at`

func scanChange(row scanner) (store.BalanceChange, error) {
	var (
		c        store.BalanceChange
		old, bal int64
		created  int64
	)
	err := row.Scan(&c.ID, &c.UserID, &c.Actor, &c.Reason, &old, &bal, &created)
	c.OldBalance, c.NewBalance = money.Amount(old), money.Amount(bal)
	c.CreatedAt = fromMS(created)
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
	return collect(ctx, s.r, scanChange, `SELECT `+changeCols+` FROM balance_changes
		WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, userID, limit)
}

// recordWhere is the WHERE clause of a record query.
func recordWhere(q store.RecordQuery) where {
	var w where
	if len(q.Users) > 0 {
		w.add("user_id IN (" + w.list(q.Users) + ")")
	}
	if len(q.Models) > 0 {
		w.add("model IN (" + w.list(q.Models) + ")")
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
	order, err := orderBy(recordSort, q.SortField, q.Descending)
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
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, count, countArgs...).Scan(&total); err != nil {
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
// ignoring paging, one row at a time. fn must not use the store: with the
// in-memory database, the row cursor holds the only connection.
func (s *Store) EachRecord(ctx context.Context, q store.RecordQuery, fn func(store.Record) error) error {
	order, err := orderBy(recordSort, q.SortField, q.Descending)
	if err != nil {
		return err
	}
	w := recordWhere(q)
	rows, err := s.r.QueryContext(ctx, `SELECT `+recordCols+` FROM usage_records`+w.String()+` ORDER BY `+order, w.args...)
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

// dayMS is a UTC day in milliseconds.
const dayMS = 24 * 60 * 60 * 1000

// splitSums are the sums of store.UsageTotals as scanTotals reads them,
// cost and tokens each in two parts (see safeSum); calls is the calls
// column's sum, or COUNT(*) over records.
func splitSums(calls string) string {
	return `SUM(cost >> 32) AS cost_hi, SUM(cost & 4294967295) AS cost_lo, ` + calls + ` AS calls,
		SUM(input_tokens >> 32) AS in_hi, SUM(input_tokens & 4294967295) AS in_lo,
		SUM(output_tokens >> 32) AS out_hi, SUM(output_tokens & 4294967295) AS out_lo`
}

// splitCols are the columns of splitSums in a subquery a.
const splitCols = `a.cost_hi, a.cost_lo, a.calls, a.in_hi, a.in_lo, a.out_hi, a.out_lo`

func scanTotals(row scanner, lead ...any) (store.UsageTotals, error) {
	var (
		t                                        store.UsageTotals
		costHi, costLo, inHi, inLo, outHi, outLo int64
	)
	err := row.Scan(append(lead, &costHi, &costLo, &t.Calls, &inHi, &inLo, &outHi, &outLo)...)
	t.Cost = money.Amount(store.JoinSum(costHi, costLo))
	t.InputTokens, t.OutputTokens = store.JoinSum(inHi, inLo), store.JoinSum(outHi, outLo)
	return t, err
}

// UsageBetween summarises the final (not pending) records created in
// [from, to), in one snapshot: whole UTC days from the daily rollups, the
// partial days at the edges from the records.
//
// SQLite has no hash aggregation: a GROUP BY that no index orders sorts its
// input, and sorting the rollup rows of months is slow. So the sums come
// from two streaming reads of the rollups, by user and model (in the order
// of usage_daily_user_model_idx) and by day (in primary key order), plus
// the few edge records grouped by day, user and model, merged here. Every
// sum is taken in two parts (splitSums), so none overflows, and totals
// beyond an int64 saturate at its ends.
func (s *Store) UsageBetween(ctx context.Context, from, to time.Time) (store.Usage, error) {
	var roll, edges where
	roll.add("calls > 0")
	a, b := from, to // the whole days are [a, b)
	if !from.IsZero() {
		a = dayCeil(from)
	}
	if !to.IsZero() {
		b = dayOf(to)
	}
	wholeDays := from.IsZero() || to.IsZero() || a.Before(b)
	if wholeDays {
		roll.between("day", a, b)
		var parts []string
		if !from.IsZero() {
			n := len(edges.conds)
			edges.between("created_at", from, a)
			parts = append(parts, "("+strings.Join(edges.conds[n:], " AND ")+")")
		}
		if !to.IsZero() {
			n := len(edges.conds)
			edges.between("created_at", b, to)
			parts = append(parts, "("+strings.Join(edges.conds[n:], " AND ")+")")
		}
		edges.conds = nil
		if len(parts) > 0 {
			edges.add("(" + strings.Join(parts, " OR ") + ")")
		}
	} else {
		edges.between("created_at", from, to)
	}
	edges.add("status <> 'pending'")

	type key struct{ user, model string }
	var (
		byPair = map[key]*store.UsageTotals{}
		byDay  = map[int64]*store.UsageTotals{}
		names  = map[string]string{}
	)
	add := func(m *store.UsageTotals, t store.UsageTotals) { m.Add(t) }
	addPair := func(k key, name string, t store.UsageTotals) {
		if byPair[k] == nil {
			byPair[k] = &store.UsageTotals{}
		}
		add(byPair[k], t)
		names[k.user] = name
	}
	addDay := func(d int64, t store.UsageTotals) {
		if byDay[d] == nil {
			byDay[d] = &store.UsageTotals{}
		}
		add(byDay[d], t)
	}
	each := func(tx *sql.Tx, query string, args []any, fn func(row scanner) error) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := fn(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	d := strconv.Itoa(dayMS)
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if wholeDays {
			// The names are the users' current ones.
			err := each(tx, `SELECT a.user_id, a.model, COALESCE(u.name, ''), `+splitCols+`
				FROM (SELECT user_id, model, `+splitSums("SUM(calls)")+`
					FROM usage_daily`+roll.String()+` GROUP BY user_id, model) a
				LEFT JOIN users u ON u.id = a.user_id`, roll.args, func(row scanner) error {
				var k key
				var name string
				t, err := scanTotals(row, &k.user, &k.model, &name)
				addPair(k, name, t)
				return err
			})
			if err != nil {
				return err
			}
			err = each(tx, `SELECT day, `+splitSums("SUM(calls)")+` FROM usage_daily`+roll.String()+` GROUP BY day`, roll.args,
				func(row scanner) error {
					var day int64
					t, err := scanTotals(row, &day)
					addDay(day, t)
					return err
				})
			if err != nil {
				return err
			}
			if len(edges.conds) == 1 { // no edges
				return nil
			}
		}
		return each(tx, `SELECT a.day, a.user_id, a.model, COALESCE(u.name, ''), `+splitCols+`
			FROM (SELECT created_at - (((created_at % `+d+`) + `+d+`) % `+d+`) AS day, user_id, model,
					`+splitSums("COUNT(*)")+`
				FROM usage_records`+edges.String()+` GROUP BY 1, 2, 3) a
			LEFT JOIN users u ON u.id = a.user_id`, edges.args, func(row scanner) error {
			var (
				day  int64
				k    key
				name string
			)
			t, err := scanTotals(row, &day, &k.user, &k.model, &name)
			addPair(k, name, t)
			addDay(day, t)
			return err
		})
	})
	if err != nil {
		return store.Usage{}, err
	}

	u := store.Usage{ByModel: []store.ModelUsage{}, ByUser: []store.UserUsage{}, ByDay: []store.DayUsage{}}
	models, users := map[string]*store.UsageTotals{}, map[string]*store.UsageTotals{}
	for k, t := range byPair {
		if models[k.model] == nil {
			models[k.model] = &store.UsageTotals{}
		}
		add(models[k.model], *t)
		if users[k.user] == nil {
			users[k.user] = &store.UsageTotals{}
		}
		add(users[k.user], *t)
	}
	for m, t := range models {
		u.ByModel = append(u.ByModel, store.ModelUsage{Model: m, UsageTotals: *t})
	}
	slices.SortFunc(u.ByModel, func(a, b store.ModelUsage) int {
		return cmp.Or(cmp.Compare(b.Cost, a.Cost), strings.Compare(a.Model, b.Model))
	})
	for id, t := range users {
		u.ByUser = append(u.ByUser, store.UserUsage{UserID: id, Name: names[id], UsageTotals: *t})
	}
	slices.SortFunc(u.ByUser, func(a, b store.UserUsage) int {
		return cmp.Or(cmp.Compare(b.Cost, a.Cost), strings.Compare(a.UserID, b.UserID))
	})
	for day, t := range byDay {
		u.ByDay = append(u.ByDay, store.DayUsage{Day: fromMS(day), UsageTotals: *t})
		add(&u.Total, *t)
	}
	slices.SortFunc(u.ByDay, func(a, b store.DayUsage) int { return a.Day.Compare(b.Day) })
	u.ActiveUsers, u.Models = int64(len(u.ByUser)), int64(len(u.ByModel))
	return u, nil
}

// ListModelPrices returns every price row, by id.
func (s *Store) ListModelPrices(ctx context.Context) ([]store.ModelPrice, error) {
	return collect(ctx, s.r, scanPrice, `SELECT `+priceCols+` FROM model_prices ORDER BY id`)
}

// Export returns every row, in one snapshot.
func (s *Store) Export(ctx context.Context) (store.Backup, error) {
	var b store.Backup
	err := s.readTx(ctx, func(tx *sql.Tx) error {
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
func exportRows(ctx context.Context, tx queryer) (b store.Backup, err error) {
	if b.Users, err = collect(ctx, tx, scanUser, `SELECT `+userCols+` FROM users ORDER BY id`); err != nil {
		return b, err
	}
	if b.ModelPrices, err = collect(ctx, tx, scanPrice, `SELECT `+priceCols+` FROM model_prices ORDER BY id`); err != nil {
		return b, err
	}
	if b.Records, err = collect(ctx, tx, scanRecord, `SELECT `+recordCols+` FROM usage_records ORDER BY id`); err != nil {
		return b, err
	}
	b.BalanceChanges, err = collect(ctx, tx, scanChange, `SELECT `+changeCols+` FROM balance_changes ORDER BY id`)
	return b, err
}

// Import replaces every row with the backup's in one write: the rows keep
// their ids, keys, times and statuses. Any failure (a record of a user the
// backup lacks, two rows with one id or key, an error from keep) undoes all
// of it. keep sees the rows as they are in the write transaction, before
// the import: no other write comes between.
func (s *Store) Import(ctx context.Context, b store.Backup, keep func(replaced store.Backup) error) error {
	_, err := write(ctx, s, func(ctx context.Context, tx wtx) (struct{}, error) {
		if keep != nil {
			old, err := exportRows(ctx, tx.Tx)
			if err != nil {
				return struct{}{}, err
			}
			if err := keep(old); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, importRows(ctx, tx.Tx, b)
	})
	if err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	return nil
}

func importRows(ctx context.Context, tx *sql.Tx, b store.Backup) error {
	// Children first: the foreign keys are checked at once.
	for _, table := range []string{"usage_daily", "balance_changes", "usage_records", "users", "model_prices"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table); err != nil {
			return err
		}
	}
	err := insertAll(ctx, tx, `INSERT INTO users (id, email, name, role, balance, initial_balance, deleted,
			created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, b.Users,
		func(u store.User) []any {
			return []any{u.ID, u.Email, u.Name, u.Role, int64(u.Balance), int64(u.InitialBalance), u.Blocked,
				ms(u.CreatedAt), ms(u.UpdatedAt)}
		})
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	err = insertAll(ctx, tx, `INSERT INTO model_prices (id, name, base_model_id, input_price, output_price,
			per_msg_price, priced, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`, b.ModelPrices,
		func(p store.ModelPrice) []any {
			return []any{p.ID, p.Name, p.BaseModelID, int64(p.Input), int64(p.Output), int64(p.PerMessage), p.Priced,
				ms(p.UpdatedAt)}
		})
	if err != nil {
		return fmt.Errorf("model prices: %w", err)
	}
	err = insertAll(ctx, tx, `INSERT INTO usage_records (id, user_id, nickname, model, input_tokens, output_tokens,
			cached_tokens, reasoning_tokens, cost, balance_after, source, status, estimated, purpose, chat_id,
			message_id, idem_key, duration_ms, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`, b.Records,
		func(r store.Record) []any {
			return []any{r.ID, r.UserID, r.Nickname, r.Model, r.InputTokens, r.OutputTokens, r.CachedTokens,
				r.ReasoningTokens, int64(r.Cost), int64(r.BalanceAfter), r.Source, r.Status, r.Estimated, r.Purpose,
				r.ChatID, r.MessageID, nullKey(r.Key), r.DurationMS, ms(r.CreatedAt), msPtr(r.ExpiresAt)}
		})
	if err != nil {
		return fmt.Errorf("usage records: %w", err)
	}
	if _, err := tx.ExecContext(ctx, rebuildDaily); err != nil {
		return fmt.Errorf("usage rollups: %w", err)
	}
	err = insertAll(ctx, tx, `INSERT INTO balance_changes (id, user_id, actor, reason, old_balance, new_balance,
			created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`, b.BalanceChanges,
		func(c store.BalanceChange) []any {
			return []any{c.ID, c.UserID, c.Actor, c.Reason, int64(c.OldBalance), int64(c.NewBalance), ms(c.CreatedAt)}
		})
	if err != nil {
		return fmt.Errorf("balance changes: %w", err)
	}
	return nil
}

// insertAll inserts rows with one statement prepared in the transaction.
func insertAll[T any](ctx context.Context, tx *sql.Tx, query string, rows []T, args func(T) []any) (err error) {
	if len(rows) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	for i, row := range rows {
		if _, err := st.ExecContext(ctx, args(row)...); err != nil {
			return fmt.Errorf("row %d: %w", i+1, err)
		}
	}
	return nil
}
