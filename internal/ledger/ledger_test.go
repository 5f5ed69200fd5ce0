package ledger

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
)

func newLedger(t *testing.T, cfg Config) (*Ledger, store.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "l.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if cfg.DefaultPrice == (pricing.Price{}) {
		cfg.DefaultPrice = pricing.Price{Input: money.Units(1_000_000), Output: money.Units(1_000_000), PerMessage: -1}
	}
	return New(st, cfg), st
}

var alice = store.UserInfo{ID: "alice", Name: "Alice"}

func TestPriceResolutionAndCache(t *testing.T) {
	l, st := newLedger(t, Config{PriceTTL: time.Hour})
	ctx := context.Background()
	p, err := l.Price(ctx, "new-model", "")
	if err != nil || p != l.cfg.DefaultPrice {
		t.Fatalf("default price %+v %v", p, err)
	}
	if row, err := st.ModelPrice(ctx, "new-model"); err != nil || row.Priced {
		t.Fatalf("unknown model not recorded unpriced: %+v %v", row, err)
	}
	// An admin prices it: the cached price stands until the cache is dropped.
	st.PutModelPrice(ctx, store.ModelPrice{ID: "new-model", Input: money.Units(2), Output: money.Units(3), PerMessage: -1})
	if p, _ := l.Price(ctx, "new-model", ""); p.Input != money.Units(1_000_000) {
		t.Fatalf("cache not used: %+v", p)
	}
	l.ForgetPrices()
	if p, _ := l.Price(ctx, "new-model", ""); p.Input != money.Units(2) || p.Output != money.Units(3) {
		t.Fatalf("new price not seen: %+v", p)
	}
	// A recorded derived model with a base inherits the base's price.
	st.RecordModel(ctx, "assistant", "Assistant", "new-model")
	if p, _ := l.Price(ctx, "assistant", ""); p.Input != money.Units(2) {
		t.Fatalf("derived model price %+v", p)
	}
}

func TestHoldAmount(t *testing.T) {
	l, st := newLedger(t, Config{MinHold: money.Units(1), InletCosts: pricing.InletCosts{PerModel: map[string]money.Amount{"pricey": money.Units(5)}}})
	ctx := context.Background()
	// 10 prompt tokens at 1 each, plus the larger of the inlet cost and the minimum.
	if a, _ := l.HoldAmount(ctx, "m", "", 10); a != money.Units(11) {
		t.Fatalf("hold %s", a)
	}
	if a, _ := l.HoldAmount(ctx, "pricey", "", 10); a != money.Units(15) {
		t.Fatalf("hold %s", a)
	}
	st.PutModelPrice(ctx, store.ModelPrice{ID: "flat", PerMessage: money.Units(7)})
	if a, _ := l.HoldAmount(ctx, "flat", "", 1000); a != money.Units(8) {
		t.Fatalf("per-message hold %s", a)
	}
}

// TestLocalHoldsBoundSpending: with holds in memory, concurrent calls of one
// user cannot reserve more than the balance, and a charged call's hold is
// given back.
func TestLocalHoldsBoundSpending(t *testing.T) {
	l, _ := newLedger(t, Config{InitBalance: money.Units(100), LocalHolds: NewLocalHolds()})
	ctx := context.Background()
	var mu sync.Mutex
	var placed []HoldResult
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 10, Enforce: true, Settled: true})
			if err != nil {
				t.Error(err)
				return
			}
			if res.Allowed {
				if !res.Local || !res.Placed {
					t.Errorf("not a local hold: %+v", res)
				}
				mu.Lock()
				placed = append(placed, res)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(placed) != 10 {
		t.Fatalf("%d holds of 10 placed against a balance of 100", len(placed))
	}
	// Charging and releasing one frees room for exactly one more call.
	if _, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 10, Key: "k1"}); err != nil {
		t.Fatal(err)
	}
	l.ReleaseLocal("alice", placed[0].Amount)
	res, _ := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 10, Enforce: true, Settled: true})
	if res.Allowed {
		t.Fatalf("allowed with 9 holds of 10 and 90 left: %+v", res)
	}
	for _, p := range placed[1:] {
		l.ReleaseLocal("alice", p.Amount)
	}
	if res, _ := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 10, Enforce: true, Settled: true}); !res.Allowed || res.Balance != money.Units(80) {
		t.Fatalf("after releases: %+v", res)
	}
	// Monitor mode never refuses, even a blocked user.
	l.store.SetBlocked(ctx, "alice", true)
	if res, _ := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 10_000, Settled: true}); !res.Allowed {
		t.Fatalf("monitor mode refused: %+v", res)
	}
	if res, _ := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 1, Enforce: true, Settled: true}); res.Allowed || !res.Blocked {
		t.Fatalf("blocked user allowed: %+v", res)
	}
}

func TestChargeStatuses(t *testing.T) {
	l, st := newLedger(t, Config{InitBalance: money.Units(100)})
	ctx := context.Background()
	cases := []struct {
		a    Answer
		cost money.Amount
	}{
		{Answer{InputTokens: 3, OutputTokens: 4}, money.Units(7)},
		{Answer{InputTokens: 3, OutputTokens: 4, Status: store.StatusFailed}, 0},
		{Answer{InputTokens: 3, OutputTokens: 0, Status: store.StatusCancelled}, 0},
		{Answer{InputTokens: 3, OutputTokens: 2, Status: store.StatusCancelled}, money.Units(5)},
	}
	for i, c := range cases {
		c.a.User, c.a.Model, c.a.MessageID = alice, "m", string(rune('a'+i))
		res, err := l.Charge(ctx, c.a)
		if err != nil || res.Record.Cost != c.cost {
			t.Fatalf("case %d: %+v %v", i, res.Record, err)
		}
	}
	// A user deleted behind the ledger's back is recreated, not lost.
	l.users.Store("ghost", store.UserInfo{ID: "ghost", Role: "user"})
	if _, err := l.Charge(ctx, Answer{User: store.UserInfo{ID: "ghost"}, Model: "m", InputTokens: 1}); err != nil {
		t.Fatalf("charge for an unknown cached user: %v", err)
	}
	if _, err := st.User(ctx, "ghost"); err != nil {
		t.Fatal(err)
	}
}
