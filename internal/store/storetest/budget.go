package storetest

// Budgets: the usage a limit counts in its window (whole days from the
// rollup, edges and holds from the records), holds refused at a limit
// (also under concurrency and for a shared pool), grants applied once,
// and the stored limits, grants and groups.

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// chargeAt charges user a final record created at t.
func chargeAt(t *testing.T, s store.Store, user, key, model string, cost money.Amount, in, out int64, at time.Time) {
	t.Helper()
	if _, err := s.Charge(t.Context(), store.Record{UserID: user, Key: key, Model: model, Cost: cost,
		InputTokens: in, OutputTokens: out, CreatedAt: at}); err != nil {
		t.Fatalf("Charge(%s): %v", key, err)
	}
}

func limitUsage(t *testing.T, s store.Store, user string, now time.Time, checks ...store.LimitCheck) []int64 {
	t.Helper()
	used, err := s.LimitUsage(t.Context(), user, checks, now)
	if err != nil {
		t.Fatalf("LimitUsage: %v", err)
	}
	return used
}

// testLimitUsage: usage over windows that span whole UTC days and
// partial ones at both ends, by measure, model pattern and pool, with a
// hold in flight, equals the sum of the records in the window.
func testLimitUsage(t *testing.T, s store.Store) {
	now := time.Date(2026, 3, 10, 15, 30, 0, 0, time.UTC)
	newUser(t, s, "a", units(1000))
	newUser(t, s, "b", units(1000))
	for _, r := range []struct {
		user, model string
		cost        int64
		in, out     int64
		at          time.Duration // before now
	}{
		{"a", "gpt-4o", 1, 10, 20, 100 * time.Hour}, // before every window below
		{"a", "gpt-4o", 2, 1, 2, 70 * time.Hour},    // 3 days back: a whole day of a 4d window
		{"a", "openrouter/gpt-4o-mini", 4, 3, 4, 40 * time.Hour},
		{"a", "llama3", 8, 5, 6, 20 * time.Hour},
		{"a", "gpt-4o", 16, 7, 8, 2 * time.Hour},
		{"b", "gpt-4o", 32, 9, 10, 1 * time.Hour},
	} {
		chargeAt(t, s, r.user, fmt.Sprintf("%s-%d", r.user, r.cost), r.model, units(r.cost), r.in, r.out, now.Add(-r.at))
	}
	// A hold in flight: counts its cost, its held tokens and one message.
	res, err := s.Reserve(t.Context(), store.Reservation{Rule: store.ReserveAlways, HeldTokens: 1000,
		Record: store.Record{UserID: "a", Key: "a-hold", Model: "gpt-4o", Cost: units(64), CreatedAt: now.Add(-time.Minute)}})
	if err != nil || !res.Placed {
		t.Fatalf("Reserve: %+v, %v", res, err)
	}
	from := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, tc := range []struct {
		name  string
		check store.LimitCheck
		want  int64
	}{
		{"cost 4d", store.LimitCheck{Measure: "cost", From: from(96 * time.Hour)}, int64(units(2 + 4 + 8 + 16 + 64))},
		{"cost 5h", store.LimitCheck{Measure: "cost", From: from(5 * time.Hour)}, int64(units(16 + 64))},
		{"tokens 4d", store.LimitCheck{Measure: "tokens", From: from(96 * time.Hour)}, 3 + 7 + 11 + 15 + 1000},
		{"messages 4d", store.LimitCheck{Measure: "messages", From: from(96 * time.Hour)}, 5},
		{"messages all time", store.LimitCheck{Measure: "messages", From: from(1000 * time.Hour)}, 6},
		{"gpt-4o* 4d", store.LimitCheck{Measure: "cost", From: from(96 * time.Hour), Models: []string{"gpt-4o*"}}, int64(units(2 + 16 + 64))},
		{"*gpt-4o* 4d", store.LimitCheck{Measure: "cost", From: from(96 * time.Hour), Models: []string{"*gpt-4o*"}}, int64(units(2 + 4 + 16 + 64))},
		{"two patterns", store.LimitCheck{Measure: "cost", From: from(96 * time.Hour), Models: []string{"llama?", "GPT-4O"}}, int64(units(8))},
		{"pool all 4d", store.LimitCheck{Measure: "cost", From: from(96 * time.Hour), Pool: store.Pool{Kind: "all"}}, int64(units(2 + 4 + 8 + 16 + 32 + 64))},
		{"pool role 4d", store.LimitCheck{Measure: "cost", From: from(96 * time.Hour), Pool: store.Pool{Kind: "role", ID: "user"}}, int64(units(2 + 4 + 8 + 16 + 32 + 64))},
		{"pool role admin", store.LimitCheck{Measure: "cost", From: from(96 * time.Hour), Pool: store.Pool{Kind: "role", ID: "admin"}}, 0},
	} {
		if got := limitUsage(t, s, "a", now, tc.check)[0]; got != tc.want {
			t.Errorf("%s: used %d, want %d", tc.name, got, tc.want)
		}
	}
	// Group pools count the synced members.
	if err := s.SetGroups(t.Context(), []budget.Group{{ID: "g1", Name: "Team", Members: []string{"a", "b"}}, {ID: "g2", Name: "Solo", Members: []string{"b"}}}); err != nil {
		t.Fatal(err)
	}
	used := limitUsage(t, s, "a", now,
		store.LimitCheck{Measure: "cost", From: from(5 * time.Hour), Pool: store.Pool{Kind: "group", ID: "g1"}},
		store.LimitCheck{Measure: "cost", From: from(5 * time.Hour), Pool: store.Pool{Kind: "group", ID: "g2"}},
		store.LimitCheck{Measure: "cost", From: from(5 * time.Hour)})
	if want := []int64{int64(units(16 + 32 + 64)), int64(units(32)), int64(units(16 + 64))}; !slices.Equal(used, want) {
		t.Errorf("group pools: used %v, want %v", used, want)
	}
	// The hold's charge replaces its held tokens with the answer's.
	if _, err := s.Charge(t.Context(), store.Record{UserID: "a", Key: "a-hold", Model: "gpt-4o", Cost: units(64),
		InputTokens: 40, OutputTokens: 2}); err != nil {
		t.Fatal(err)
	}
	if got := limitUsage(t, s, "a", now, store.LimitCheck{Measure: "tokens", From: from(96 * time.Hour)})[0]; got != 3+7+11+15+42 {
		t.Errorf("tokens after the hold's charge: %d, want %d", got, 3+7+11+15+42)
	}
}

// testReserveOverLimit: a hold is refused, taking nothing and writing
// nothing, once a limit has nothing left; the call that crosses it is
// the last one admitted.
func testReserveOverLimit(t *testing.T, s store.Store) {
	now := time.Now().UTC()
	newUser(t, s, "u", units(100))
	day := store.LimitCheck{Measure: "cost", Amount: int64(units(5)), From: now.Add(-time.Hour)}
	for i := range 3 {
		res, err := s.Reserve(t.Context(), store.Reservation{Rule: store.ReserveCoveredOrRest, Limits: []store.LimitCheck{day},
			Record: store.Record{UserID: "u", Key: fmt.Sprint("k", i), Cost: units(2)}})
		if err != nil || !res.Placed || res.OverLimit != 0 {
			t.Fatalf("hold %d: %+v, %v", i, res, err)
		}
	}
	res, err := s.Reserve(t.Context(), store.Reservation{Rule: store.ReserveCoveredOrRest, Limits: []store.LimitCheck{day},
		Record: store.Record{UserID: "u", Key: "k3", Cost: units(2)}})
	if err != nil || res.Placed || res.OverLimit != 1 || res.Used != int64(units(6)) || res.Balance != units(94) {
		t.Fatalf("hold over the limit: %+v, %v", res, err)
	}
	wantBalance(t, s, "u", units(94))
	if _, err := s.RecordByKey(t.Context(), "k3"); err != store.ErrNotFound {
		t.Fatalf("the refused hold wrote a record: %v", err)
	}
	// Another window (the limit's next day; windows start at whole
	// minutes) has room again.
	res, err = s.Reserve(t.Context(), store.Reservation{Rule: store.ReserveCoveredOrRest,
		Limits: []store.LimitCheck{{Measure: "cost", Amount: int64(units(5)), From: now.Add(time.Minute)}},
		Record: store.Record{UserID: "u", Key: "k4", Cost: units(2), CreatedAt: now.Add(time.Minute + time.Second)}})
	if err != nil || !res.Placed {
		t.Fatalf("hold in a new window: %+v, %v", res, err)
	}
}

// testReserveLimitConcurrent: 50 concurrent holds against a limit of 10
// messages place exactly 10; against a shared pool of two users, too.
func testReserveLimitConcurrent(t *testing.T, s store.Store) {
	for _, pool := range []bool{false, true} {
		t.Run(fmt.Sprint("pool=", pool), func(t *testing.T) {
			users := []string{"c1"}
			check := store.LimitCheck{Measure: "messages", Amount: 10, From: time.Now().Add(-time.Hour)}
			if pool {
				users = []string{"p1", "p2"}
				check.Pool = store.Pool{Kind: "group", ID: "team"}
				if err := s.SetGroups(t.Context(), []budget.Group{{ID: "team", Members: users}}); err != nil {
					t.Fatal(err)
				}
			}
			for _, u := range users {
				newUser(t, s, u, units(1000))
			}
			const n = 50
			var wg sync.WaitGroup
			var mu sync.Mutex
			placed, over := 0, 0
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					u := users[i%len(users)]
					res, err := s.Reserve(t.Context(), store.Reservation{Rule: store.ReserveCoveredOrRest,
						Limits: []store.LimitCheck{check}, Record: store.Record{UserID: u, Key: fmt.Sprintf("%s-%d", u, i), Cost: units(1)}})
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil:
						t.Errorf("reserve %d: %v", i, err)
					case res.Placed:
						placed++
					case res.OverLimit == 1:
						over++
					}
				})
			}
			close(start)
			wg.Wait()
			if placed != 10 || over != n-10 {
				t.Fatalf("placed %d and refused %d at the limit, want 10 and %d", placed, over, n-10)
			}
		})
	}
}

// testGrantsApplyOnce: a grant's window applies once (a second call, as
// another instance would make, changes nothing), a reset sets and an add
// tops up to the cap, and blocked users and other scopes are left alone.
func testGrantsApplyOnce(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "g1", units(3))
	newUser(t, s, "g2", units(-2))
	newUser(t, s, "g3", units(7))
	if err := s.SetBlocked(ctx, "g3", true); err != nil {
		t.Fatal(err)
	}
	month, _ := budget.ParseWindow("month")
	reset, err := s.AddGrant(ctx, budget.Grant{Scope: budget.Scope{Kind: "all"}, Mode: "reset", Amount: units(5), Window: month})
	if err != nil {
		t.Fatal(err)
	}
	jan := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 2 {
		if _, err := s.ApplyGrant(ctx, reset.ID, jan); err != nil {
			t.Fatal(err)
		}
	}
	wantBalance(t, s, "g1", units(5))
	wantBalance(t, s, "g2", units(5))
	wantBalance(t, s, "g3", units(7))
	// An earlier window is no longer due.
	if ch, err := s.ApplyGrant(ctx, reset.ID, jan.AddDate(0, -1, 0)); err != nil || len(ch) != 0 {
		t.Fatalf("an earlier window applied: %v, %v", ch, err)
	}
	add, err := s.AddGrant(ctx, budget.Grant{Scope: budget.Scope{Kind: "user", ID: "g1"}, Mode: "add", Amount: units(2), Cap: units(8), Window: month})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []money.Amount{units(7), units(8), units(8)} {
		ch, err := s.ApplyGrant(ctx, add.ID, jan.AddDate(0, i, 0))
		if err != nil || len(ch) != 1 || ch[0].Actor != fmt.Sprintf("grant:%d", add.ID) {
			t.Fatalf("add grant, month %d: %+v, %v", i, ch, err)
		}
		wantBalance(t, s, "g1", want)
	}
	grants, err := s.Grants(ctx)
	if err != nil || len(grants) != 2 || !grants[1].LastWindow.Equal(jan.AddDate(0, 2, 0)) {
		t.Fatalf("Grants: %+v, %v", grants, err)
	}
	if err := s.DeleteGrant(ctx, add.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGrant(ctx, add.ID); err != store.ErrNotFound {
		t.Fatalf("deleting a deleted grant: %v", err)
	}
}

// testLimitsStored: limits round-trip; groups replace each other.
func testLimitsStored(t *testing.T, s store.Store) {
	ctx := t.Context()
	w5h, _ := budget.ParseWindow("5h")
	l, err := s.PutLimit(ctx, budget.Limit{Scope: budget.Scope{Kind: "group", ID: "g"}, Measure: budget.Messages,
		Amount: 50, Window: w5h, Models: []string{"gpt-4*", "o?"}, Shared: true})
	if err != nil || l.ID == 0 {
		t.Fatalf("PutLimit: %+v, %v", l, err)
	}
	l.Amount = 60
	if _, err := s.PutLimit(ctx, l); err != nil {
		t.Fatal(err)
	}
	got, err := s.Limits(ctx)
	if err != nil || len(got) != 1 || got[0].Amount != 60 || got[0].Window != w5h || !slices.Equal(got[0].Models, l.Models) || !got[0].Shared {
		t.Fatalf("Limits: %+v, %v", got, err)
	}
	if _, err := s.PutLimit(ctx, budget.Limit{ID: 999, Scope: budget.Scope{Kind: "all"}, Measure: budget.Cost, Window: w5h}); err != store.ErrNotFound {
		t.Fatalf("PutLimit of a missing id: %v", err)
	}
	if err := s.DeleteLimit(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	for _, gs := range [][]budget.Group{
		{{ID: "a", Name: "A", Members: []string{"u1", "u2"}}, {ID: "b", Name: "B", Members: []string{"u2"}}},
		{{ID: "b", Name: "B2", Members: []string{"u1"}}},
	} {
		if err := s.SetGroups(ctx, gs); err != nil {
			t.Fatal(err)
		}
		got, err := s.Groups(ctx)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(gs) {
			t.Fatalf("Groups: %+v, want %+v (%v)", got, gs, err)
		}
	}
	if g, err := s.UserGroups(ctx, "u1"); err != nil || !slices.Equal(g, []string{"b"}) {
		t.Fatalf("UserGroups: %v, %v", g, err)
	}
}

// checkLimitUsage compares LimitUsage with sums taken over the records,
// for every user, windows starting at and between minutes and days, each
// measure, with and without model patterns, and a pool: the minute rollup
// stays in step with the records through every kind of change the random
// walk of testUsageRollups makes.
func checkLimitUsage(t *testing.T, s store.Store, recs []store.Record, step int, what string, day0 time.Time) {
	t.Helper()
	froms := []time.Time{day0.Add(-time.Hour), day0.Add(25*time.Hour + 30*time.Second), day0.Add(2*24*time.Hour + 7*time.Minute),
		day0.Add(4*24*time.Hour + 23*time.Hour + 59*time.Minute)}
	nows := []time.Time{day0.Add(10 * 24 * time.Hour), day0.Add(3*24*time.Hour + 5*time.Hour)}
	users := map[string]bool{}
	for _, r := range recs {
		users[r.UserID] = true
	}
	for user := range users {
		var checks []store.LimitCheck
		for _, from := range froms {
			for _, m := range []string{"cost", "tokens", "messages"} {
				checks = append(checks, store.LimitCheck{Measure: m, From: from},
					store.LimitCheck{Measure: m, From: from, Models: []string{"rm1", "*2"}},
					store.LimitCheck{Measure: m, From: from, Pool: store.Pool{Kind: "all"}})
			}
		}
		for _, now := range nows {
			used := limitUsage(t, s, user, now, checks...)
			for i, c := range checks {
				var want int64
				from := c.From.Truncate(time.Minute)
				for _, r := range recs {
					if (c.Pool.Kind == "" && r.UserID != user) || r.CreatedAt.Before(from) ||
						(len(c.Models) > 0 && !budget.Match(c.Models[0], r.Model) && !budget.Match(c.Models[1], r.Model)) {
						continue
					}
					switch c.Measure {
					case "cost":
						want += int64(r.Cost)
					case "tokens":
						if r.Status != store.StatusPending { // holds here have no held tokens
							want += r.InputTokens + r.OutputTokens
						}
					default:
						want++
					}
				}
				if used[i] != want {
					t.Fatalf("step %d (%s): LimitUsage of %s %+v at %v = %d, want %d", step, what, user, c, now, used[i], want)
				}
			}
		}
	}
}
