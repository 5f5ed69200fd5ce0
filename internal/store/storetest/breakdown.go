package storetest

// The breakdowns of usage by purpose and by path (source), with the token
// kinds: UsageBetween and UserUsageBetween must equal sums over the final
// records, whatever happened to them.

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/store"
)

// bruteBreakdown sums the final records of [from, to) (of user when not
// "") by purpose and by source, as UsageBetween's breakdown fields.
func bruteBreakdown(recs []store.Record, user string, from, to time.Time) (store.Usage, store.UsageTotals) {
	var u store.Usage
	var total store.UsageTotals
	purposes, sources := map[string]*store.KindUsage{}, map[string]*store.KindUsage{}
	for _, r := range recs {
		if r.Status == store.StatusPending || (user != "" && r.UserID != user) ||
			(!from.IsZero() && r.CreatedAt.Before(from)) || (!to.IsZero() && !r.CreatedAt.Before(to)) {
			continue
		}
		t := store.UsageTotals{Cost: r.Cost, Calls: 1, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens}
		total.Add(t)
		u.CachedTokens += r.CachedTokens
		u.ReasoningTokens += r.ReasoningTokens
		for _, m := range []struct {
			m   map[string]*store.KindUsage
			key string
		}{{purposes, r.Purpose}, {sources, r.Source}} {
			if m.m[m.key] == nil {
				m.m[m.key] = &store.KindUsage{Key: m.key}
			}
			k := m.m[m.key]
			k.Add(t)
			k.CachedTokens += r.CachedTokens
			k.ReasoningTokens += r.ReasoningTokens
		}
	}
	list := func(m map[string]*store.KindUsage) []store.KindUsage {
		l := []store.KindUsage{}
		for _, k := range m {
			l = append(l, *k)
		}
		slices.SortFunc(l, func(a, b store.KindUsage) int {
			return cmp.Or(cmp.Compare(b.Cost, a.Cost), cmp.Compare(b.Calls, a.Calls), strings.Compare(a.Key, b.Key))
		})
		return l
	}
	u.ByPurpose, u.BySource = list(purposes), list(sources)
	return u, total
}

// bruteDays sums one user's final records in [from, to) by UTC day (the
// days with usage, in order) and by model (most cost first).
func bruteDays(recs []store.Record, user string, from, to time.Time) ([]store.DayUsage, []store.ModelUsage) {
	days, models := map[time.Time]*store.UsageTotals{}, map[string]*store.UsageTotals{}
	for _, r := range recs {
		if r.Status == store.StatusPending || r.UserID != user ||
			(!from.IsZero() && r.CreatedAt.Before(from)) || (!to.IsZero() && !r.CreatedAt.Before(to)) {
			continue
		}
		t := store.UsageTotals{Cost: r.Cost, Calls: 1, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens}
		c := r.CreatedAt.UTC()
		day := time.Date(c.Year(), c.Month(), c.Day(), 0, 0, 0, 0, time.UTC)
		if days[day] == nil {
			days[day] = &store.UsageTotals{}
		}
		days[day].Add(t)
		if models[r.Model] == nil {
			models[r.Model] = &store.UsageTotals{}
		}
		models[r.Model].Add(t)
	}
	byDay, byModel := []store.DayUsage{}, []store.ModelUsage{}
	for d, t := range days {
		byDay = append(byDay, store.DayUsage{Day: d, UsageTotals: *t})
	}
	slices.SortFunc(byDay, func(a, b store.DayUsage) int { return a.Day.Compare(b.Day) })
	for m, t := range models {
		byModel = append(byModel, store.ModelUsage{Model: m, UsageTotals: *t})
	}
	slices.SortFunc(byModel, func(a, b store.ModelUsage) int {
		return cmp.Or(cmp.Compare(b.Cost, a.Cost), cmp.Compare(b.Calls, a.Calls), strings.Compare(a.Model, b.Model))
	})
	return byDay, byModel
}

// breakdownOf is the breakdown fields of a Usage, empty lists as nil.
func breakdownOf(u store.Usage) store.Usage {
	b := store.Usage{ByPurpose: u.ByPurpose, BySource: u.BySource, CachedTokens: u.CachedTokens,
		ReasoningTokens: u.ReasoningTokens}
	if len(b.ByPurpose) == 0 {
		b.ByPurpose = nil
	}
	if len(b.BySource) == 0 {
		b.BySource = nil
	}
	return b
}

func testUsageBreakdown(t *testing.T, s store.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(13, 17))
	day0 := time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)
	const nUsers, nDays = 4, 4
	userID := func(i int) string { return fmt.Sprintf("bu%d", i) }
	for i := range nUsers {
		if _, err := s.UpsertUser(ctx, store.UserInfo{ID: userID(i), Name: fmt.Sprintf("B%d", i)}, units(1000)); err != nil {
			t.Fatal(err)
		}
	}
	purposes := []string{"chat", "title", "tags", "follow_ups", "embeddings", ""}
	sources := []string{store.SourceFunction, store.SourceEdge, store.SourceWebsocket, store.SourceProvider}
	randUser := func() string { return userID(rng.IntN(nUsers)) }
	randPurpose := func() string { return purposes[rng.IntN(len(purposes))] }
	randSource := func() string { return sources[rng.IntN(len(sources))] }
	randTime := func() time.Time { return day0.Add(time.Duration(rng.Int64N(int64(nDays * 24 * time.Hour)))) }
	tokens := func() (in, out, cached, reasoning int64) {
		in, out = rng.Int64N(1000), rng.Int64N(1000)
		return in, out, rng.Int64N(in + 1), rng.Int64N(out + 1)
	}
	ranges := [][2]time.Time{
		{},
		{day0.Add(24 * time.Hour), day0.Add(3 * 24 * time.Hour)},
		{day0.Add(5*time.Hour + 1), day0.Add(2*24*time.Hour + 7*time.Hour)},
		{{}, day0.Add(2*24*time.Hour + time.Millisecond)},
		{day0.Add(24*time.Hour + time.Hour), day0.Add(24*time.Hour + 20*time.Hour)},
		{day0.Add(3*24*time.Hour + time.Millisecond), {}},
	}
	check := func(step int, what string) {
		t.Helper()
		recs := eachRecord(t, s, store.RecordQuery{})
		for _, rg := range ranges {
			got, err := s.UsageBetween(ctx, rg[0], rg[1])
			if err != nil {
				t.Fatalf("step %d (%s): UsageBetween %v: %v", step, what, rg, err)
			}
			want, total := bruteBreakdown(recs, "", rg[0], rg[1])
			if g, w := breakdownOf(got), breakdownOf(want); !reflect.DeepEqual(g, w) {
				t.Fatalf("step %d (%s): UsageBetween %v..%v breakdown:\ngot  %+v\nwant %+v", step, what, rg[0], rg[1], g, w)
			}
			if got.Total != total {
				t.Fatalf("step %d (%s): UsageBetween %v..%v total %+v, want %+v", step, what, rg[0], rg[1], got.Total, total)
			}
			for i := range nUsers {
				id := userID(i)
				got, err := s.UserUsageBetween(ctx, id, rg[0], rg[1])
				if err != nil {
					t.Fatalf("step %d (%s): UserUsageBetween %s %v: %v", step, what, id, rg, err)
				}
				want, total := bruteBreakdown(recs, id, rg[0], rg[1])
				if g, w := breakdownOf(got), breakdownOf(want); !reflect.DeepEqual(g, w) || got.Total != total {
					t.Fatalf("step %d (%s): UserUsageBetween %s %v..%v:\ngot  %+v %+v\nwant %+v %+v", step, what, id,
						rg[0], rg[1], g, got.Total, w, total)
				}
				days, models := bruteDays(recs, id, rg[0], rg[1])
				if !reflect.DeepEqual(got.ByDay, days) || !reflect.DeepEqual(got.ByModel, models) || got.Models != int64(len(models)) {
					t.Fatalf("step %d (%s): UserUsageBetween %s %v..%v by day and model:\ngot  %+v\n     %+v\nwant %+v\n     %+v",
						step, what, id, rg[0], rg[1], got.ByDay, got.ByModel, days, models)
				}
			}
		}
	}
	var pending, expired []string // keys
	keys := 0
	newKey := func() string { keys++; return fmt.Sprintf("bk%d", keys) }
	take := func(ks *[]string) string {
		i := rng.IntN(len(*ks))
		k := (*ks)[i]
		*ks = slices.Delete(*ks, i, i+1)
		return k
	}
	imported := false
	for step := range 140 {
		var what string
		var err error
		switch op := rng.IntN(20); {
		case op < 6: // a new final record: completed, failed or expired
			what = "charge"
			status := []string{"", "", store.StatusFailed, store.StatusExpired}[rng.IntN(4)]
			key := ""
			if rng.IntN(2) == 0 {
				key = newKey()
			}
			in, out, cached, reasoning := tokens()
			_, err = s.Charge(ctx, store.Record{UserID: randUser(), Model: "bm", Key: key, CreatedAt: randTime(),
				Cost: units(rng.Int64N(5)), InputTokens: in, OutputTokens: out, CachedTokens: cached,
				ReasoningTokens: reasoning, Status: status, Purpose: randPurpose(), Source: randSource()})
		case op < 11: // a hold (not usage until final)
			what = "reserve"
			key := newKey()
			var res store.ReserveResult
			res, err = s.Reserve(ctx, store.Reservation{Rule: store.ReserveAlways, Record: store.Record{
				UserID: randUser(), Model: "bm", Key: key, CreatedAt: randTime(), Cost: units(rng.Int64N(5)),
				InputTokens: rng.Int64N(100), Purpose: randPurpose(), Source: randSource()}})
			if err == nil && res.Placed {
				pending = append(pending, key)
			}
		case op < 14 && len(pending) > 0: // a hold completed (netted), maybe as another purpose or path
			what = "complete"
			purpose, source := "", ""
			if rng.IntN(2) == 0 {
				purpose, source = randPurpose(), randSource()
			}
			status := []string{"", "", store.StatusFailed}[rng.IntN(3)]
			in, out, cached, reasoning := tokens()
			_, err = s.Charge(ctx, store.Record{Key: take(&pending), Cost: units(rng.Int64N(5)), InputTokens: in,
				OutputTokens: out, CachedTokens: cached, ReasoningTokens: reasoning, Purpose: purpose, Source: source,
				Status: status})
		case op < 16 && len(pending) > 0: // a hold expired
			what = "expire"
			k := take(&pending)
			var res store.ChargeResult
			if res, err = s.Charge(ctx, store.Record{Key: k, Status: store.StatusExpired}); err == nil {
				if res.Record.Status != store.StatusExpired {
					t.Fatalf("expire %s: %+v", k, res.Record)
				}
				expired = append(expired, k)
			}
		case op < 18 && len(expired) > 0: // the late report of an expired hold, maybe by another path
			what = "late charge"
			purpose, source := "", ""
			if rng.IntN(2) == 0 {
				purpose, source = randPurpose(), randSource()
			}
			in, out, cached, reasoning := tokens()
			_, err = s.Charge(ctx, store.Record{Key: take(&expired), Cost: units(rng.Int64N(5)), InputTokens: in,
				OutputTokens: out, CachedTokens: cached, ReasoningTokens: reasoning, Purpose: purpose, Source: source})
		case op == 18: // a user deleted (and back, with nothing)
			what = "delete user"
			id := randUser()
			if err = s.DeleteUser(ctx, id); err == nil {
				_, err = s.UpsertUser(ctx, store.UserInfo{ID: id, Name: "again " + id}, units(1000))
			}
			pending, expired = nil, nil
		case op == 19 && !imported || step == 120: // an import of the export, less some records
			what = "import"
			imported = true
			var b store.Backup
			if b, err = s.Export(ctx); err == nil {
				b.Records = slices.DeleteFunc(b.Records, func(store.Record) bool { return rng.IntN(4) == 0 })
				err = s.Import(ctx, b, nil)
			}
			pending, expired = nil, nil
			for _, r := range b.Records {
				switch r.Status {
				case store.StatusPending:
					pending = append(pending, r.Key)
				case store.StatusExpired:
					if r.Key != "" {
						expired = append(expired, r.Key)
					}
				}
			}
		default:
			continue
		}
		if err != nil {
			t.Fatalf("step %d (%s): %v", step, what, err)
		}
		check(step, what)
	}
	// Something of every kind happened.
	u, err := s.UsageBetween(ctx, time.Time{}, time.Time{})
	if err != nil || len(u.ByPurpose) < 3 || len(u.BySource) < 3 || u.CachedTokens == 0 || u.ReasoningTokens == 0 {
		t.Fatalf("UsageBetween at the end: %+v, %v", breakdownOf(u), err)
	}
}
