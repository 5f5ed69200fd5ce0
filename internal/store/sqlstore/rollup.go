package sqlstore

// The daily rollups (table usage_daily, see migrations/*/00002): the final
// (not pending) records summed by UTC day, user and model. Every change of
// a record's final contribution updates them in the same transaction, so
// UsageBetween reads whole days from them and only the partial days at the
// edges of a range from usage_records.

import (
	"context"
	"fmt"
	"time"

	"github.com/openwebui-monitor/owmon/internal/store"
)

const day = 24 * time.Hour

// DayOf is the UTC midnight starting t's day (also before 1970).
func DayOf(t time.Time) time.Time { return t.UTC().Truncate(day) }

// DayCeil is the first UTC midnight not before t.
func DayCeil(t time.Time) time.Time {
	d := DayOf(t)
	if d.Before(t) {
		d = d.Add(day)
	}
	return d
}

// WholeDays splits [from, to) (zero times: unbounded): the whole UTC days
// are [a, b) (a or b zero where unbounded), and ok is false when there is
// no whole day.
func WholeDays(from, to time.Time) (a, b time.Time, ok bool) {
	a, b = from, to
	if !from.IsZero() {
		a = DayCeil(from)
	}
	if !to.IsZero() {
		b = DayOf(to)
	}
	return a, b, from.IsZero() || to.IsZero() || a.Before(b)
}

// contribution is what one record adds to its day's rollup row.
type contribution struct {
	day                  time.Time // the UTC midnight
	user, model          string
	calls, cost, in, out int64
}

func contributionOf(r store.Record) contribution {
	return contribution{DayOf(r.CreatedAt), r.UserID, r.Model, 1, int64(r.Cost), r.InputTokens, r.OutputTokens}
}

func (c contribution) neg() contribution {
	c.calls, c.cost, c.in, c.out = -c.calls, -c.cost, -c.in, -c.out
	return c
}

// upsertDaily adds a contribution to its row, unless a sum would leave the
// int64 range ($8..$13 are the ranges the row's cost and tokens must be in
// for that not to happen): then no row changes.
const upsertDaily = `INSERT INTO usage_daily (day, user_id, model, calls, cost, input_tokens, output_tokens)
	VALUES ($1, $2, $3, $4, $5, $6, $7)
	ON CONFLICT (day, user_id, model) DO UPDATE SET
		calls = usage_daily.calls + excluded.calls,
		cost = usage_daily.cost + excluded.cost,
		input_tokens = usage_daily.input_tokens + excluded.input_tokens,
		output_tokens = usage_daily.output_tokens + excluded.output_tokens
	WHERE usage_daily.cost BETWEEN $8 AND $9 AND usage_daily.input_tokens BETWEEN $10 AND $11
		AND usage_daily.output_tokens BETWEEN $12 AND $13`

// addDaily adds c to its rollup row (one upsert); store.ErrOutOfRange when
// a sum of the row would leave the int64 range.
func addDaily(ctx context.Context, d Dialect, q Querier, c contribution) error {
	costLo, costHi := store.AddRange(c.cost)
	inLo, inHi := store.AddRange(c.in)
	outLo, outHi := store.AddRange(c.out)
	n, err := q.Exec(ctx, upsertDaily, d.Day(c.day), c.user, c.model, c.calls, c.cost, c.in, c.out,
		costLo, costHi, inLo, inHi, outLo, outHi)
	if err == nil && n == 0 {
		err = fmt.Errorf("the day's usage of %s with %s would not fit in an int64: %w", c.user, c.model, store.ErrOutOfRange)
	}
	return err
}

// replaceDaily replaces a final record's contribution old by new: one
// upsert of the difference when both fall on one row, else two.
func replaceDaily(ctx context.Context, d Dialect, q Querier, old, new contribution) error {
	if old.day.Equal(new.day) && old.user == new.user && old.model == new.model {
		new.calls -= old.calls
		new.cost -= old.cost
		new.in -= old.in
		new.out -= old.out
		return addDaily(ctx, d, q, new)
	}
	if err := addDaily(ctx, d, q, old.neg()); err != nil {
		return err
	}
	return addDaily(ctx, d, q, new)
}

// rebuildDaily recomputes every rollup row from usage_records.
func rebuildDaily(d Dialect) string {
	return `INSERT INTO usage_daily (day, user_id, model, calls, cost, input_tokens, output_tokens)
	SELECT ` + d.DayOf("created_at") + `, user_id, model,
		COUNT(*), SUM(cost), SUM(input_tokens), SUM(output_tokens)
	FROM usage_records WHERE status <> 'pending'
	GROUP BY 1, 2, 3`
}
