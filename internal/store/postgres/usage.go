package postgres

// UsageBetween, the one query whose SQL is PostgreSQL's own: see its comment.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlstore"
)

func scanTotals(row pgx.Row, lead ...any) (store.UsageTotals, error) {
	var t store.UsageTotals
	err := row.Scan(append(lead, &t.Cost, &t.Calls, &t.InputTokens, &t.OutputTokens)...)
	return t, err
}

// usageRows is the common table expression "x" of UsageBetween: one row per
// rollup row of the whole UTC days inside [from, to), and one per final
// record of the partial days at its edges, all with the same columns.
func usageRows(from, to time.Time) (string, []any) {
	var roll, edges sqlstore.Where
	roll.Add("calls > 0")
	a, b, wholeDays := sqlstore.WholeDays(from, to)
	if !wholeDays {
		// No whole day: every row comes from the records.
		edges.Between(dialect, "created_at", from, to)
		return recordRows(edges), edges.Args
	}
	if !from.IsZero() {
		roll.Add("day >= " + roll.Arg(a) + "::date")
	}
	if !to.IsZero() {
		roll.Add("day < " + roll.Arg(b) + "::date")
	}
	q := `SELECT day, user_id, model, calls, cost, input_tokens, output_tokens FROM usage_daily` + roll.String()
	edges.Args = roll.Args
	if edges.Edges(dialect, "created_at", from, a, b, to) {
		q += ` UNION ALL ` + recordRows(edges)
	}
	return q, edges.Args
}

// recordRows selects the final records matching w as rollup rows.
func recordRows(w sqlstore.Where) string {
	w.Add("status <> 'pending'")
	return `SELECT (created_at AT TIME ZONE 'UTC')::date, user_id, model, 1::BIGINT, cost, input_tokens,
		output_tokens FROM usage_records` + w.String()
}

// rollSums are the sums of store.UsageTotals over usageRows, in its order;
// a sum beyond the BIGINT range saturates at its end (sqlstore.Dialect.Sum).
var rollSums = dialect.Sum("cost") + `, ` + dialect.Sum("calls") + `,
	` + dialect.Sum("input_tokens") + `, ` + dialect.Sum("output_tokens")

// UsageBetween summarises the final (not pending) records created in
// [from, to), in one snapshot: whole UTC days from the daily rollups, the
// partial days at the edges from the records. One statement reads them
// once, grouped three ways (GROUPING SETS, hashed), and the groups are
// sorted here. The breakdowns by purpose and path come from the breakdown
// rollups (sqlstore.ReadBreakdown), in the same snapshot.
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
	err := s.readPgx(ctx, func(tx pgx.Tx) error {
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
		if err := r.Err(); err != nil {
			return err
		}
		r.Close()
		// The breakdowns, in the same snapshot.
		_, err = sqlstore.ReadBreakdown(ctx, dialect, q{tx}, "", from, to, &u)
		return err
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
