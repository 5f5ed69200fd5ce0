package sqlstore

// The reads: single rows, the ledger sums, and the admin's lists with
// paging.
//
// Sorting: only the fields of store.UserSortFields and
// store.RecordSortFields, mapped to SQL here; anything else is refused
// before any SQL runs. Text fields sort case-insensitively in byte order
// (Dialect.Fold), every order ends with the id as a tie-breaker in the same
// direction.
//
// Search: a case-insensitive substring of the name or the email
// (Dialect.Search), with %, _ and \ taken literally.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// User returns one user, or store.ErrNotFound.
func User(ctx context.Context, q Querier, id string) (store.User, error) {
	return scanUser(q.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
}

// ModelPrice returns a model's price row, or store.ErrNotFound.
func ModelPrice(ctx context.Context, q Querier, id string) (store.ModelPrice, error) {
	return scanPrice(q.QueryRow(ctx, `SELECT `+priceCols+` FROM model_prices WHERE id = $1`, id))
}

// RecordByKey returns the record with an idempotency key, or store.ErrNotFound.
func RecordByKey(ctx context.Context, q Querier, key string) (store.Record, error) {
	if key == "" {
		return store.Record{}, store.ErrNotFound
	}
	return scanRecord(q.QueryRow(ctx, `SELECT `+recordCols+` FROM usage_records WHERE idem_key = $1`, key))
}

// Ledger sums one user's ledger in one statement (one snapshot); sums
// beyond an int64 saturate.
func Ledger(ctx context.Context, d Dialect, q Querier, userID string) (store.Ledger, error) {
	var (
		l        store.Ledger
		adj, chg Sum
		dest     = []any{(*int64)(&l.Initial), (*int64)(&l.Balance)}
	)
	dest = append(append(append(dest, d.Dest(&adj)...), d.Dest(&chg)...), &l.Records)
	err := q.QueryRow(ctx, `
		SELECT u.initial_balance, u.balance, a.*, r.*
		FROM users u,
			(SELECT `+d.SumDiff("new_balance", "old_balance")+` FROM balance_changes WHERE user_id = $1) a,
			(SELECT `+d.Sum("cost")+`, COUNT(*) FROM usage_records WHERE user_id = $1) r
		WHERE u.id = $1`, userID).Scan(dest...)
	l.Adjustments, l.Charges = money.Amount(adj.Value()), money.Amount(chg.Value())
	return l, found(err)
}

// MessageUsage sums what one path recorded for a message.
func MessageUsage(ctx context.Context, d Dialect, q Querier, source, chatID, messageID string) (store.MessageUsage, error) {
	var (
		u    store.MessageUsage
		s    [5]Sum
		dest = []any{&u.Records, &u.Model}
	)
	for i := range s {
		dest = append(dest, d.Dest(&s[i])...)
	}
	err := q.QueryRow(ctx, messageUsageSQL[b2i(d.SplitSums)], messageID, chatID, source).Scan(dest...)
	u.InputTokens, u.OutputTokens = s[0].Value(), s[1].Value()
	u.CachedTokens, u.ReasoningTokens = s[2].Value(), s[3].Value()
	u.Cost = money.Amount(s[4].Value())
	return u, err
}

// messageUsageSQL is MessageUsage's statement, built once for either kind
// of sum (the only part of the dialect it uses).
var messageUsageSQL = [2]string{buildMessageUsage(Dialect{}), buildMessageUsage(Dialect{SplitSums: true})}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func buildMessageUsage(d Dialect) string {
	return `SELECT COUNT(*), COALESCE(MAX(model), ''), ` + d.Sum("input_tokens") + `,
			` + d.Sum("output_tokens") + `, ` + d.Sum("cached_tokens") + `,
			` + d.Sum("reasoning_tokens") + `, ` + d.Sum("cost") + `
		FROM usage_records
		WHERE message_id = $1 AND message_id <> '' AND chat_id = $2 AND source = $3
			AND status NOT IN ('failed', 'expired')`
}

// ExpiredHolds lists pending records whose hold has lapsed, oldest first.
func ExpiredHolds(ctx context.Context, d Dialect, q Querier, at time.Time, limit int) ([]store.Record, error) {
	out, err := collect(ctx, q, scanRecord, `SELECT `+recordCols+` FROM usage_records
		WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1
		ORDER BY expires_at LIMIT $2`, d.Time(at), limit)
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// Where builds a WHERE clause with numbered parameters.
type Where struct {
	Conds []string
	Args  []any
}

// Arg adds a parameter and returns its placeholder.
func (w *Where) Arg(v any) string {
	w.Args = append(w.Args, v)
	return "$" + strconv.Itoa(len(w.Args))
}

// Add adds a condition.
func (w *Where) Add(cond string) { w.Conds = append(w.Conds, cond) }

func (w *Where) String() string {
	if len(w.Conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.Conds, " AND ")
}

// In adds col among vs.
func (w *Where) In(d Dialect, col string, vs []string) {
	if d.ArrayParams {
		w.Add(col + " = ANY(" + w.Arg(vs) + ")")
		return
	}
	ps := make([]string, len(vs))
	for i, v := range vs {
		ps[i] = w.Arg(v)
	}
	w.Add(col + " IN (" + strings.Join(ps, ", ") + ")")
}

// Between adds the time column col in [from, to); zero times are unbounded.
func (w *Where) Between(d Dialect, col string, from, to time.Time) {
	if !from.IsZero() {
		w.Add(col + " >= " + w.Arg(d.Time(d.Ceil(from))))
	}
	if !to.IsZero() {
		w.Add(col + " < " + w.Arg(d.Time(d.Ceil(to))))
	}
}

// Edges adds col in [from, a) or in [b, to): the partial days at the
// edges of [from, to), whose whole days are [a, b) (WholeDays); a zero
// from or to has no edge. It reports whether there is any edge.
func (w *Where) Edges(d Dialect, col string, from, a, b, to time.Time) bool {
	var parts []string
	for _, r := range [][2]time.Time{{from, a}, {b, to}} {
		if r[0].IsZero() || r[1].IsZero() {
			continue
		}
		e := Where{Args: w.Args}
		e.Between(d, col, r[0], r[1])
		parts = append(parts, "("+strings.Join(e.Conds, " AND ")+")")
		w.Args = e.Args
	}
	if len(parts) == 0 {
		return false
	}
	w.Add("(" + strings.Join(parts, " OR ") + ")")
	return true
}

// likeEscaper makes LIKE's wildcards (and its escape) literal.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// userFolded and recordFolded are the text fields of store.UserSortFields
// and store.RecordSortFields, which sort case-insensitively.
var (
	userFolded   = map[string]bool{"name": true, "email": true, "role": true}
	recordFolded = map[string]bool{"model": true, "user_id": true, "nickname": true}
)

// orderBy returns the ORDER BY list for a sort field ("" is created_at),
// one of fields (folded: its text fields), ending with tie, the id, as a
// tie-breaker in the same direction; store.ErrInvalidQuery for any other.
func orderBy(d Dialect, fields []string, folded map[string]bool, field string, desc bool, tie string) (string, error) {
	if field == "" {
		field = "created_at"
	}
	if !slices.Contains(fields, field) {
		return "", fmt.Errorf("%w: cannot sort by %q", store.ErrInvalidQuery, field)
	}
	col := field
	if folded[field] {
		col = d.Fold(field)
	}
	dir := " ASC"
	if desc {
		dir = " DESC"
	}
	return col + dir + ", " + tie + dir, nil
}

// ListUsers returns a page of users and how many
// match in all; q should be one snapshot.
func ListUsers(ctx context.Context, d Dialect, q Querier, uq store.UserQuery) ([]store.User, int64, error) {
	limit, offset, err := store.LimitOffset(uq.Page, uq.PageSize)
	if err != nil {
		return nil, 0, err
	}
	order, err := orderBy(d, store.UserSortFields, userFolded, uq.SortField, uq.Descending, d.Bytes("id"))
	if err != nil {
		return nil, 0, err
	}
	var w Where
	if uq.Search != "" {
		p := w.Arg("%" + likeEscaper.Replace(uq.Search) + "%")
		w.Add(`(` + d.Search("name", p) + ` OR ` + d.Search("email", p) + `)`)
	}
	if uq.Blocked != nil {
		w.Add("deleted = " + w.Arg(*uq.Blocked))
	}
	var total int64
	if err := q.QueryRow(ctx, `SELECT COUNT(*) FROM users`+w.String(), w.Args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	list := `SELECT ` + userCols + ` FROM users` + w.String() +
		` ORDER BY ` + order + ` LIMIT ` + w.Arg(limit) + ` OFFSET ` + w.Arg(offset)
	users, err := collect(ctx, q, scanUser, list, w.Args...)
	if err != nil {
		return nil, 0, err
	}
	return users, total, nil
}

// BalanceChanges returns a user's latest balance changes, newest first.
func BalanceChanges(ctx context.Context, q Querier, userID string, limit int) ([]store.BalanceChange, error) {
	if limit <= 0 {
		limit = defaultChanges
	}
	return collect(ctx, q, scanChange, `SELECT `+changeCols+` FROM balance_changes
		WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, userID, limit)
}

// defaultChanges is how many balance changes BalanceChanges returns when
// the caller gives no limit.
const defaultChanges = 50

// recordWhere is the WHERE clause of a record query whose UserSearch
// recordUsers has resolved: into ids, or, when too many users match to
// list, into sub, a condition on the users table.
func recordWhere(d Dialect, rq store.RecordQuery, sub *Where) Where {
	var w Where
	if sub != nil {
		// Renumber sub's placeholders after w's (none yet).
		w.Add("user_id IN (SELECT id FROM users" + sub.String() + ")")
		w.Args = append(w.Args, sub.Args...)
	} else if len(rq.Users) > 0 {
		w.In(d, "user_id", rq.Users)
	}
	if len(rq.Models) > 0 {
		w.In(d, "model", rq.Models)
	}
	w.Between(d, "created_at", rq.From, rq.To)
	return w
}

// maxUserIDs is the most user ids recordUsers passes as parameters; more
// matching users are selected by a subquery on the users table instead.
const maxUserIDs = 500

// recordUsers resolves a record query's UserSearch: the matching users
// first (the users table is small next to the records, and searched the
// way ListUsers searches it), then the records by user id through their
// index, never a LIKE over the records. It returns the query with Users
// set to the ids, or sub, the users' condition, when more than maxUserIDs
// match; none false when no user matches, so no record does.
func recordUsers(ctx context.Context, d Dialect, q Querier, rq store.RecordQuery) (_ store.RecordQuery, sub *Where, none bool, err error) {
	if rq.UserSearch == "" {
		return rq, nil, false, nil
	}
	var w Where
	p := w.Arg("%" + likeEscaper.Replace(rq.UserSearch) + "%")
	w.Add(`(` + d.Search("name", p) + ` OR ` + d.Search("email", p) + ` OR id = ` + w.Arg(rq.UserSearch) + `)`)
	if len(rq.Users) > 0 {
		w.In(d, "id", rq.Users)
	}
	ids, err := collect(ctx, q, func(row Row) (id string, err error) { return id, row.Scan(&id) },
		`SELECT id FROM users`+w.String()+` LIMIT `+strconv.Itoa(maxUserIDs+1), w.Args...)
	switch {
	case err != nil:
		return rq, nil, false, err
	case len(ids) == 0:
		return rq, nil, true, nil
	case len(ids) > maxUserIDs:
		return rq, &w, false, nil
	}
	rq.Users, rq.UserSearch = ids, ""
	return rq, nil, false, nil
}

// ListRecords returns a page of records and how many match in all; q
// should be one snapshot.
func ListRecords(ctx context.Context, d Dialect, q Querier, rq store.RecordQuery) ([]store.Record, int64, error) {
	limit, offset, err := store.LimitOffset(rq.Page, rq.PageSize)
	if err != nil {
		return nil, 0, err
	}
	order, err := orderBy(d, store.RecordSortFields, recordFolded, rq.SortField, rq.Descending, "id")
	if err != nil {
		return nil, 0, err
	}
	rq, sub, none, err := recordUsers(ctx, d, q, rq)
	if err != nil || none {
		return []store.Record{}, 0, err
	}
	w := recordWhere(d, rq, sub)
	var total int64
	if err := q.QueryRow(ctx, `SELECT COUNT(*) FROM usage_records`+w.String(), w.Args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	list := `SELECT ` + recordCols + ` FROM usage_records` + w.String() +
		` ORDER BY ` + order + ` LIMIT ` + w.Arg(limit) + ` OFFSET ` + w.Arg(offset)
	recs, err := collect(ctx, q, scanRecord, list, w.Args...)
	if err != nil {
		return nil, 0, err
	}
	return recs, total, nil
}

// EachRecord calls fn for every matching record in ListRecords' order,
// ignoring paging, one row at a time.
func EachRecord(ctx context.Context, d Dialect, q Querier, rq store.RecordQuery, fn func(store.Record) error) error {
	order, err := orderBy(d, store.RecordSortFields, recordFolded, rq.SortField, rq.Descending, "id")
	if err != nil {
		return err
	}
	rq, sub, none, err := recordUsers(ctx, d, q, rq)
	if err != nil || none {
		return err
	}
	w := recordWhere(d, rq, sub)
	rows, err := q.Query(ctx, `SELECT `+recordCols+` FROM usage_records`+w.String()+` ORDER BY `+order, w.Args...)
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

// ListModelPrices returns every price row, by id in byte order.
func ListModelPrices(ctx context.Context, d Dialect, q Querier) ([]store.ModelPrice, error) {
	return collect(ctx, q, scanPrice, `SELECT `+priceCols+` FROM model_prices ORDER BY `+d.Bytes("id"))
}

// Export reads every row; q should be one snapshot.
func Export(ctx context.Context, d Dialect, q Querier) (b store.Backup, err error) {
	if b.Users, err = collect(ctx, q, scanUser, `SELECT `+userCols+` FROM users ORDER BY `+d.Bytes("id")); err != nil {
		return b, err
	}
	if b.ModelPrices, err = ListModelPrices(ctx, d, q); err != nil {
		return b, err
	}
	if b.Records, err = collect(ctx, q, scanRecord, `SELECT `+recordCols+` FROM usage_records ORDER BY id`); err != nil {
		return b, err
	}
	b.BalanceChanges, err = collect(ctx, q, scanChange, `SELECT `+changeCols+` FROM balance_changes ORDER BY id`)
	return b, err
}
