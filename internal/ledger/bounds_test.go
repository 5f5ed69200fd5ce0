package ledger

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// TestChargeCapsTokenCounts: on the paths where the answer is already
// delivered, a count above max_tokens_per_call is charged as that many
// tokens, and the record says it was not the provider's figure.
func TestChargeCapsTokenCounts(t *testing.T) {
	l, st := newLedger(t, Config{InitBalance: money.Units(1_000_000_000), MaxTokensPerCall: 1000})
	ctx := context.Background()
	res, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: math.MaxInt64, OutputTokens: 7,
		CachedTokens: math.MaxInt64, ReasoningTokens: 2000, Source: SourceEdge, ChatID: "c", MessageID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Record
	if r.InputTokens != 1000 || r.OutputTokens != 7 || r.CachedTokens != 1000 || r.ReasoningTokens != 1000 || !r.Estimated {
		t.Fatalf("capped record %+v", r)
	}
	if r.Cost != money.Units(1007) { // 1 a token
		t.Fatalf("cost %s", r.Cost)
	}
	// Counts within the bound are the provider's, as reported.
	res, err = l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 1000, OutputTokens: 1, Source: SourceEdge})
	if err != nil || res.Record.Estimated || res.Record.InputTokens != 1000 {
		t.Fatalf("a count at the bound: %+v, %v", res.Record, err)
	}
	if u, _ := st.User(ctx, "alice"); u.Balance != money.Units(1_000_000_000-1007-1001) {
		t.Fatalf("balance %s", u.Balance)
	}
}

// TestChargeRefusesCostOverflow: a cost beyond the largest amount is an
// error wrapping store.ErrOutOfRange, and nothing is written.
func TestChargeRefusesCostOverflow(t *testing.T) {
	l, st := newLedger(t, Config{InitBalance: money.Units(10)})
	ctx := context.Background()
	_, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: math.MaxInt64, Source: SourceEdge,
		ChatID: "c", MessageID: "m1"})
	if !errors.Is(err, store.ErrOutOfRange) {
		t.Fatalf("err = %v, want ErrOutOfRange", err)
	}
	if lg, _ := st.Ledger(ctx, "alice"); lg.Records != 0 || lg.Balance != money.Units(10) {
		t.Fatalf("a refused charge wrote: %+v", lg)
	}
}

// TestHoldAtTheEndOfTheRange: monitor mode never refuses, even when a hold
// would take the balance past the smallest amount; enforce mode refuses.
func TestHoldAtTheEndOfTheRange(t *testing.T) {
	l, st := newLedger(t, Config{InitBalance: money.Min + 1})
	ctx := context.Background()
	h := Hold{User: alice, Model: "m", PromptTokens: 10, Key: "c/m1", ChatID: "c", MessageID: "m1", Source: SourceEdge}
	res, err := l.Hold(ctx, h)
	if err != nil || !res.Allowed || res.Placed {
		t.Fatalf("monitor-mode hold at the bottom: %+v, %v", res, err)
	}
	h.Enforce = true
	if res, err := l.Hold(ctx, h); err != nil || res.Allowed {
		t.Fatalf("enforce-mode hold at the bottom: %+v, %v", res, err)
	}
	if u, _ := st.User(ctx, "alice"); u.Balance != money.Min+1 {
		t.Fatalf("balance %s", u.Balance)
	}
}

// TestExpireHoldsSkipsHoldsWithoutRoom: a hold whose release would take the
// balance past the largest amount does not stop the others expiring.
func TestExpireHoldsSkipsHoldsWithoutRoom(t *testing.T) {
	l, st := newLedger(t, Config{})
	ctx := context.Background()
	past := time.Now().Add(-time.Minute)
	for _, id := range []string{"a", "b"} {
		if _, err := st.UpsertUser(ctx, store.UserInfo{ID: id}, money.Units(100)); err != nil {
			t.Fatal(err)
		}
		if res, err := st.Reserve(ctx, store.Reservation{Rule: store.ReserveAlways, Record: store.Record{UserID: id,
			Cost: money.Units(5), Key: id + "/hold", ExpiresAt: &past}}); err != nil || !res.Placed {
			t.Fatalf("hold: %+v %v", res, err)
		}
	}
	if _, err := st.SetBalance(ctx, "a", money.Max, "admin", ""); err != nil {
		t.Fatal(err)
	}
	n, err := l.ExpireHolds(ctx, time.Now())
	if n != 1 || !errors.Is(err, store.ErrOutOfRange) {
		t.Fatalf("expired %d, %v", n, err)
	}
	if u, _ := st.User(ctx, "b"); u.Balance != money.Units(100) {
		t.Fatalf("b's hold not released: %s", u.Balance)
	}
	if r, _ := st.RecordByKey(ctx, "a/hold"); r.Status != StatusPending {
		t.Fatalf("a's hold: %+v", r)
	}
}
