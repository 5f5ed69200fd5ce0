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
				if res.Local == nil || !res.Placed {
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
	// Charging one and releasing its hold frees no room: the charge took
	// what the hold reserved.
	if _, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 10, Key: "k1"}); err != nil {
		t.Fatal(err)
	}
	l.ReleaseLocal(placed[0].Local)
	res, _ := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 10, Enforce: true, Settled: true})
	if res.Allowed {
		t.Fatalf("allowed with 9 holds of 10 and 90 left: %+v", res)
	}
	for _, p := range placed[1:] {
		l.ReleaseLocal(p.Local)
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

// TestProviderMeterTakesOverLocalHold: an API-key call through the front
// and the provider meter is held once. The provider meter's first call for
// the message releases the front's hold in memory, and the front giving it
// back later releases nothing more.
func TestProviderMeterTakesOverLocalHold(t *testing.T) {
	l, _ := newLedger(t, Config{InitBalance: money.Units(100), LocalHolds: NewLocalHolds()})
	l.ExpectProviderMeter()
	ctx := context.Background()
	hold := func(tokens int64, key, message, source string) HoldResult {
		t.Helper()
		res, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: tokens, Key: key, ChatID: "c1", MessageID: message,
			Source: source, Enforce: true, Settled: true})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	front := hold(60, Key("c1", "m1"), "m1", store.SourceEdge)
	if !front.Allowed || front.Local == nil {
		t.Fatalf("front hold %+v", front)
	}
	provider := hold(60, "provider/1", "m1", store.SourceProvider)
	if !provider.Allowed || provider.Balance != money.Units(40) {
		t.Fatalf("provider hold beside the front's (60 of 100 each): %+v", provider)
	}
	l.ReleaseLocal(front.Local) // the front's call ends: already released
	if other := hold(50, "", "", store.SourceEdge); other.Allowed {
		t.Fatalf("50 allowed while the provider call holds 60 of 100: %+v", other)
	}
	l.ReleaseLocal(provider.Local)
	l.ReleaseLocal(provider.Local) // twice is once
	if other := hold(100, "", "", store.SourceEdge); !other.Allowed || other.Balance != 0 {
		t.Fatalf("after both calls ended: %+v", other)
	}
}

// pausingStore stops its first User read after reading, until resumed, so
// a test can end another call in that gap.
type pausingStore struct {
	store.Store
	once           sync.Once
	paused, resume chan struct{}
}

func (s *pausingStore) User(ctx context.Context, id string) (store.User, error) {
	u, err := s.Store.User(ctx, id)
	s.once.Do(func() {
		close(s.paused)
		<-s.resume
	})
	return u, err
}

// TestLocalHoldReadsAgainAfterARelease: a call charged and released while
// another call of the user was reading the balance is not spent twice.
func TestLocalHoldReadsAgainAfterARelease(t *testing.T) {
	l, st := newLedger(t, Config{InitBalance: money.Units(100), LocalHolds: NewLocalHolds()})
	ctx := context.Background()
	first, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 60, Enforce: true, Settled: true})
	if err != nil || first.Local == nil {
		t.Fatalf("first hold %+v %v", first, err)
	}
	ps := &pausingStore{Store: st, paused: make(chan struct{}), resume: make(chan struct{})}
	l.store = ps
	second := make(chan HoldResult)
	go func() {
		res, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 60, Enforce: true, Settled: true})
		if err != nil {
			t.Error(err)
		}
		second <- res
	}()
	<-ps.paused // the second call read a balance of 100
	if _, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 60, Key: "first"}); err != nil {
		t.Fatal(err)
	}
	l.ReleaseLocal(first.Local)
	close(ps.resume)
	if res := <-second; res.Allowed {
		t.Fatalf("a hold of 60 allowed against a balance of 40: %+v", res)
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

// TestProviderMeterChargesMessageOnce: with a provider meter, a message is
// charged by its provider calls only; the front's hold gives way at the
// first call, and the outlet waits for calls under way and answers with
// their sum.
func TestProviderMeterChargesMessageOnce(t *testing.T) {
	for _, local := range []bool{false, true} {
		cfg := Config{InitBalance: money.Units(1000)}
		if local {
			cfg.LocalHolds = NewLocalHolds()
		}
		l, st := newLedger(t, cfg)
		l.ExpectProviderMeter()
		ctx := context.Background()
		front, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 50, Key: Key("c1", "a1"), ChatID: "c1", MessageID: "a1",
			Source: store.SourceEdge, Enforce: true, Expires: time.Now().Add(time.Hour)})
		if err != nil || !front.Placed || front.Local != nil {
			t.Fatalf("front hold %+v %v", front, err)
		}
		call := func(key string) HoldResult {
			t.Helper()
			res, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 10, Key: key, ChatID: "c1", MessageID: "a1",
				Source: store.SourceProvider, Enforce: true, Settled: true, Expires: time.Now().Add(time.Hour)})
			if err != nil || !res.Allowed {
				t.Fatalf("provider hold %+v %v", res, err)
			}
			return res
		}
		settle := func(key string, hold HoldResult, in, out int64) {
			t.Helper()
			if _, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: in, OutputTokens: out, CachedTokens: 3,
				Key: key, ChatID: "c1", MessageID: "a1", Source: store.SourceProvider}); err != nil {
				t.Fatal(err)
			}
			if hold.Local != nil {
				l.ReleaseLocal(hold.Local)
			}
		}
		h1 := call("p1")
		if _, err := st.RecordByKey(ctx, Key("c1", "a1")); err == nil {
			t.Fatal("the front's hold survived the provider meter's first call")
		}
		settle("p1", h1, 100, 20)
		h2 := call("p2") // a tool round of the same message

		outlet := make(chan store.ChargeResult)
		go func() {
			res, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 999, OutputTokens: 999,
				ChatID: "c1", MessageID: "a1", Source: store.SourceFunction})
			if err != nil {
				t.Error(err)
			}
			outlet <- res
		}()
		select {
		case res := <-outlet:
			t.Fatalf("outlet answered %+v before the tool round was settled", res)
		case <-time.After(100 * time.Millisecond):
		}
		settle("p2", h2, 130, 5)
		res := <-outlet
		wantCost := money.Units(100 + 20 + 130 + 5)
		if !res.Covered || res.Record.InputTokens != 230 || res.Record.OutputTokens != 25 || res.Record.CachedTokens != 6 ||
			res.Record.Cost != wantCost || res.Balance != money.Units(1000)-wantCost {
			t.Fatalf("local=%v outlet %+v", local, res)
		}
		// A replayed outlet, and the front settling late, charge nothing either.
		for _, src := range []string{store.SourceFunction, store.SourceEdge} {
			again, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 1, OutputTokens: 1,
				ChatID: "c1", MessageID: "a1", Source: src})
			if err != nil || !again.Covered || again.Record.Cost != wantCost {
				t.Fatalf("%s again: %+v %v", src, again, err)
			}
		}
		lg, err := st.Ledger(ctx, alice.ID)
		if err != nil || lg.Records != 2 || lg.Balance != money.Units(1000)-wantCost || lg.Initial-lg.Charges+lg.Adjustments != lg.Balance {
			t.Fatalf("local=%v ledger %+v %v", local, lg, err)
		}
		// Another message the provider meter never saw is charged as usual.
		other, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 1, OutputTokens: 1, ChatID: "c1", MessageID: "a2", Source: store.SourceFunction})
		if err != nil || other.Covered || other.Record.Cost != money.Units(2) {
			t.Fatalf("uncovered message %+v %v", other, err)
		}
	}
}
