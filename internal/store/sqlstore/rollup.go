package sqlstore

// The daily rollups (table usage_daily, see migrations/*/00002): the final
// (not pending) records summed by UTC day, user and model. Every change of
// a record's final contribution updates them in the same transaction, so
// UsageBetween reads whole days from them and only the partial days at the
// edges of a range from usage_records.

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
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

// contribution is what one record adds to its day's rollup rows.
type contribution struct {
	day                  time.Time // the UTC midnight
	minute               time.Time // the UTC minute, for usage_minute
	user, model          string
	purpose, source      string
	calls, cost, in, out int64
	cached, reasoning    int64
}

func contributionOf(r store.Record) contribution {
	return contribution{DayOf(r.CreatedAt), r.CreatedAt.UTC().Truncate(time.Minute), r.UserID, r.Model, r.Purpose,
		r.Source, 1, int64(r.Cost), r.InputTokens, r.OutputTokens, r.CachedTokens, r.ReasoningTokens}
}

func (c contribution) neg() contribution {
	c.calls, c.cost, c.in, c.out = -c.calls, -c.cost, -c.in, -c.out
	c.cached, c.reasoning = -c.cached, -c.reasoning
	return c
}

// minus is c less o, on c's rows.
func (c contribution) minus(o contribution) contribution {
	c.calls, c.cost, c.in, c.out = c.calls-o.calls, c.cost-o.cost, c.in-o.in, c.out-o.out
	c.cached, c.reasoning = c.cached-o.cached, c.reasoning-o.reasoning
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

// addDaily adds c to its rollup rows: usage_daily's (store.ErrOutOfRange
// when a sum of that row would leave the int64 range) and the breakdowns'.
func addDaily(ctx context.Context, d Dialect, q Querier, c contribution) error {
	if d.Name == "postgres" {
		return addAllRollups(ctx, d, q, c)
	}
	if err := addModelDay(ctx, d, q, c); err != nil {
		return err
	}
	if err := addBreakdown(ctx, d, q, c); err != nil {
		return err
	}
	return addMinute(ctx, d, q, c)
}

// upsertAllRollups is addDaily's four upserts in one PostgreSQL statement
// (one round trip for every charge): upsertDaily's $1..$13, then the
// purpose, source, cached and reasoning tokens as $14..$17, and the minute
// as $18. It returns the
// usage_daily rows changed: none means a sum would leave the int64 range,
// and the caller's transaction, breakdowns included, is undone.
var upsertAllRollups = `WITH daily AS (` + upsertDaily + ` RETURNING 1),
	per_user AS (` + upsertBreakdown("usage_breakdown", []string{"user_id", "day", "purpose", "source"},
	`VALUES ($2, $1, $14, $15, $4, $5, $6, $7, $16, $17)`) + `),
	summed AS (` + upsertBreakdown("usage_breakdown_all", []string{"day", "shard", "purpose", "source"},
	`VALUES ($1, `+connectionShard+`, $14, $15, $4, $5, $6, $7, $16, $17)`) + `),
	minute AS (` + upsertMinuteFrom(`VALUES ($2, $18, $3, $4, $5, $6, $7)`) + `)
	SELECT COUNT(*) FROM daily`

// addAllRollups adds c to its three rollup rows in one statement.
func addAllRollups(ctx context.Context, d Dialect, q Querier, c contribution) error {
	costLo, costHi := store.AddRange(c.cost)
	inLo, inHi := store.AddRange(c.in)
	outLo, outHi := store.AddRange(c.out)
	var n int64
	err := q.QueryRow(ctx, upsertAllRollups, d.Day(c.day), c.user, c.model, c.calls, c.cost, c.in, c.out,
		costLo, costHi, inLo, inHi, outLo, outHi, c.purpose, c.source, c.cached, c.reasoning, d.Time(c.minute)).Scan(&n)
	if err == nil && n == 0 {
		err = fmt.Errorf("the day's usage of %s with %s would not fit in an int64: %w", c.user, c.model, store.ErrOutOfRange)
	}
	return err
}

// addModelDay adds c to its usage_daily row (one upsert).
func addModelDay(ctx context.Context, d Dialect, q Querier, c contribution) error {
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
	var err error
	if old.day.Equal(new.day) && old.user == new.user && old.model == new.model {
		err = addModelDay(ctx, d, q, new.minus(old))
	} else if err = addModelDay(ctx, d, q, old.neg()); err == nil {
		err = addModelDay(ctx, d, q, new)
	}
	if err != nil {
		return err
	}
	// The breakdowns: the same, on their rows (shards follow the user).
	if old.day.Equal(new.day) && old.user == new.user && old.purpose == new.purpose && old.source == new.source {
		err = addBreakdown(ctx, d, q, new.minus(old))
	} else if err = addBreakdown(ctx, d, q, old.neg()); err == nil {
		err = addBreakdown(ctx, d, q, new)
	}
	if err != nil {
		return err
	}
	// And the minutes.
	if old.minute.Equal(new.minute) && old.user == new.user && old.model == new.model {
		return addMinute(ctx, d, q, new.minus(old))
	}
	if err := addMinute(ctx, d, q, old.neg()); err != nil {
		return err
	}
	return addMinute(ctx, d, q, new)
}

// ---- The minute rollup (migrations/*/00007) ----

// minuteSums are usage_minute's summed columns.
var minuteSums = []string{"calls", "cost", "input_tokens", "output_tokens"}

// upsertMinuteFrom adds rows (user_id, minute, model, then minuteSums)
// from a VALUES or SELECT to usage_minute, saturating.
func upsertMinuteFrom(src string) string {
	sets := make([]string, len(minuteSums))
	for i, c := range minuteSums {
		sets[i] = satAdd("usage_minute", c)
	}
	return `INSERT INTO usage_minute (user_id, minute, model, ` + strings.Join(minuteSums, ", ") + `) ` + src + `
	ON CONFLICT (user_id, minute, model) DO UPDATE SET ` + strings.Join(sets, ", ")
}

var upsertMinute = upsertMinuteFrom(`VALUES ($1, $2, $3, $4, $5, $6, $7)`)

// addMinute adds c to its usage_minute row (saturating, never refusing).
func addMinute(ctx context.Context, d Dialect, q Querier, c contribution) error {
	_, err := q.Exec(ctx, upsertMinute, c.user, d.Time(c.minute), c.model, c.calls, c.cost, c.in, c.out)
	return err
}

// minuteOf is SQL for the UTC minute of a time column, as usage_minute
// stores it.
func (d Dialect) minuteOf(col string) string {
	if d.Name == "postgres" {
		return `date_trunc('minute', ` + col + `)`
	}
	return col + ` - (((` + col + ` % 60000) + 60000) % 60000)`
}

// rebuildMinute recomputes usage_minute from usage_records (after an import).
func rebuildMinute(d Dialect) string {
	return upsertMinuteFrom(`SELECT user_id, ` + d.minuteOf("created_at") + `, model,
		COUNT(*), SUM(cost), SUM(input_tokens), SUM(output_tokens)
	FROM usage_records WHERE status <> 'pending'
	GROUP BY 1, 2, 3`)
}

// rebuildDaily recomputes every rollup row from usage_records.
func rebuildDaily(d Dialect) string {
	return `INSERT INTO usage_daily (day, user_id, model, calls, cost, input_tokens, output_tokens)
	SELECT ` + d.DayOf("created_at") + `, user_id, model,
		COUNT(*), SUM(cost), SUM(input_tokens), SUM(output_tokens)
	FROM usage_records WHERE status <> 'pending'
	GROUP BY 1, 2, 3`
}

// ---- The breakdown rollups (migrations/*/00006) ----
//
// usage_breakdown sums the final records by UTC day, user, purpose and
// source, with every token kind; usage_breakdown_all sums the same over
// users, in shards on PostgreSQL (live charges add to their connection's,
// connectionShard; deletions and imports to breakdownShards shards chosen
// by the user id), so concurrent charges seldom wait for one row, which is
// locked until the commit; on SQLite in one. The overview reads at most
// days × purposes × paths × shards rows and sums the shards. Rows saturate
// at the ends of the int64 range instead of refusing a charge: only
// usage_daily's rule refuses one. The migration's backfill puts every row
// in shard 0.

const breakdownShards = 8

// connectionShard is the shard a live charge on PostgreSQL adds to: its
// connection's. Shards by user put the charges of a busy deployment on a
// few hot rows (with 100 users and 8 shards, BenchmarkOutlet's p99 at 64
// clients went from 97 to 128 ms); a connection runs one transaction at a
// time, so by connection two charges wait for one row only when their
// backends' pids collide. The rows a day gets are bounded by the modulus
// and in practice by the pool's size. Any shard is right for any charge:
// the overview sums them all.
const connectionShard = `(pg_backend_pid() % 64)`

// shardOf is the usage_breakdown_all shard of a user's charges: always 0
// on SQLite, whose single writer never has two charges wait for a row.
func shardOf(d Dialect, user string) int64 {
	if d.Name != "postgres" {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(user))
	return int64(h.Sum32() % breakdownShards)
}

// breakdownSums are the summed columns of both breakdown tables.
var breakdownSums = []string{"calls", "cost", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"}

const (
	maxInt = `9223372036854775807`
	minInt = `(-9223372036854775807 - 1)`
)

// satAdd is SQL setting col to table.col + excluded.col, saturated at the
// ends of the int64 range (each branch only runs where it cannot overflow).
func satAdd(table, col string) string {
	a, e := table+"."+col, "excluded."+col
	return col + ` = CASE WHEN ` + e + ` > 0 THEN (CASE WHEN ` + a + ` > ` + maxInt + ` - ` + e + ` THEN ` + maxInt +
		` ELSE ` + a + ` + ` + e + ` END) WHEN ` + e + ` < 0 THEN (CASE WHEN ` + a + ` < ` + minInt + ` - ` + e +
		` THEN ` + minInt + ` ELSE ` + a + ` + ` + e + ` END) ELSE ` + a + ` END`
}

// upsertBreakdown is an upsert into one breakdown table whose keys are
// keys, the sums following them ($1.. in that order), or from a SELECT.
func upsertBreakdown(table string, keys []string, selectSQL string) string {
	cols := append(append([]string{}, keys...), breakdownSums...)
	var sets []string
	for _, c := range breakdownSums {
		sets = append(sets, satAdd(table, c))
	}
	src := selectSQL
	if src == "" {
		ps := make([]string, len(cols))
		for i := range cols {
			ps[i] = "$" + strconv.Itoa(i+1)
		}
		src = `VALUES (` + strings.Join(ps, ", ") + `)`
	}
	return `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) ` + src + `
	ON CONFLICT (` + strings.Join(keys, ", ") + `) DO UPDATE SET ` + strings.Join(sets, ", ")
}

var (
	upsertUserBreakdown = upsertBreakdown("usage_breakdown", []string{"user_id", "day", "purpose", "source"}, "")
	upsertAllBreakdown  = upsertBreakdown("usage_breakdown_all", []string{"day", "shard", "purpose", "source"}, "")
	// upsertBothBreakdowns is both in one PostgreSQL statement (one round
	// trip), with upsertUserBreakdown's parameters. Its summed row is the
	// connection's shard (connectionShard): charges in flight run on
	// different connections, so they seldom wait for one row, which stays
	// locked until their commit.
	upsertBothBreakdowns = `WITH u AS (` + upsertUserBreakdown + `)
	` + upsertBreakdown("usage_breakdown_all", []string{"day", "shard", "purpose", "source"},
		`VALUES ($2, `+connectionShard+`, $3, $4, $5, $6, $7, $8, $9, $10)`)
)

// addBreakdown adds c to its two breakdown rows (saturating, never
// refusing).
func addBreakdown(ctx context.Context, d Dialect, q Querier, c contribution) error {
	if d.Name == "postgres" { // data-modifying WITH: SQLite has none
		_, err := q.Exec(ctx, upsertBothBreakdowns, c.user, d.Day(c.day), c.purpose, c.source,
			c.calls, c.cost, c.in, c.out, c.cached, c.reasoning)
		return err
	}
	if _, err := q.Exec(ctx, upsertUserBreakdown, c.user, d.Day(c.day), c.purpose, c.source,
		c.calls, c.cost, c.in, c.out, c.cached, c.reasoning); err != nil {
		return err
	}
	_, err := q.Exec(ctx, upsertAllBreakdown, d.Day(c.day), shardOf(d, c.user), c.purpose, c.source,
		c.calls, c.cost, c.in, c.out, c.cached, c.reasoning)
	return err
}

// negCol is SQL for -col, saturated.
func negCol(col string) string {
	return `CASE WHEN ` + col + ` = ` + minInt + ` THEN ` + maxInt + ` ELSE -` + col + ` END`
}

// forgetBreakdown takes a user's rows out of usage_breakdown_all (into the
// user's shard) and deletes them from usage_breakdown, as DeleteUser
// deletes the user's records.
func forgetBreakdown(ctx context.Context, d Dialect, q Querier, user string) error {
	negs := make([]string, len(breakdownSums))
	for i, c := range breakdownSums {
		negs[i] = negCol(c)
	}
	sub := upsertBreakdown("usage_breakdown_all", []string{"day", "shard", "purpose", "source"},
		`SELECT day, $2, purpose, source, `+strings.Join(negs, ", ")+` FROM usage_breakdown WHERE user_id = $1`)
	if _, err := q.Exec(ctx, sub, user, shardOf(d, user)); err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `DELETE FROM usage_minute WHERE user_id = $1`, user); err != nil {
		return err
	}
	_, err := q.Exec(ctx, `DELETE FROM usage_breakdown WHERE user_id = $1`, user)
	return err
}

// loadBreakdown fills the (emptied) breakdown tables from the records of a
// backup, summed here, saturating, in the shards live charges use (Import).
func loadBreakdown(ctx context.Context, d Dialect, load Load, records []store.Record) error {
	type key struct {
		user            string
		day             int64
		purpose, source string
	}
	type sums [6]int64
	users, all := map[key]*sums{}, map[key]*sums{}
	add := func(m map[key]*sums, k key, c contribution) {
		s := m[k]
		if s == nil {
			s = &sums{}
			m[k] = s
		}
		for i, v := range [6]int64{c.calls, c.cost, c.in, c.out, c.cached, c.reasoning} {
			s[i] = store.SatAdd(s[i], v)
		}
	}
	for _, r := range records {
		if r.Status == store.StatusPending {
			continue
		}
		c := contributionOf(r)
		k := key{r.UserID, c.day.UnixMilli(), c.purpose, c.source}
		add(users, k, c)
		k.user = strconv.FormatInt(shardOf(d, r.UserID), 10) // the shard, as live charges
		add(all, k, c)
	}
	for _, t := range []struct {
		name string
		m    map[key]*sums
		lead func(k key) []any
		cols []string
	}{
		{"usage_breakdown", users, func(k key) []any {
			return []any{k.user, d.Day(time.UnixMilli(k.day).UTC()), k.purpose, k.source}
		}, []string{"user_id", "day", "purpose", "source"}},
		{"usage_breakdown_all", all, func(k key) []any {
			shard, _ := strconv.ParseInt(k.user, 10, 64)
			return []any{d.Day(time.UnixMilli(k.day).UTC()), shard, k.purpose, k.source}
		}, []string{"day", "shard", "purpose", "source"}},
	} {
		if len(t.m) == 0 {
			continue
		}
		keys := make([]key, 0, len(t.m))
		for k := range t.m {
			keys = append(keys, k)
		}
		err := load(ctx, t.name, append(append([]string{}, t.cols...), breakdownSums...), len(keys), func(i int) []any {
			s := t.m[keys[i]]
			return append(t.lead(keys[i]), s[0], s[1], s[2], s[3], s[4], s[5])
		})
		if err != nil {
			return fmt.Errorf("%s: %w", strings.ReplaceAll(t.name, "_", " "), err)
		}
	}
	return nil
}

// splitRange splits [from, to) (zero times: unbounded) for reading the
// usage of one user (all users: "") from a daily rollup and the records:
// roll selects the rollup's whole UTC days (wholeDays false: there are
// none), edges the final records of the partial days at the edges (no
// conditions: there are none).
func splitRange(d Dialect, user string, from, to time.Time) (roll, edges Where, wholeDays bool) {
	if user != "" {
		roll.Add("user_id = " + roll.Arg(user))
		edges.Add("user_id = " + edges.Arg(user))
	}
	dayCast := ""
	if d.Name == "postgres" { // day is a DATE
		dayCast = "::date"
	}
	a, b, wholeDays := WholeDays(from, to)
	if wholeDays {
		if !from.IsZero() {
			roll.Add("day >= " + roll.Arg(d.Day(a)) + dayCast)
		}
		if !to.IsZero() {
			roll.Add("day < " + roll.Arg(d.Day(b)) + dayCast)
		}
		if !edges.Edges(d, "created_at", from, a, b, to) {
			return roll, Where{}, true
		}
	} else {
		edges.Between(d, "created_at", from, to)
	}
	edges.Add("status <> 'pending'")
	return roll, edges, wholeDays
}

// ReadUserDays sets u's ByDay (the UTC days with usage, in order) and
// ByModel (most cost first) from one user's final records created in
// [from, to) (zero times: unbounded), in q's snapshot: whole UTC days from
// usage_daily (by usage_daily_user_day_idx), the partial days at the edges
// from the records.
func ReadUserDays(ctx context.Context, d Dialect, q Querier, user string, from, to time.Time, u *store.Usage) error {
	type key struct {
		day   time.Time
		model string
	}
	groups := map[key]*store.UsageTotals{}
	read := func(query string, args []any, scan func(Rows) (key, store.UsageTotals, error)) error {
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			k, t, err := scan(rows)
			if err != nil {
				return err
			}
			if groups[k] == nil {
				groups[k] = &store.UsageTotals{}
			}
			groups[k].Add(t)
		}
		return rows.Err()
	}
	roll, edges, wholeDays := splitRange(d, user, from, to)
	if wholeDays {
		sums := d.Sum("calls") + ", " + d.Sum("cost") + ", " + d.Sum("input_tokens") + ", " + d.Sum("output_tokens")
		err := read(`SELECT day, model, `+sums+` FROM usage_daily`+roll.String()+` GROUP BY day, model`, roll.Args,
			func(row Rows) (key, store.UsageTotals, error) {
				var k key
				var s [4]Sum
				dest := []any{(*Time)(&k.day), &k.model}
				for i := range s {
					dest = append(dest, d.Dest(&s[i])...)
				}
				err := row.Scan(dest...)
				return k, store.UsageTotals{Calls: s[0].Value(), Cost: money.Amount(s[1].Value()),
					InputTokens: s[2].Value(), OutputTokens: s[3].Value()}, err
			})
		if err != nil {
			return err
		}
	}
	if len(edges.Conds) > 0 {
		err := read(`SELECT created_at, model, cost, input_tokens, output_tokens FROM usage_records`+edges.String(), edges.Args,
			func(row Rows) (key, store.UsageTotals, error) {
				var created time.Time
				var k key
				t := store.UsageTotals{Calls: 1}
				err := row.Scan((*Time)(&created), &k.model, (*int64)(&t.Cost), &t.InputTokens, &t.OutputTokens)
				k.day = DayOf(created)
				return k, t, err
			})
		if err != nil {
			return err
		}
	}
	days, models := map[time.Time]*store.UsageTotals{}, map[string]*store.UsageTotals{}
	for k, t := range groups {
		if t.Calls == 0 { // rows emptied by replacements and deletions
			continue
		}
		if days[k.day] == nil {
			days[k.day] = &store.UsageTotals{}
		}
		days[k.day].Add(*t)
		if models[k.model] == nil {
			models[k.model] = &store.UsageTotals{}
		}
		models[k.model].Add(*t)
	}
	u.ByDay, u.ByModel = []store.DayUsage{}, []store.ModelUsage{}
	for day, t := range days {
		u.ByDay = append(u.ByDay, store.DayUsage{Day: day, UsageTotals: *t})
	}
	slices.SortFunc(u.ByDay, func(a, b store.DayUsage) int { return a.Day.Compare(b.Day) })
	for m, t := range models {
		u.ByModel = append(u.ByModel, store.ModelUsage{Model: m, UsageTotals: *t})
	}
	slices.SortFunc(u.ByModel, func(a, b store.ModelUsage) int {
		return cmp.Or(cmp.Compare(b.Cost, a.Cost), cmp.Compare(b.Calls, a.Calls), strings.Compare(a.Model, b.Model))
	})
	u.Models = int64(len(u.ByModel))
	return nil
}

// ReadBreakdown sets u's ByPurpose, BySource, CachedTokens and
// ReasoningTokens from the final records created in [from, to) (zero
// times: unbounded), of one user when user is not "", in q's snapshot:
// whole UTC days from the breakdown rollups (user: usage_breakdown, else
// usage_breakdown_all), the partial days at the edges from the records.
// It returns the total of the breakdown (equal to usage_daily's).
func ReadBreakdown(ctx context.Context, d Dialect, q Querier, user string, from, to time.Time, u *store.Usage) (store.UsageTotals, error) {
	type key struct{ purpose, source string }
	groups := map[key]*store.KindUsage{}
	var sumCols []string
	for _, c := range breakdownSums[1:] {
		sumCols = append(sumCols, d.Sum(c))
	}
	scan := func(calls string, from string, w Where) error {
		rows, err := q.Query(ctx, `SELECT purpose, source, `+calls+`, `+strings.Join(sumCols, ", ")+` FROM `+from+
			w.String()+` GROUP BY purpose, source`, w.Args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				k     key
				calls Sum
				s     [5]Sum
			)
			dest := append([]any{&k.purpose, &k.source}, d.Dest(&calls)...)
			for i := range s {
				dest = append(dest, d.Dest(&s[i])...)
			}
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			g := groups[k]
			if g == nil {
				g = &store.KindUsage{}
				groups[k] = g
			}
			g.Add(store.UsageTotals{Calls: calls.Value(), Cost: money.Amount(s[0].Value()),
				InputTokens: s[1].Value(), OutputTokens: s[2].Value()})
			g.CachedTokens = store.SatAdd(g.CachedTokens, s[3].Value())
			g.ReasoningTokens = store.SatAdd(g.ReasoningTokens, s[4].Value())
		}
		return rows.Err()
	}
	table := "usage_breakdown_all"
	if user != "" {
		table = "usage_breakdown"
	}
	roll, edges, wholeDays := splitRange(d, user, from, to)
	if wholeDays {
		if err := scan(d.Sum("calls"), table, roll); err != nil {
			return store.UsageTotals{}, err
		}
	}
	if len(edges.Conds) > 0 {
		// COUNT(*) as a Sum: both halves for SplitSums.
		count := "COUNT(*)"
		if d.SplitSums {
			count = "0, COUNT(*)"
		}
		if err := scan(count, "usage_records", edges); err != nil {
			return store.UsageTotals{}, err
		}
	}

	var total store.UsageTotals
	purposes, sources := map[string]*store.KindUsage{}, map[string]*store.KindUsage{}
	for k, g := range groups {
		if g.Calls == 0 { // rows emptied by replacements and deletions
			continue
		}
		total.Add(g.UsageTotals)
		u.CachedTokens = store.SatAdd(u.CachedTokens, g.CachedTokens)
		u.ReasoningTokens = store.SatAdd(u.ReasoningTokens, g.ReasoningTokens)
		for _, m := range []struct {
			m   map[string]*store.KindUsage
			key string
		}{{purposes, k.purpose}, {sources, k.source}} {
			x := m.m[m.key]
			if x == nil {
				x = &store.KindUsage{Key: m.key}
				m.m[m.key] = x
			}
			x.Add(g.UsageTotals)
			x.CachedTokens = store.SatAdd(x.CachedTokens, g.CachedTokens)
			x.ReasoningTokens = store.SatAdd(x.ReasoningTokens, g.ReasoningTokens)
		}
	}
	list := func(m map[string]*store.KindUsage) []store.KindUsage {
		l := make([]store.KindUsage, 0, len(m))
		for _, x := range m {
			l = append(l, *x)
		}
		slices.SortFunc(l, func(a, b store.KindUsage) int {
			return cmp.Or(cmp.Compare(b.Cost, a.Cost), cmp.Compare(b.Calls, a.Calls), strings.Compare(a.Key, b.Key))
		})
		return l
	}
	u.ByPurpose, u.BySource = list(purposes), list(sources)
	return total, nil
}

// UserUsageBetween summarises one user's final records in [from, to) from
// the breakdown and daily rollups (and the records of partial days), in
// one snapshot.
func (s Store) UserUsageBetween(ctx context.Context, userID string, from, to time.Time) (store.Usage, error) {
	u := store.Usage{ByModel: []store.ModelUsage{}, ByUser: []store.UserUsage{}, ByDay: []store.DayUsage{}}
	err := s.B.Snapshot(ctx, func(q Querier) error {
		var err error
		if u.Total, err = ReadBreakdown(ctx, s.D, q, userID, from, to, &u); err != nil {
			return err
		}
		return ReadUserDays(ctx, s.D, q, userID, from, to, &u)
	})
	if err != nil {
		return store.Usage{}, err
	}
	if u.Total.Calls > 0 {
		u.ActiveUsers = 1
	}
	return u, nil
}
