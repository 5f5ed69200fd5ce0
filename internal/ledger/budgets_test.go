package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/postgres"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
	"github.com/openwebui-monitor/owmon/internal/testpg"
)

// budgetRig is a ledger under budget limits with a clock the test moves,
// on one backend and one kind of hold (in the store, or in memory).
type budgetRig struct {
	t     *testing.T
	l     *Ledger
	st    store.Store
	b     *Budgets
	local bool
	now   atomic.Pointer[time.Time]
	n     atomic.Int64
}

// eachBudgetRig runs fn on SQLite with holds in the store and in memory,
// and on PostgreSQL.
func eachBudgetRig(t *testing.T, fn func(t *testing.T, r *budgetRig)) {
	for _, kind := range []string{"sqlite", "sqlite-local", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			var st store.Store
			var err error
			if kind == "postgres" {
				st, err = postgres.Open(ctx, testpg.DSN(t))
			} else {
				st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "b.db"))
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			r := &budgetRig{t: t, st: st, local: kind == "sqlite-local"}
			start := time.Now().UTC().Truncate(time.Millisecond)
			r.now.Store(&start)
			shanghai := time.FixedZone("CST", 8*3600)
			r.b = &Budgets{Location: shanghai, Now: func() time.Time { return *r.now.Load() }, Refresh: time.Hour}
			cfg := Config{Budgets: r.b, DefaultPrice: pricing.Price{PerMessage: money.Units(1)}}
			if r.local {
				cfg.LocalHolds = NewLocalHolds()
			}
			r.l = New(st, cfg)
			fn(t, r)
		})
	}
}

func (r *budgetRig) advance(d time.Duration) {
	t := r.now.Load().Add(d)
	r.now.Store(&t)
}

func (r *budgetRig) user(id, role string) store.UserInfo {
	u := store.UserInfo{ID: id, Name: id, Role: role}
	if _, err := r.st.UpsertUser(context.Background(), u, money.Units(1000)); err != nil {
		r.t.Fatal(err)
	}
	return u
}

func (r *budgetRig) limit(scope, measure string, amount int64, window string, shared bool, models ...string) budget.Limit {
	r.t.Helper()
	sc, err := budget.ParseScope(scope)
	if err != nil {
		r.t.Fatal(err)
	}
	w, err := budget.ParseWindow(window)
	if err != nil {
		r.t.Fatal(err)
	}
	l, err := r.st.PutLimit(context.Background(), budget.Limit{Scope: sc, Measure: budget.Measure(measure),
		Amount: amount, Window: w, Shared: shared, Models: models})
	if err != nil {
		r.t.Fatal(err)
	}
	r.b.Invalidate()
	return l
}

// call holds and, when allowed, charges one message of model "m" (1 per
// message, 10+5 tokens) for u.
func (r *budgetRig) call(u store.UserInfo) HoldResult {
	r.t.Helper()
	ctx := context.Background()
	key := fmt.Sprintf("c/%d", r.n.Add(1))
	res, err := r.l.Hold(ctx, Hold{User: u, Model: "m", PromptTokens: 10, MaxOutputTokens: 5, Key: key,
		Source: SourceEdge, Enforce: true, Settled: r.local, Expires: r.now.Load().Add(time.Hour)})
	if err != nil {
		r.t.Fatalf("Hold: %v", err)
	}
	if res.Allowed {
		if _, err := r.l.Charge(ctx, Answer{User: u, Model: "m", InputTokens: 10, OutputTokens: 5, Key: key, Source: SourceEdge}); err != nil {
			r.t.Fatalf("Charge: %v", err)
		}
		r.l.ReleaseLocal(res.Local)
	}
	return res
}

// allowed makes n calls and reports how many were allowed, failing on a
// refusal other than a budget limit's.
func (r *budgetRig) allowed(u store.UserInfo, n int) (int, *OverLimit) {
	r.t.Helper()
	ok := 0
	var last *OverLimit
	for range n {
		res := r.call(u)
		switch {
		case res.Allowed:
			ok++
		case res.OverLimit != nil:
			last = res.OverLimit
		default:
			r.t.Fatalf("refused for another reason: %+v", res)
		}
	}
	return ok, last
}

// TestBudgetDailyCostLimit: a daily cost limit in the configured time
// zone refuses the call that would exceed it, says which limit, what was
// used and when it resets, and allows calls again once the day turns.
func TestBudgetDailyCostLimit(t *testing.T) {
	eachBudgetRig(t, func(t *testing.T, r *budgetRig) {
		u := r.user("u1", "user")
		r.limit("all", "cost", int64(money.Units(5)), "day", false)
		got, over := r.allowed(u, 8)
		if got != 5 || over == nil {
			t.Fatalf("allowed %d calls of 1 under a limit of 5 a day (refusal %+v)", got, over)
		}
		_, end := over.Limit.Window.Bounds(*r.now.Load(), r.b.Location)
		if over.Used != int64(money.Units(5)) || !over.Reset.Equal(end) || end.In(r.b.Location).Hour() != 0 {
			t.Fatalf("refusal: %+v (want used 5, reset at midnight in Shanghai %v)", over, end)
		}
		if msg := over.Message(); msg != "Budget limit reached: cost per day (all). Used 5 of 5; it resets at "+end.Format(time.RFC3339)+"." {
			t.Errorf("message: %q", msg)
		}
		// The balance was charged for the 5 allowed calls only.
		if got, _ := r.st.User(context.Background(), "u1"); got.Balance != money.Units(995) {
			t.Fatalf("balance %v, want 995", got.Balance)
		}
		r.now.Store(&end)
		if got, _ := r.allowed(u, 1); got != 1 {
			t.Fatal("refused after the day turned")
		}
	})
}

// TestBudgetRollingMessages: a rolling 5h limit of 3 messages lets a
// message through again once the oldest is 5 hours old.
func TestBudgetRollingMessages(t *testing.T) {
	eachBudgetRig(t, func(t *testing.T, r *budgetRig) {
		u := r.user("u1", "user")
		r.limit("user:u1", "messages", 3, "5h", false)
		for i := range 3 {
			if got, _ := r.allowed(u, 1); got != 1 {
				t.Fatalf("message %d refused", i)
			}
			r.advance(time.Hour)
		}
		if got, over := r.allowed(u, 1); got != 0 || over.Used != 3 {
			t.Fatalf("a 4th message within 5h: allowed %d, %+v", got, over)
		}
		r.advance(2*time.Hour + time.Minute) // the first is 5h1m old
		if got, _ := r.allowed(u, 2); got != 1 {
			t.Fatalf("after the first message left the window: allowed %d of 2, want 1", got)
		}
	})
}

// TestBudgetGroupThenOwnLimit: a group's limit applies to a user who
// joins the group; the user's own limit replaces it; of two groups the
// more generous applies.
func TestBudgetGroupThenOwnLimit(t *testing.T) {
	eachBudgetRig(t, func(t *testing.T, r *budgetRig) {
		ctx := context.Background()
		u := r.user("u1", "user")
		r.limit("group:interns", "messages", 2, "day", false)
		if got, _ := r.allowed(u, 3); got != 3 {
			t.Fatalf("not in the group yet: allowed %d of 3", got)
		}
		if err := r.st.SetGroups(ctx, []budget.Group{{ID: "interns", Members: []string{"u1"}}}); err != nil {
			t.Fatal(err)
		}
		r.b.Invalidate()
		if got, over := r.allowed(u, 1); got != 0 || over.Limit.Scope.String() != "group:interns" {
			t.Fatalf("in the group: allowed %d, %+v", got, over)
		}
		r.limit("group:staff", "messages", 4, "day", false)
		if err := r.st.SetGroups(ctx, []budget.Group{{ID: "interns", Members: []string{"u1"}}, {ID: "staff", Members: []string{"u1"}}}); err != nil {
			t.Fatal(err)
		}
		r.b.Invalidate()
		if got, _ := r.allowed(u, 2); got != 1 {
			t.Fatalf("in two groups, the more generous (4): allowed %d of 2 after 3, want 1", got)
		}
		r.limit("user:u1", "messages", 6, "day", false)
		if got, _ := r.allowed(u, 3); got != 2 {
			t.Fatalf("with their own limit of 6: allowed %d of 3 after 4, want 2", got)
		}
	})
}

// TestBudgetSharedPool: a group's shared limit is consumed by two users
// together.
func TestBudgetSharedPool(t *testing.T) {
	eachBudgetRig(t, func(t *testing.T, r *budgetRig) {
		a, b := r.user("a", "user"), r.user("b", "user")
		if err := r.st.SetGroups(context.Background(), []budget.Group{{ID: "team", Members: []string{"a", "b"}}}); err != nil {
			t.Fatal(err)
		}
		r.limit("group:team", "tokens", 45, "week", true) // three calls of 15 tokens
		if got, _ := r.allowed(a, 2); got != 2 {
			t.Fatalf("a: %d of 2", got)
		}
		if got, over := r.allowed(b, 2); got != 1 || over.Used != 45 {
			t.Fatalf("b: %d of 2 (%+v), want 1", got, over)
		}
		if got, _ := r.allowed(a, 1); got != 0 {
			t.Fatal("a allowed past the pool")
		}
	})
}

// TestBudgetConcurrent: 50 concurrent calls against a limit that covers
// 10 admit at most 11 (exactly 10 for a message limit).
func TestBudgetConcurrent(t *testing.T) {
	eachBudgetRig(t, func(t *testing.T, r *budgetRig) {
		for _, measure := range []string{"messages", "cost"} {
			u := r.user("c-"+measure, "user")
			amount := int64(10)
			if measure == "cost" {
				amount = int64(money.Units(10))
			}
			r.limit("user:"+u.ID, measure, amount, "day", false)
			var wg sync.WaitGroup
			var admitted atomic.Int64
			start := make(chan struct{})
			for range 50 {
				wg.Go(func() {
					<-start
					if r.call(u).Allowed {
						admitted.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			if n := admitted.Load(); n < 10 || n > 11 || (measure == "messages" && n != 10) {
				t.Fatalf("%s: %d of 50 concurrent calls admitted under a limit covering 10", measure, n)
			}
		}
	})
}

// TestBudgetGrantAfterDowntime: a monthly reset grant is applied once in
// its month, and once (not twice) after a downtime spanning two months.
func TestBudgetGrantAfterDowntime(t *testing.T) {
	eachBudgetRig(t, func(t *testing.T, r *budgetRig) {
		ctx := context.Background()
		r.user("g1", "user")
		r.user("g2", "admin")
		jan := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
		r.now.Store(&jan)
		month, _ := budget.ParseWindow("month")
		if _, err := r.st.AddGrant(ctx, budget.Grant{Scope: budget.Scope{Kind: "role", ID: "user"}, Mode: "reset",
			Amount: money.Units(5), Window: month}); err != nil {
			t.Fatal(err)
		}
		apply := func() int {
			ch, err := r.l.ApplyGrants(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return len(ch)
		}
		if n := apply(); n != 1 {
			t.Fatalf("January: %d changes, want 1 (the user, not the admin)", n)
		}
		if n := apply(); n != 0 {
			t.Fatalf("January again: %d changes", n)
		}
		if _, err := r.st.AdjustBalance(ctx, "g1", -money.Units(3), "test", "spent"); err != nil {
			t.Fatal(err)
		}
		mar := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) // February passed while owmon was down
		r.now.Store(&mar)
		if n := apply(); n != 1 {
			t.Fatalf("March after downtime: %d changes, want 1", n)
		}
		if n := apply(); n != 0 {
			t.Fatalf("March again: %d changes", n)
		}
		u, _ := r.st.User(ctx, "g1")
		if u.Balance != money.Units(5) {
			t.Fatalf("balance %v, want 5", u.Balance)
		}
		changes, err := r.st.BalanceChanges(ctx, "g1", 100)
		if err != nil {
			t.Fatal(err)
		}
		grants := 0
		for _, c := range changes {
			if c.Actor != "test" {
				grants++
			}
		}
		if grants != 2 {
			t.Fatalf("%d grant changes in the history, want 2: %+v", grants, changes)
		}
	})
}
