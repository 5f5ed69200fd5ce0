package storetest

// Numbers at the ends of the int64 range: writes whose arithmetic would
// leave it are refused with store.ErrOutOfRange and change nothing, and the
// aggregates over rows at the bounds still answer, saturating.

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// wantOutOfRange fails unless err is store.ErrOutOfRange.
func wantOutOfRange(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrOutOfRange) {
		t.Fatalf("%s: err = %v, want store.ErrOutOfRange", what, err)
	}
}

// ledgerOf returns a user's ledger, failing the test on an error.
func ledgerOf(t *testing.T, s store.Store, id string) store.Ledger {
	t.Helper()
	l, err := s.Ledger(t.Context(), id)
	if err != nil {
		t.Fatalf("Ledger(%s): %v", id, err)
	}
	return l
}

// testOverflowRefused: a charge, a hold, a release, an adjustment or a
// daily rollup whose sum would leave the int64 range is refused with
// store.ErrOutOfRange, and nothing is written.
func testOverflowRefused(t *testing.T, s store.Store) {
	ctx := t.Context()

	// A charge below the smallest balance.
	newUser(t, s, "low", money.Min+5)
	_, err := s.Charge(ctx, store.Record{UserID: "low", Cost: 6, Key: "low-1"})
	wantOutOfRange(t, "charge below the smallest balance", err)
	wantBalance(t, s, "low", money.Min+5)
	if l := ledgerOf(t, s, "low"); l.Records != 0 {
		t.Fatalf("a refused charge wrote %d records", l.Records)
	}
	if _, err := s.RecordByKey(ctx, "low-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused charge left its key: %v", err)
	}
	if _, err := s.Charge(ctx, store.Record{UserID: "low", Cost: 5}); err != nil {
		t.Fatalf("a charge down to the smallest balance: %v", err)
	}
	wantBalance(t, s, "low", money.Min)

	// Holds: one that would overflow is an error with ReserveAlways; under
	// a rule that refuses anyway it is just not placed.
	_, err = s.Reserve(ctx, store.Reservation{Rule: store.ReserveAlways, Record: store.Record{UserID: "low", Cost: 1, Key: "low-hold"}})
	wantOutOfRange(t, "hold below the smallest balance", err)
	if res, err := s.Reserve(ctx, store.Reservation{Rule: store.ReserveIfPositive, Record: store.Record{UserID: "low", Cost: 1, Key: "low-hold"}}); err != nil || res.Placed {
		t.Fatalf("hold for a user at the smallest balance: %+v, %v", res, err)
	}
	wantBalance(t, s, "low", money.Min)

	// Adjustments past either end.
	_, err = s.AdjustBalance(ctx, "low", -1, "admin", "")
	wantOutOfRange(t, "adjustment below the smallest balance", err)
	newUser(t, s, "high", money.Max)
	_, err = s.AdjustBalance(ctx, "high", 1, "admin", "")
	wantOutOfRange(t, "adjustment above the largest balance", err)
	wantBalance(t, s, "low", money.Min)
	wantBalance(t, s, "high", money.Max)
	for _, id := range []string{"low", "high"} {
		if cs, err := s.BalanceChanges(ctx, id, 10); err != nil || len(cs) != 0 {
			t.Fatalf("a refused adjustment of %s was recorded: %+v, %v", id, cs, err)
		}
	}

	// Giving a hold back past the largest balance: the hold stays until the
	// balance leaves room for it.
	newUser(t, s, "h", 0)
	if res, err := s.Reserve(ctx, store.Reservation{Rule: store.ReserveAlways, Record: store.Record{UserID: "h", Cost: 10, Key: "h-hold"}}); err != nil || !res.Placed {
		t.Fatalf("hold: %+v, %v", res, err)
	}
	if _, err := s.SetBalance(ctx, "h", money.Max-3, "admin", ""); err != nil {
		t.Fatal(err)
	}
	_, err = s.Charge(ctx, store.Record{UserID: "h", Cost: 0, Key: "h-hold"})
	wantOutOfRange(t, "settling a hold for less, past the largest balance", err)
	_, err = s.ReleaseHold(ctx, "h-hold")
	wantOutOfRange(t, "releasing a hold past the largest balance", err)
	if r := recordByKey(t, s, "h-hold"); r.Status != store.StatusPending || r.Cost != 10 {
		t.Fatalf("a refused release changed the hold: %+v", r)
	}
	wantBalance(t, s, "h", money.Max-3)
	if _, err := s.SetBalance(ctx, "h", 0, "admin", ""); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.ReleaseHold(ctx, "h-hold"); err != nil || !ok {
		t.Fatalf("release: %v, %v", ok, err)
	}
	wantBalance(t, s, "h", 10)
	checkLedger(t, s, "h", 0)

	// A daily rollup that would overflow refuses the charge that would
	// make it; the same charge on another day is fine.
	day := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	newUser(t, s, "r", money.Max)
	if _, err := s.Charge(ctx, store.Record{UserID: "r", Model: "m", Cost: money.Max, CreatedAt: day}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AdjustBalance(ctx, "r", money.Max, "admin", ""); err != nil {
		t.Fatal(err)
	}
	_, err = s.Charge(ctx, store.Record{UserID: "r", Model: "m", Cost: 1, Key: "r-2", CreatedAt: day.Add(time.Hour)})
	wantOutOfRange(t, "a day's cost past the largest amount", err)
	// Tokens alone: one more fits the row, the most there are do not.
	if _, err := s.Charge(ctx, store.Record{UserID: "r", Model: "m", InputTokens: 1, CreatedAt: day}); err != nil {
		t.Fatalf("a token and no money on a row with room for it: %v", err)
	}
	_, err = s.Charge(ctx, store.Record{UserID: "r", Model: "m", InputTokens: math.MaxInt64, CreatedAt: day})
	wantOutOfRange(t, "a day's tokens past the largest count", err)
	wantBalance(t, s, "r", money.Max)
	if l := ledgerOf(t, s, "r"); l.Records != 2 {
		t.Fatalf("%d records after refused charges, want 2", l.Records)
	}
	if _, err := s.Charge(ctx, store.Record{UserID: "r", Model: "m", Cost: 1, Key: "r-2", CreatedAt: day.AddDate(0, 0, 1)}); err != nil {
		t.Fatalf("the same charge on the next day: %v", err)
	}
	wantBalance(t, s, "r", money.Max-1)
}

// testAggregatesAtBounds writes records, balances and balance changes at
// the ends of the int64 range, each row within it but their sums far
// beyond, and checks that UsageBetween, Ledger, ListUsers, ListRecords and
// MessageUsage still answer, with sums saturated.
func testAggregatesAtBounds(t *testing.T, s store.Store) {
	ctx := t.Context()
	day := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	newUser(t, s, "big", money.Max)
	// Four records, each of the largest cost and token counts, on rows of
	// their own (two days × two models), topped up in between.
	n := 0
	for d := range 2 {
		for _, model := range []string{"m1", "m2"} {
			if n > 0 {
				if _, err := s.AdjustBalance(ctx, "big", money.Max, "admin", "top up"); err != nil {
					t.Fatalf("top-up %d: %v", n, err)
				}
			}
			_, err := s.Charge(ctx, store.Record{UserID: "big", Model: model, Cost: money.Max,
				InputTokens: math.MaxInt64, OutputTokens: math.MaxInt64, CachedTokens: math.MaxInt64,
				ReasoningTokens: math.MaxInt64, Source: store.SourceProvider, ChatID: "c", MessageID: "msg",
				CreatedAt: day.AddDate(0, 0, d)})
			if err != nil {
				t.Fatalf("charge %d: %v", n, err)
			}
			n++
		}
	}
	wantBalance(t, s, "big", 0)
	// Balances swung from one end to the other.
	newUser(t, s, "swing", money.Min)
	for _, b := range []money.Amount{money.Max, money.Min, money.Max} {
		if _, err := s.SetBalance(ctx, "swing", b, "admin", ""); err != nil {
			t.Fatal(err)
		}
	}
	newUser(t, s, "floor", money.Min)

	for _, rg := range [][2]time.Time{
		{}, // all time: rollups only
		{day.Add(-time.Hour), day.AddDate(0, 0, 1).Add(time.Hour)}, // partial days: records too
		{day.Add(-time.Hour), day.Add(time.Hour)},                  // no whole day
	} {
		u, err := s.UsageBetween(ctx, rg[0], rg[1])
		if err != nil {
			t.Fatalf("UsageBetween(%v, %v) at the bounds: %v", rg[0], rg[1], err)
		}
		if u.Total.Cost != money.Max || u.Total.InputTokens != math.MaxInt64 || u.Total.OutputTokens != math.MaxInt64 {
			t.Fatalf("UsageBetween(%v, %v) totals %+v, want them saturated", rg[0], rg[1], u.Total)
		}
		if len(u.ByUser) != 1 || u.ByUser[0].Cost != money.Max || len(u.ByDay) == 0 || len(u.ByModel) == 0 {
			t.Fatalf("UsageBetween(%v, %v) groups %+v", rg[0], rg[1], u)
		}
	}
	u, _ := s.UsageBetween(ctx, time.Time{}, time.Time{})
	if u.Total.Calls != 4 || len(u.ByDay) != 2 || len(u.ByModel) != 2 {
		t.Fatalf("usage at the bounds: %+v", u)
	}
	for _, d := range u.ByDay {
		if d.Cost != money.Max || d.InputTokens != math.MaxInt64 || d.Calls != 2 {
			t.Fatalf("a day at the bounds: %+v", d)
		}
	}

	l := ledgerOf(t, s, "big")
	if l.Records != 4 || l.Charges != money.Max || l.Adjustments != money.Max || l.Balance != 0 || l.Initial != money.Max {
		t.Fatalf("ledger at the bounds: %+v", l)
	}
	l = ledgerOf(t, s, "swing")
	if l.Adjustments != money.Max || l.Balance != money.Max {
		// Min→Max→Min→Max: the changes sum to Max − Min, which saturates.
		t.Fatalf("ledger of swings between the ends: %+v", l)
	}

	users, total := listUsers(t, s, store.UserQuery{SortField: "balance", Descending: true})
	if total != 3 || len(users) != 3 || users[0].Balance != money.Max || users[2].Balance != money.Min {
		t.Fatalf("users at the bounds: %d %+v", total, users)
	}
	recs, total := listRecords(t, s, store.RecordQuery{SortField: "cost"})
	if total != 4 || recs[0].Cost != money.Max || recs[0].InputTokens != math.MaxInt64 {
		t.Fatalf("records at the bounds: %d %+v", total, recs)
	}

	mu, err := s.MessageUsage(ctx, store.SourceProvider, "c", "msg")
	if err != nil {
		t.Fatalf("MessageUsage at the bounds: %v", err)
	}
	if mu.Records != 4 || mu.Cost != money.Max || mu.InputTokens != math.MaxInt64 || mu.CachedTokens != math.MaxInt64 ||
		mu.ReasoningTokens != math.MaxInt64 || mu.OutputTokens != math.MaxInt64 {
		t.Fatalf("MessageUsage at the bounds: %+v", mu)
	}
}

// testImportKeep: keep sees every row the import replaces, inside the
// import; an error from keep undoes the import.
func testImportKeep(t *testing.T, s store.Store) {
	ctx := t.Context()
	backupFixture(t, s)
	before := export(t, s)
	refuse := errors.New("refused")
	err := s.Import(ctx, store.Backup{}, func(old store.Backup) error {
		sameBackup(t, "the rows keep is given", old, before)
		return refuse
	})
	if !errors.Is(err, refuse) {
		t.Fatalf("Import with a failing keep: %v", err)
	}
	sameBackup(t, "after keep refused", export(t, s), before)

	next := store.Backup{Users: []store.User{{UserInfo: store.UserInfo{ID: "solo", Role: "user"}, Balance: units(3),
		InitialBalance: units(3), CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}}}
	var kept store.Backup
	calls := 0
	if err := s.Import(ctx, next, func(old store.Backup) error { kept = old; calls++; return nil }); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("keep called %d times", calls)
	}
	sameBackup(t, "the rows keep was given", kept, before)
	sameBackup(t, "after the import", export(t, s), next)

	// An empty store hands keep nothing.
	if err := s.Import(ctx, store.Backup{}, nil); err != nil {
		t.Fatal(err)
	}
	calls = 0
	if err := s.Import(ctx, next, func(old store.Backup) error { kept = old; calls++; return nil }); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || len(kept.Users)+len(kept.Records)+len(kept.ModelPrices)+len(kept.BalanceChanges) != 0 {
		t.Fatalf("keep of an empty store: %d calls, given %+v", calls, kept)
	}
}
