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
	l.forgetPrices()
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
	l, st := newLedger(t, Config{MinHold: money.Units(1), HoldOutputTokens: 20,
		InletCosts: pricing.InletCosts{PerModel: map[string]money.Amount{"pricey": money.Units(5)}}})
	ctx := context.Background()
	amount := func(h Hold) money.Amount {
		t.Helper()
		a, _, err := l.holdAmount(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// 10 prompt tokens and 20 of answer at 1 each, plus the larger of the
	// inlet cost and the minimum.
	if a := amount(Hold{Model: "m", PromptTokens: 10}); a != money.Units(31) {
		t.Fatalf("hold %s", a)
	}
	if a := amount(Hold{Model: "pricey", PromptTokens: 10}); a != money.Units(35) {
		t.Fatalf("hold %s", a)
	}
	// The call's own max_tokens bounds the answer, above or below the default.
	if a := amount(Hold{Model: "m", PromptTokens: 10, MaxOutputTokens: 5}); a != money.Units(16) {
		t.Fatalf("hold with max_tokens 5: %s", a)
	}
	if a := amount(Hold{Model: "m", PromptTokens: 10, MaxOutputTokens: 500}); a != money.Units(511) {
		t.Fatalf("hold with max_tokens 500: %s", a)
	}
	// Calls answering no tokens hold their prompt.
	if a := amount(Hold{Model: "m", PromptTokens: 10, NoOutput: true}); a != money.Units(11) {
		t.Fatalf("hold of an embedding: %s", a)
	}
	st.PutModelPrice(ctx, store.ModelPrice{ID: "flat", PerMessage: money.Units(7)})
	if a := amount(Hold{Model: "flat", PromptTokens: 1000}); a != money.Units(8) {
		t.Fatalf("per-message hold %s", a)
	}
	// A cost beyond an amount's range holds the largest amount.
	if a := amount(Hold{Model: "m", PromptTokens: 1 << 62}); a != money.Max {
		t.Fatalf("hold of an immense prompt %s", a)
	}
}

// TestLocalHoldOfTheRest: a balance that covers less than a full hold, but
// is above zero, admits one call holding what is left, then none.
func TestLocalHoldOfTheRest(t *testing.T) {
	l, _ := newLedger(t, Config{InitBalance: money.Units(25), HoldOutputTokens: 0, LocalHolds: NewLocalHolds()})
	ctx := context.Background()
	hold := func() HoldResult {
		t.Helper()
		res, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 10, Enforce: true, Settled: true})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for i, want := range []money.Amount{money.Units(10), money.Units(10), money.Units(5)} {
		if res := hold(); !res.Allowed || res.Amount != want {
			t.Fatalf("hold %d: %+v, want %s held", i, res, want)
		}
	}
	if res := hold(); res.Allowed || res.Balance != 0 {
		t.Fatalf("a fourth call with nothing left: %+v", res)
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

// TestProviderMeterAdoptsLocalHold: an API-key call through the front and
// the provider meter is held once. OpenWebUI tells the provider meter the
// user, not the message: its call adopts the front's hold of that user
// without a chat, charges under the hold's key, and the front charges
// nothing.
func TestProviderMeterAdoptsLocalHold(t *testing.T) {
	l, st := newLedger(t, Config{InitBalance: money.Units(100), LocalHolds: NewLocalHolds()})
	ctx := context.Background()
	hold := func(tokens int64, key, chat, source string) HoldResult {
		t.Helper()
		res, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: tokens, Key: key, ChatID: chat,
			Source: source, Enforce: true, Settled: true})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	front := hold(60, "/m1", "", SourceEdge)
	if !front.Allowed || front.Local == nil || front.Local.Adopted() {
		t.Fatalf("front hold %+v", front)
	}
	// A provider call of another chat adopts nothing: 60 of 100 is held,
	// and it holds the 40 left.
	other := hold(50, "provider/x", "c9", SourceProvider)
	if !other.Allowed || other.Adopted || other.Amount != money.Units(40) {
		t.Fatalf("a call of another chat beside the front's 60 of 100: %+v", other)
	}
	l.ReleaseLocal(other.Local)
	provider := hold(60, "provider/1", "", SourceProvider)
	if !provider.Allowed || !provider.Adopted || provider.Local != front.Local || provider.Key != "/m1" || !front.Local.Adopted() {
		t.Fatalf("provider call did not adopt the front's hold: %+v", provider)
	}
	// Held once: 40 are still free.
	if other := hold(40, "", "x", SourceEdge); !other.Allowed {
		t.Fatalf("40 refused though the call is held once: %+v", other)
	} else {
		l.ReleaseLocal(other.Local)
	}
	// A second provider call of the user (a tool round) has no hold to adopt.
	if again := hold(10, "provider/2", "", SourceProvider); again.Adopted {
		t.Fatalf("adopted twice: %+v", again)
	} else {
		l.ReleaseLocal(again.Local)
	}
	if _, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 5, OutputTokens: 5, Key: provider.Key,
		Source: SourceProvider}); err != nil {
		t.Fatal(err)
	}
	l.ReleaseLocal(provider.Local)
	l.ReleaseLocal(provider.Local) // twice is once
	// The front, settling late, finds the key the provider meter's.
	res, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 50, OutputTokens: 50, Key: "/m1", Source: SourceEdge})
	if err != nil || !res.Covered {
		t.Fatalf("front charge %+v %v", res, err)
	}
	lg, _ := st.Ledger(ctx, alice.ID)
	if lg.Records != 1 || lg.Balance != money.Units(90) {
		t.Fatalf("ledger %+v", lg)
	}
	if other := hold(90, "", "", SourceEdge); !other.Allowed || other.Balance != 0 {
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
	if res := <-second; res.Allowed && res.Amount != money.Units(40) {
		t.Fatalf("a hold of 60 against a balance of 40 holds more than the 40 left: %+v", res)
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
		{Answer{InputTokens: 3, OutputTokens: 4, Status: StatusFailed}, 0},
		{Answer{InputTokens: 3, OutputTokens: 0, Status: StatusCancelled}, 0},
		{Answer{InputTokens: 3, OutputTokens: 2, Status: StatusCancelled}, money.Units(5)},
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
// charged by its provider calls only: the first adopts the front's hold
// (by the chat OpenWebUI forwards, or by the message when an operator's
// connection header sends its id), the others charge their own, and the
// outlet waits for calls under way and answers with their sum.
func TestProviderMeterChargesMessageOnce(t *testing.T) {
	for _, byMessage := range []bool{false, true} {
		l, st := newLedger(t, Config{InitBalance: money.Units(1000), LocalHolds: NewLocalHolds()})
		ctx := context.Background()
		front, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 50, Key: Key("c1", "a1"), ChatID: "c1", MessageID: "a1",
			Source: SourceEdge, Enforce: true, Expires: time.Now().Add(time.Hour)})
		if err != nil || !front.Placed || front.Local != nil {
			t.Fatalf("front hold %+v %v", front, err)
		}
		message := ""
		if byMessage {
			message = "a1"
		}
		call := func(key string) HoldResult {
			t.Helper()
			res, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 10, Key: key, ChatID: "c1", MessageID: message,
				Source: SourceProvider, Enforce: true, Settled: true, Expires: time.Now().Add(time.Hour)})
			if err != nil || !res.Allowed {
				t.Fatalf("provider hold %+v %v", res, err)
			}
			return res
		}
		settle := func(hold HoldResult, in, out int64) {
			t.Helper()
			if _, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: in, OutputTokens: out, CachedTokens: 3,
				Key: hold.Key, ChatID: hold.ChatID, MessageID: hold.MessageID, Source: SourceProvider}); err != nil {
				t.Fatal(err)
			}
			if hold.Local != nil {
				l.ReleaseLocal(hold.Local)
			}
		}
		h1 := call("p1")
		if !h1.Adopted || h1.Key != Key("c1", "a1") || h1.MessageID != "a1" {
			t.Fatalf("byMessage=%v: the first provider call did not adopt the front's hold: %+v", byMessage, h1)
		}
		if held, err := st.RecordByKey(ctx, h1.Key); err != nil || held.Source != SourceProvider || held.Status != StatusPending {
			t.Fatalf("adopted hold %+v %v", held, err)
		}
		settle(h1, 100, 20)
		h2 := call("p2") // a tool round of the same message
		if h2.Adopted {
			t.Fatalf("a second call adopted: %+v", h2)
		}
		outlet := make(chan ChargeResult)
		go func() {
			res, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 999, OutputTokens: 999,
				ChatID: "c1", MessageID: "a1", Source: SourceFunction})
			if err != nil {
				t.Error(err)
			}
			outlet <- res
		}()
		if byMessage {
			// The tool round names the message: the outlet waits for it.
			select {
			case res := <-outlet:
				t.Fatalf("outlet answered %+v before the tool round was settled", res)
			case <-time.After(100 * time.Millisecond):
			}
		}
		settle(h2, 130, 5)
		res := <-outlet
		wantCost := money.Units(100 + 20 + 130 + 5)
		figures := money.Units(100 + 20)
		if byMessage {
			figures = wantCost // every call named the message
		}
		// Without the message id the outlet does not wait for the tool
		// round, so the balance it read may not include it yet.
		if !res.Covered || res.Record.Cost != figures || (byMessage && res.Balance != money.Units(1000)-wantCost) {
			t.Fatalf("byMessage=%v outlet %+v", byMessage, res)
		}
		if u, err := l.store.User(ctx, "alice"); err != nil || u.Balance != money.Units(1000)-wantCost {
			t.Fatalf("byMessage=%v balance %v %v, want %v", byMessage, u.Balance, err, money.Units(1000)-wantCost)
		}
		// A replayed outlet, the front and the websocket charge nothing either.
		for _, src := range []string{SourceFunction, SourceEdge, SourceWebsocket} {
			again, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 1, OutputTokens: 1,
				ChatID: "c1", MessageID: "a1", Source: src})
			if err != nil || !again.Covered {
				t.Fatalf("%s again: %+v %v", src, again, err)
			}
		}
		lg, err := st.Ledger(ctx, alice.ID)
		if err != nil || lg.Records != 2 || lg.Balance != money.Units(1000)-wantCost || lg.Initial-lg.Charges+lg.Adjustments != lg.Balance {
			t.Fatalf("byMessage=%v ledger %+v %v", byMessage, lg, err)
		}
		// Another message the provider meter never saw is charged as usual.
		other, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 1, OutputTokens: 1, ChatID: "c1", MessageID: "a2", Source: SourceFunction})
		if err != nil || other.Covered || other.Record.Cost != money.Units(2) {
			t.Fatalf("uncovered message %+v %v", other, err)
		}
	}
}

// TestWritesKeepCachesRight: a price changed through the ledger is charged
// at once, whatever PriceTTL; a user deleted through the ledger is
// recreated by the next call, with the initial balance.
func TestWritesKeepCachesRight(t *testing.T) {
	l, st := newLedger(t, Config{InitBalance: money.Units(100), PriceTTL: time.Hour})
	ctx := context.Background()
	if _, err := l.PutPrice(ctx, store.ModelPrice{ID: "m", PerMessage: money.Units(2)}); err != nil {
		t.Fatal(err)
	}
	res, err := l.Charge(ctx, Answer{User: alice, Model: "m", MessageID: "1", InputTokens: 1})
	if err != nil || res.Record.Cost != money.Units(2) {
		t.Fatalf("first charge: %+v %v", res.Record, err)
	}
	if _, err := l.PutPrice(ctx, store.ModelPrice{ID: "m", PerMessage: money.Units(5)}); err != nil {
		t.Fatal(err)
	}
	res, err = l.Charge(ctx, Answer{User: alice, Model: "m", MessageID: "2", InputTokens: 1})
	if err != nil || res.Record.Cost != money.Units(5) {
		t.Fatalf("charge after a price change: %+v %v (want the new price at once)", res.Record, err)
	}
	// A model recorded with a base through the ledger takes the base's price.
	if err := l.RecordModel(ctx, "derived", "Derived", "m"); err != nil {
		t.Fatal(err)
	}
	if p, _ := l.Price(ctx, "derived", ""); p.PerMessage != money.Units(5) {
		t.Fatalf("derived model: %+v", p)
	}

	if _, err := l.SetBalance(ctx, "alice", money.Units(1), "test", ""); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := l.EnsureUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if u, err := st.User(ctx, "alice"); err != nil || u.Balance != money.Units(100) {
		t.Fatalf("user after a delete: %+v %v", u, err)
	}
	if err := l.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	res, err = l.Charge(ctx, Answer{User: alice, Model: "m", MessageID: "3", InputTokens: 1})
	if err != nil || res.Balance != money.Units(95) {
		t.Fatalf("charge after a delete: %+v %v (want the initial balance less the price)", res, err)
	}
}
