package sqlstore

// Budgets: the usage a limit counts in its window, limits and grants as
// the admin keeps them, and OpenWebUI's groups as last synced.

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// globPattern translates a model pattern (* and ?, see budget.Match) for
// the dialect's Glob.
func (d Dialect) globPattern(p string) string {
	if d.ArrayParams { // PostgreSQL: LIKE, case-sensitive
		return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`, `*`, `%`, `?`, `_`).Replace(p)
	}
	return p // SQLite: GLOB, case-sensitive; budget.Limit.Validate refuses [ and ]
}

// glob is SQL matching col against a translated pattern. In SQLite the
// pattern is an expression rather than a bare parameter: a bare one lets
// the planner use an index for a prefix pattern, and so makes SQLite
// prepare the statement again for every new pattern bound (see
// sqlite3_prepare_v2), which cost a hold more than its limits.
func (d Dialect) glob(col, p string) string {
	if d.ArrayParams {
		return col + ` LIKE ` + p + ` ESCAPE '\'`
	}
	return col + ` GLOB (` + p + ` || '')`
}

// usageWhere adds the members and models of a check to w.
func usageWhere(d Dialect, w *Where, userID string, c store.LimitCheck) {
	switch c.Pool.Kind {
	case "group":
		w.Add(`user_id IN (SELECT user_id FROM openwebui_group_members WHERE group_id = ` + w.Arg(c.Pool.ID) + `)`)
	case "role":
		w.Add(`user_id IN (SELECT id FROM users WHERE role = ` + w.Arg(c.Pool.ID) + `)`)
	case "all":
	default:
		w.Add(`user_id = ` + w.Arg(userID))
	}
	if len(c.Models) > 0 {
		ors := make([]string, len(c.Models))
		for i, m := range c.Models {
			ors[i] = d.glob("model", w.Arg(d.globPattern(m)))
		}
		w.Add("(" + strings.Join(ors, " OR ") + ")")
	}
}

// usagePart is one SELECT of a check's usage: the sum of expr over the
// rows FROM … WHERE tail selects.
type usagePart struct{ expr, tail string }

// usageParts is, for each check, the parts whose sums add up to what it
// used in its window up to now, from the rollups kept in the same
// transaction as each charge: whole UTC days from usage_daily, the
// partial days at the window's edges from usage_minute, and the holds in
// flight (pending records, which no rollup counts). A window starts at a
// whole minute: a rolling one at the start of the minute now - its
// duration falls in, so usage leaves it at the end of that minute, never
// early. Their parameters are added to w.
func usageParts(d Dialect, w *Where, userID string, checks []store.LimitCheck, now time.Time) [][]usagePart {
	today := DayOf(now)
	all := make([][]usagePart, len(checks))
	for i, c := range checks {
		part := func(expr, table string, cond func(pw *Where)) {
			pw := Where{Args: w.Args}
			usageWhere(d, &pw, userID, c)
			cond(&pw)
			all[i] = append(all[i], usagePart{expr, ` FROM ` + table + pw.String()})
			w.Args = pw.Args
		}
		from := c.From.UTC().Truncate(time.Minute)
		a := DayCeil(from)
		measure, held := `cost`, `cost`
		switch c.Measure {
		case string(budget.Tokens):
			measure, held = `input_tokens + output_tokens`, `held_tokens`
		case string(budget.Messages):
			measure, held = `calls`, `1`
		}
		if a.Before(today) {
			part(measure, "usage_daily", func(pw *Where) {
				pw.Add(`day >= ` + pw.Arg(d.Day(a)) + ` AND day < ` + pw.Arg(d.Day(today)))
			})
			part(measure, "usage_minute", func(pw *Where) {
				pw.Add(`((minute >= ` + pw.Arg(d.Time(from)) + ` AND minute < ` + pw.Arg(d.Time(a)) +
					`) OR minute >= ` + pw.Arg(d.Time(today)) + `)`)
			})
		} else {
			part(measure, "usage_minute", func(pw *Where) { pw.Add(`minute >= ` + pw.Arg(d.Time(from))) })
		}
		part(held, "usage_records", func(pw *Where) {
			pw.Add(`status = 'pending' AND created_at >= ` + pw.Arg(d.Time(from)))
		})
	}
	return all
}

// LimitUsageQuery is one statement summing what each check used (see
// usageParts). Its rows are (check index, Sum…).
func LimitUsageQuery(d Dialect, userID string, checks []store.LimitCheck, now time.Time) (string, []any) {
	var w Where
	var selects []string
	for i, parts := range usageParts(d, &w, userID, checks, now) {
		for _, p := range parts {
			selects = append(selects, `SELECT `+strconv.Itoa(i)+`, `+d.Sum(p.expr)+p.tail)
		}
	}
	return strings.Join(selects, "\nUNION ALL\n"), w.Args
}

// limitRoom is SQL true when every check has room left: what it used is
// below its amount. Reserve makes it the condition of the hold's INSERT,
// so that checking limits costs no statement of its own. The sums are
// compared in SQL: in PostgreSQL as NUMERIC; in SQLite from the halves of
// Sum, whose arithmetic turns to REAL rather than fail beyond an int64
// (only far above any amount).
func limitRoom(d Dialect, w *Where, userID string, checks []store.LimitCheck, now time.Time) string {
	if len(checks) == 0 {
		return `TRUE`
	}
	conds := make([]string, len(checks))
	for i, parts := range usageParts(d, w, userID, checks, now) {
		selects := make([]string, len(parts))
		for j, p := range parts {
			if d.SplitSums {
				selects[j] = `SELECT COALESCE(SUM((` + p.expr + `) >> 32), 0) AS hi, COALESCE(SUM((` + p.expr + `) & 4294967295), 0) AS lo` + p.tail
			} else {
				selects[j] = `SELECT COALESCE(SUM(` + p.expr + `), 0) AS s` + p.tail
			}
		}
		total := `SUM(s)`
		if d.SplitSums {
			total = `SUM(hi) * 4294967296 + SUM(lo)`
		}
		conds[i] = `(SELECT ` + total + ` FROM (` + strings.Join(selects, ` UNION ALL `) + `) u) < ` + w.Arg(checks[i].Amount)
	}
	return strings.Join(conds, ` AND `)
}

// LimitUsage runs LimitUsageQuery: what each check has used.
func LimitUsage(ctx context.Context, d Dialect, q Querier, userID string, checks []store.LimitCheck, now time.Time) ([]int64, error) {
	used := make([]int64, len(checks))
	if len(checks) == 0 {
		return used, nil
	}
	query, args := LimitUsageQuery(d, userID, checks, now)
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var i int
		var s Sum
		if err := rows.Scan(append([]any{&i}, d.Dest(&s)...)...); err != nil {
			return nil, err
		}
		used[i] = store.SatAdd(used[i], s.Value())
	}
	return used, rows.Err()
}

// lockPools serialises the holds of a shared limit's members, so that
// each sees the others' holds: in PostgreSQL with a transaction-level
// advisory lock per pool, taken in a stable order and before the user's
// row (Reserve takes them in its UPDATE of the row, lockPoolsSQL); SQLite
// runs one writer.
func lockPools(ctx context.Context, d Dialect, q Querier, checks []store.LimitCheck) error {
	keys := poolKeys(d, checks)
	if len(keys) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, lockPoolsSQL("$1"), keys)
	return err
}

// lockPoolsSQL locks the pools whose keys are the parameter, in their order.
func lockPoolsSQL(param string) string {
	return `SELECT COUNT(pg_advisory_xact_lock(hashtextextended(k, 0))) AS n FROM unnest(CAST(` + param + ` AS TEXT[])) k`
}

// poolKeys is the sorted advisory lock keys of the checks' pools, none
// in SQLite.
func poolKeys(d Dialect, checks []store.LimitCheck) []string {
	if !d.ArrayParams {
		return nil
	}
	var keys []string
	for _, c := range checks {
		if c.Pool.Kind != "" {
			keys = append(keys, "owmon-pool:"+c.Pool.Kind+":"+c.Pool.ID)
		}
	}
	slices.Sort(keys)
	return keys
}

// overLimit reports the first check with nothing left; the caller holds
// the user's row and the pools' locks.
func overLimit(ctx context.Context, d Dialect, q Querier, userID string, checks []store.LimitCheck, now time.Time) (int, int64, error) {
	used, err := LimitUsage(ctx, d, q, userID, checks, now)
	if err != nil {
		return 0, 0, err
	}
	for i, c := range checks {
		if used[i] >= c.Amount {
			return i + 1, used[i], nil
		}
	}
	return 0, 0, nil
}

// ---- Limits, grants and groups as stored ----

const limitCols = `id, scope, measure, amount, window_spec, models, shared`

func scanLimit(row Row) (budget.Limit, error) {
	var l budget.Limit
	var scope, measure, window, models string
	err := row.Scan(&l.ID, &scope, &measure, &l.Amount, &window, &models, &l.Shared)
	if err != nil {
		return l, found(err)
	}
	l.Scope, err = budget.ParseScope(scope)
	if err == nil {
		l.Measure, err = budget.ParseMeasure(measure)
	}
	if err == nil {
		l.Window, err = budget.ParseWindow(window)
	}
	if models != "" {
		l.Models = strings.Split(models, "\n")
	}
	return l, err
}

// Limits returns every limit, oldest first.
func Limits(ctx context.Context, q Querier) ([]budget.Limit, error) {
	return collect(ctx, q, scanLimit, `SELECT `+limitCols+` FROM budget_limits ORDER BY id`)
}

// PutLimit inserts a limit (ID 0) or replaces one (store.ErrNotFound if it
// does not exist).
func PutLimit(ctx context.Context, d Dialect, q Querier, l budget.Limit) (budget.Limit, error) {
	args := []any{l.Scope.String(), string(l.Measure), l.Amount, l.Window.String(),
		strings.Join(l.Models, "\n"), l.Shared, d.Time(d.Now())}
	if l.ID == 0 {
		return scanLimit(q.QueryRow(ctx, `INSERT INTO budget_limits (scope, measure, amount, window_spec, models,
			shared, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING `+limitCols, args...))
	}
	return scanLimit(q.QueryRow(ctx, `UPDATE budget_limits SET scope = $1, measure = $2, amount = $3,
		window_spec = $4, models = $5, shared = $6, updated_at = $7 WHERE id = $8 RETURNING `+limitCols,
		append(args, l.ID)...))
}

// deleteByID deletes a row of table, or store.ErrNotFound.
func deleteByID(ctx context.Context, q Querier, table string, id int64) error {
	n, err := q.Exec(ctx, `DELETE FROM `+table+` WHERE id = $1`, id)
	if err == nil && n == 0 {
		return store.ErrNotFound
	}
	return err
}

const grantCols = `id, scope, mode, amount, cap, window_spec, last_window`

func scanGrant(row Row) (budget.Grant, error) {
	var g budget.Grant
	var scope, window string
	var last *time.Time
	var amount, cap int64
	err := row.Scan(&g.ID, &scope, &g.Mode, &amount, &cap, &window, nullTime{&last})
	if err != nil {
		return g, found(err)
	}
	if last != nil {
		g.LastWindow = *last
	}
	g.Amount, g.Cap = money.Amount(amount), money.Amount(cap)
	g.Scope, err = budget.ParseScope(scope)
	if err == nil {
		g.Window, err = budget.ParseWindow(window)
	}
	return g, err
}

// Grants returns every grant, oldest first.
func Grants(ctx context.Context, q Querier) ([]budget.Grant, error) {
	return collect(ctx, q, scanGrant, `SELECT `+grantCols+` FROM budget_grants ORDER BY id`)
}

// AddGrant stores a new grant. Its first window is the one it is created
// in, so it is applied at once.
func AddGrant(ctx context.Context, d Dialect, q Querier, g budget.Grant) (budget.Grant, error) {
	return scanGrant(q.QueryRow(ctx, `INSERT INTO budget_grants (scope, mode, amount, cap, window_spec, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+grantCols,
		g.Scope.String(), g.Mode, int64(g.Amount), int64(g.Cap), g.Window.String(), d.Time(d.Now())))
}

// ApplyGrant applies grant id for the window starting at window to every
// member of its scope (users not blocked), once: the grant row's
// last_window moves forward in the same transaction, so another instance,
// or a second call, finds the window applied and changes nothing. It
// returns the balance changes made.
func ApplyGrant(ctx context.Context, d Dialect, q Querier, id int64, window time.Time) ([]store.BalanceChange, error) {
	window = d.Stamp(window)
	g, err := scanGrant(q.QueryRow(ctx, `UPDATE budget_grants SET last_window = $2
		WHERE id = $1 AND (last_window IS NULL OR last_window < $2) RETURNING `+grantCols, id, d.Time(window)))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	w := Where{}
	w.Add(`NOT deleted`)
	switch g.Scope.Kind {
	case "user":
		w.Add(`id = ` + w.Arg(g.Scope.ID))
	case "group":
		w.Add(`id IN (SELECT user_id FROM openwebui_group_members WHERE group_id = ` + w.Arg(g.Scope.ID) + `)`)
	case "role":
		w.Add(`role = ` + w.Arg(g.Scope.ID))
	}
	ids, err := collect(ctx, q, func(r Row) (s string, err error) { return s, r.Scan(&s) },
		`SELECT id FROM users`+w.String()+` ORDER BY id`, w.Args...)
	if err != nil {
		return nil, err
	}
	actor := "grant:" + strconv.FormatInt(g.ID, 10)
	reason := g.Mode + " for the " + g.Window.Calendar + " from " + window.Format(time.RFC3339)
	changes := make([]store.BalanceChange, 0, len(ids))
	for _, u := range ids {
		c, err := ChangeBalance(ctx, d, q, u, actor, reason, func(old money.Amount) (money.Amount, error) {
			return g.Next(old), nil
		})
		if err != nil {
			return nil, err
		}
		changes = append(changes, c)
	}
	return changes, nil
}

// Groups returns OpenWebUI's groups as last synced, with their members.
func Groups(ctx context.Context, q Querier) ([]budget.Group, error) {
	groups, err := collect(ctx, q, func(r Row) (g budget.Group, err error) { return g, r.Scan(&g.ID, &g.Name) },
		`SELECT id, name FROM openwebui_groups ORDER BY name, id`)
	if err != nil {
		return nil, err
	}
	type member struct{ group, user string }
	members, err := collect(ctx, q, func(r Row) (m member, err error) { return m, r.Scan(&m.group, &m.user) },
		`SELECT group_id, user_id FROM openwebui_group_members ORDER BY group_id, user_id`)
	if err != nil {
		return nil, err
	}
	at := map[string]int{}
	for i, g := range groups {
		at[g.ID] = i
	}
	for _, m := range members {
		if i, ok := at[m.group]; ok {
			groups[i].Members = append(groups[i].Members, m.user)
		}
	}
	return groups, nil
}

// SetGroups replaces the synced groups and their members.
func SetGroups(ctx context.Context, d Dialect, q Querier, groups []budget.Group) error {
	if _, err := q.Exec(ctx, `DELETE FROM openwebui_group_members`); err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `DELETE FROM openwebui_groups`); err != nil {
		return err
	}
	now := d.Time(d.Now())
	for _, g := range groups {
		if _, err := q.Exec(ctx, `INSERT INTO openwebui_groups (id, name, synced_at) VALUES ($1, $2, $3)`,
			g.ID, g.Name, now); err != nil {
			return err
		}
		for _, u := range g.Members {
			if _, err := q.Exec(ctx, `INSERT INTO openwebui_group_members (group_id, user_id) VALUES ($1, $2)
				ON CONFLICT DO NOTHING`, g.ID, u); err != nil {
				return err
			}
		}
	}
	return nil
}

// UserGroups returns the ids of the groups a user belongs to.
func UserGroups(ctx context.Context, q Querier, userID string) ([]string, error) {
	return collect(ctx, q, func(r Row) (s string, err error) { return s, r.Scan(&s) },
		`SELECT group_id FROM openwebui_group_members WHERE user_id = $1 ORDER BY group_id`, userID)
}
