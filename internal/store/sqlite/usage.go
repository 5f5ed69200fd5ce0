package sqlite

// UsageBetween, the one query whose SQL is SQLite's own: see its comment.

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlstore"
)

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

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
// of usage_daily_user_model_idx) and by day (from usage_breakdown_all, in
// primary key order: a few rows a day), plus
// the few edge records grouped by day, user and model, merged here. Every
// sum is taken in two parts (splitSums), so none overflows, and totals
// beyond an int64 saturate at its ends. The breakdowns by purpose and
// path come from the breakdown rollups (sqlstore.ReadBreakdown), in the
// same snapshot.
func (s *Store) UsageBetween(ctx context.Context, from, to time.Time) (store.Usage, error) {
	var roll, days, edges sqlstore.Where
	roll.Add("calls > 0")
	a, b, wholeDays := sqlstore.WholeDays(from, to)
	if wholeDays {
		roll.Between(dialect, "day", a, b) // midnights: stored as they are
		days.Between(dialect, "day", a, b)
		edges.Edges(dialect, "created_at", from, a, b, to)
	} else {
		edges.Between(dialect, "created_at", from, to)
	}
	edges.Add("status <> 'pending'")

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
	var kinds store.Usage // the breakdowns, in the same snapshot
	err := s.readSQL(ctx, func(tx *sql.Tx) error {
		if _, err := sqlstore.ReadBreakdown(ctx, dialect, q{tx}, "", from, to, &kinds); err != nil {
			return err
		}
		if wholeDays {
			// The names are the users' current ones.
			err := each(tx, `SELECT a.user_id, a.model, COALESCE(u.name, ''), `+splitCols+`
				FROM (SELECT user_id, model, `+splitSums("SUM(calls)")+`
					FROM usage_daily`+roll.String()+` GROUP BY user_id, model) a
				LEFT JOIN users u ON u.id = a.user_id`, roll.Args, func(row scanner) error {
				var k key
				var name string
				t, err := scanTotals(row, &k.user, &k.model, &name)
				addPair(k, name, t)
				return err
			})
			if err != nil {
				return err
			}
			// The days from usage_breakdown_all, the same sums in far
			// fewer rows (by day, shard, purpose and path), in its primary
			// key order. Not "calls > 0": a deleted user's rows are taken
			// out in another shard than the one they were added to.
			err = each(tx, `SELECT day, `+splitSums("SUM(calls)")+` FROM usage_breakdown_all`+days.String()+` GROUP BY day`, days.Args,
				func(row scanner) error {
					var day int64
					t, err := scanTotals(row, &day)
					addDay(day, t)
					return err
				})
			if err != nil {
				return err
			}
			if len(edges.Conds) == 1 { // no edges
				return nil
			}
		}
		return each(tx, `SELECT a.day, a.user_id, a.model, COALESCE(u.name, ''), `+splitCols+`
			FROM (SELECT created_at - (((created_at % `+d+`) + `+d+`) % `+d+`) AS day, user_id, model,
					`+splitSums("COUNT(*)")+`
				FROM usage_records`+edges.String()+` GROUP BY 1, 2, 3) a
			LEFT JOIN users u ON u.id = a.user_id`, edges.Args, func(row scanner) error {
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

	u := store.Usage{ByModel: []store.ModelUsage{}, ByUser: []store.UserUsage{}, ByDay: []store.DayUsage{},
		ByPurpose: kinds.ByPurpose, BySource: kinds.BySource, CachedTokens: kinds.CachedTokens,
		ReasoningTokens: kinds.ReasoningTokens}
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
		if t.Calls == 0 { // rows emptied by deletions
			continue
		}
		u.ByDay = append(u.ByDay, store.DayUsage{Day: time.UnixMilli(day).UTC(), UsageTotals: *t})
		add(&u.Total, *t)
	}
	slices.SortFunc(u.ByDay, func(a, b store.DayUsage) int { return a.Day.Compare(b.Day) })
	u.ActiveUsers, u.Models = int64(len(u.ByUser)), int64(len(u.ByModel))
	return u, nil
}
