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

// glob is SQL matching col against a translated pattern.
func (d Dialect) glob(col, p string) string {
	if d.ArrayParams {
		return col + ` LIKE ` + p + ` ESCAPE '\'`
	}
	return col + ` GLOB ` + p
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

// LimitUsageQuery is one statement summing, for each check, what was used
// in its window up to now, from the rollups kept in the same transaction
// as each charge: whole UTC days from usage_daily, the partial days at the
// window's edges from usage_minute, and the holds in flight (pending
// records, which no rollup counts). A window starts at a whole minute: a
// rolling one at the start of the minute now - its duration falls in, so
// usage leaves it at the end of that minute, never early. Its rows are
// (check index, Sum…).
func LimitUsageQuery(d Dialect, userID string, checks []store.LimitCheck, now time.Time) (string, []any) {
	var parts []string
	var args []any
	today := DayOf(now)
	part := func(idx, measure, table string, c store.LimitCheck, cond func(w *Where)) {
		w := Where{Args: args}
		usageWhere(d, &w, userID, c)
		cond(&w)
		parts = append(parts, `SELECT `+idx+`, `+d.Sum(measure)+` FROM `+table+w.String())
		args = w.Args
	}
	for i, c := range checks {
		from := c.From.UTC().Truncate(time.Minute)
		a := DayCeil(from)
		measure, held := `cost`, `cost`
		switch c.Measure {
		case string(budget.Tokens):
			measure, held = `input_tokens + output_tokens`, `held_tokens`
		case string(budget.Messages):
			measure, held = `calls`, `1`
		}
		idx := strconv.Itoa(i)
		if a.Before(today) {
			part(idx, measure, "usage_daily", c, func(w *Where) {
				w.Add(`day >= ` + w.Arg(d.Day(a)) + ` AND day < ` + w.Arg(d.Day(today)))
			})
			part(idx, measure, "usage_minute", c, func(w *Where) {
				w.Add(`((minute >= ` + w.Arg(d.Time(from)) + ` AND minute < ` + w.Arg(d.Time(a)) +
					`) OR minute >= ` + w.Arg(d.Time(today)) + `)`)
			})
		} else {
			part(idx, measure, "usage_minute", c, func(w *Where) { w.Add(`minute >= ` + w.Arg(d.Time(from))) })
		}
		part(idx, held, "usage_records", c, func(w *Where) {
			w.Add(`status = 'pending' AND created_at >= ` + w.Arg(d.Time(from)))
		})
	}
	return strings.Join(parts, "\nUNION ALL\n"), args
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
// advisory lock per pool (in a stable order); SQLite runs one writer.
func lockPools(ctx context.Context, d Dialect, q Querier, checks []store.LimitCheck) error {
	if !d.ArrayParams {
		return nil
	}
	var keys []string
	for _, c := range checks {
		if c.Pool.Kind != "" {
			keys = append(keys, "owmon-pool:"+c.Pool.Kind+":"+c.Pool.ID)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	_, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(CAST($1 AS TEXT[])) k`, keys)
	return err
}

// overLimit reports the first check with nothing left, after locking its
// pools; the caller holds the user's row.
func overLimit(ctx context.Context, d Dialect, q Querier, userID string, checks []store.LimitCheck, now time.Time) (int, int64, error) {
	if len(checks) == 0 {
		return 0, 0, nil
	}
	if err := lockPools(ctx, d, q, checks); err != nil {
		return 0, 0, err
	}
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
