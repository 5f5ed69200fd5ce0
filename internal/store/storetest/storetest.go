// Package storetest is the contract every store.Store implementation passes.
//
// An implementation's test calls Run with a function that opens a fresh,
// empty store for one test and closes it when the test ends:
//
//	storetest.Run(t, func(t *testing.T) store.Store {
//		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "t.db"))
//		if err != nil {
//			t.Fatal(err)
//		}
//		t.Cleanup(func() { s.Close() })
//		return s
//	})
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// Run runs the contract tests, each on a store from open.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Kind", testKind},
		{"UpsertUser", testUpsertUser},
		{"NotFound", testNotFound},
		{"Charge", testCharge},
		{"ChargeDuplicate", testChargeDuplicate},
		{"ChargeConcurrentSameKey", testChargeConcurrentSameKey},
		{"ChargeBlockedUser", testChargeBlockedUser},
		{"ReserveRules", testReserveRules},
		{"ReserveBlocked", testReserveBlocked},
		{"ReserveExisting", testReserveExisting},
		{"ReserveThenCharge", testReserveThenCharge},
		{"ReserveThenChargeMore", testReserveThenChargeMore},
		{"ReserveThenFail", testReserveThenFail},
		{"ExpiredHolds", testExpiredHolds},
		{"ReserveThenConcurrentCharges", testReserveThenConcurrentCharges},
		{"ReserveConcurrentOverdraw", testReserveConcurrentOverdraw},
		{"BalanceChanges", testBalanceChanges},
		{"SetBlocked", testSetBlocked},
		{"ModelPrices", testModelPrices},
		{"RecordByKey", testRecordByKey},
		{"LedgerInvariant", testLedgerInvariant},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// units is n currency units.
func units(n int64) money.Amount { return money.Units(n) }

func newUser(t *testing.T, s store.Store, id string, initial money.Amount) store.User {
	t.Helper()
	u, err := s.UpsertUser(t.Context(), store.UserInfo{ID: id, Email: id + "@example.com", Name: "Name " + id, Role: "user"}, initial)
	if err != nil {
		t.Fatalf("UpsertUser(%s): %v", id, err)
	}
	return u
}

func balance(t *testing.T, s store.Store, id string) money.Amount {
	t.Helper()
	u, err := s.User(t.Context(), id)
	if err != nil {
		t.Fatalf("User(%s): %v", id, err)
	}
	return u.Balance
}

func wantBalance(t *testing.T, s store.Store, id string, want money.Amount) {
	t.Helper()
	if got := balance(t, s, id); got != want {
		t.Fatalf("balance of %s = %v, want %v", id, got, want)
	}
}

// checkLedger checks Initial + Adjustments − Charges == Balance == the
// user's balance, and the number of records when records >= 0.
func checkLedger(t *testing.T, s store.Store, id string, records int64) store.Ledger {
	t.Helper()
	l, err := s.Ledger(t.Context(), id)
	if err != nil {
		t.Fatalf("Ledger(%s): %v", id, err)
	}
	if l.Initial+l.Adjustments-l.Charges != l.Balance {
		t.Fatalf("ledger of %s broken: initial %v + adjustments %v - charges %v != balance %v",
			id, l.Initial, l.Adjustments, l.Charges, l.Balance)
	}
	if b := balance(t, s, id); b != l.Balance {
		t.Fatalf("ledger balance of %s = %v, user balance %v", id, l.Balance, b)
	}
	if records >= 0 && l.Records != records {
		t.Fatalf("ledger of %s has %d records, want %d", id, l.Records, records)
	}
	return l
}

// norm makes records comparable with reflect.DeepEqual.
func norm(r store.Record) store.Record {
	r.CreatedAt = time.Unix(0, r.CreatedAt.UnixNano()).UTC()
	if r.ExpiresAt != nil {
		e := time.Unix(0, r.ExpiresAt.UnixNano()).UTC()
		r.ExpiresAt = &e
	}
	return r
}

func sameRecord(t *testing.T, what string, got, want store.Record) {
	t.Helper()
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, g, w)
	}
}

func recordByKey(t *testing.T, s store.Store, key string) store.Record {
	t.Helper()
	r, err := s.RecordByKey(t.Context(), key)
	if err != nil {
		t.Fatalf("RecordByKey(%q): %v", key, err)
	}
	return r
}

func recent(t *testing.T, what string, tm time.Time) {
	t.Helper()
	if d := time.Since(tm); d < -time.Minute || d > time.Minute {
		t.Fatalf("%s = %v, not near now (%v)", what, tm, time.Now())
	}
	if tm.Location() != time.UTC {
		t.Fatalf("%s = %v, not in UTC", what, tm)
	}
}

func testKind(t *testing.T, s store.Store) {
	if k := s.Kind(); k != "sqlite" && k != "postgres" {
		t.Fatalf("Kind() = %q", k)
	}
}

func testUpsertUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, err := s.UpsertUser(ctx, store.UserInfo{ID: "u1", Email: "a@example.com", Name: "Ann", Role: "admin"}, units(5))
	if err != nil {
		t.Fatal(err)
	}
	want := store.UserInfo{ID: "u1", Email: "a@example.com", Name: "Ann", Role: "admin"}
	if u.UserInfo != want || u.Balance != units(5) || u.InitialBalance != units(5) || u.Blocked {
		t.Fatalf("created %+v", u)
	}
	recent(t, "CreatedAt", u.CreatedAt)
	recent(t, "UpdatedAt", u.UpdatedAt)

	if _, err := s.Charge(ctx, store.Record{UserID: "u1", Cost: units(2)}); err != nil {
		t.Fatal(err)
	}
	// A refresh changes the profile, never the balance or the initial balance.
	r, err := s.UpsertUser(ctx, store.UserInfo{ID: "u1", Email: "b@example.com", Name: "Bea", Role: "user"}, units(100))
	if err != nil {
		t.Fatal(err)
	}
	want = store.UserInfo{ID: "u1", Email: "b@example.com", Name: "Bea", Role: "user"}
	if r.UserInfo != want || r.Balance != units(3) || r.InitialBalance != units(5) || r.Blocked {
		t.Fatalf("refreshed %+v", r)
	}
	if !r.CreatedAt.Equal(u.CreatedAt) {
		t.Fatalf("refresh changed CreatedAt from %v to %v", u.CreatedAt, r.CreatedAt)
	}
	got, err := s.User(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if got.UserInfo != r.UserInfo || got.Balance != r.Balance || got.InitialBalance != r.InitialBalance ||
		!got.CreatedAt.Equal(r.CreatedAt) || !got.UpdatedAt.Equal(r.UpdatedAt) || got.Blocked != r.Blocked {
		t.Fatalf("User() = %+v, upsert returned %+v", got, r)
	}
	checkLedger(t, s, "u1", 1)

	// A refresh of a blocked user keeps the block.
	if err := s.SetBlocked(ctx, "u1", true); err != nil {
		t.Fatal(err)
	}
	if r, err = s.UpsertUser(ctx, want, units(100)); err != nil || !r.Blocked {
		t.Fatalf("refresh of a blocked user: %+v, %v", r, err)
	}

	// A new user without a role is a "user"; empty fields on a refresh keep
	// what is stored.
	n, err := s.UpsertUser(ctx, store.UserInfo{ID: "u2", Email: "c@example.com", Name: "Cy"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n.Role != "user" || n.Balance != 0 || n.InitialBalance != 0 {
		t.Fatalf("created without role: %+v", n)
	}
	if n, err = s.UpsertUser(ctx, store.UserInfo{ID: "u2"}, units(1)); err != nil {
		t.Fatal(err)
	}
	if n.Email != "c@example.com" || n.Name != "Cy" || n.Role != "user" || n.Balance != 0 {
		t.Fatalf("refresh with empty fields: %+v", n)
	}
	// Negative initial balances are stored exactly too.
	m, err := s.UpsertUser(ctx, store.UserInfo{ID: "u3"}, -7)
	if err != nil || m.Balance != -7 || m.InitialBalance != -7 {
		t.Fatalf("negative initial: %+v, %v", m, err)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	notFound := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s: err = %v, want ErrNotFound", what, err)
		}
	}
	_, err := s.User(ctx, "nobody")
	notFound("User", err)
	_, err = s.Charge(ctx, store.Record{UserID: "nobody", Cost: 1})
	notFound("Charge", err)
	_, err = s.Charge(ctx, store.Record{UserID: "nobody", Cost: 1, Key: "k-nobody"})
	notFound("Charge with key", err)
	_, err = s.RecordByKey(ctx, "k-nobody")
	notFound("RecordByKey after a failed charge", err)
	_, err = s.Reserve(ctx, store.Reservation{Record: store.Record{UserID: "nobody", Cost: 1, Key: "r-nobody"}, Rule: store.ReserveAlways})
	notFound("Reserve", err)
	_, err = s.RecordByKey(ctx, "r-nobody")
	notFound("RecordByKey after a failed reserve", err)
	_, err = s.SetBalance(ctx, "nobody", 1, "admin", "")
	notFound("SetBalance", err)
	_, err = s.AdjustBalance(ctx, "nobody", 1, "admin", "")
	notFound("AdjustBalance", err)
	notFound("SetBlocked", s.SetBlocked(ctx, "nobody", true))
	_, err = s.Ledger(ctx, "nobody")
	notFound("Ledger", err)
	_, err = s.ModelPrice(ctx, "no-model")
	notFound("ModelPrice", err)
	_, err = s.RecordByKey(ctx, "")
	notFound("RecordByKey empty", err)
}

func testCharge(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	cost := money.Amount(1_234_567_891) // 1.234567891 units
	rec := store.Record{
		UserID: "u1", Nickname: "Ann", Model: "gpt-4o",
		InputTokens: 1000, OutputTokens: 500, CachedTokens: 100, ReasoningTokens: 50,
		Cost: cost, Source: store.SourceEdge, Estimated: true, Purpose: "chat",
		ChatID: "chat-1", MessageID: "msg-1", DurationMS: 1234,
	}
	res, err := s.Charge(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	after := units(10) - cost
	if res.Duplicate || res.Held != 0 || res.Balance != after {
		t.Fatalf("Charge = %+v, want balance %v", res, after)
	}
	got := res.Record
	if got.ID <= 0 || got.BalanceAfter != after || got.Status != store.StatusCompleted || got.ExpiresAt != nil {
		t.Fatalf("charged record %+v", got)
	}
	recent(t, "CreatedAt", got.CreatedAt)
	want := rec
	want.ID, want.BalanceAfter, want.Status, want.CreatedAt = got.ID, after, store.StatusCompleted, got.CreatedAt
	sameRecord(t, "charged record", got, want)
	wantBalance(t, s, "u1", after)

	// Without a key, the same charge is a second record.
	res2, err := s.Charge(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Duplicate || res2.Record.ID == got.ID || res2.Balance != after-cost || res2.Record.BalanceAfter != after-cost {
		t.Fatalf("second charge %+v", res2)
	}
	l := checkLedger(t, s, "u1", 2)
	if l.Charges != 2*cost || l.Initial != units(10) || l.Adjustments != 0 {
		t.Fatalf("ledger %+v", l)
	}

	// With a key, a given time and status, read back exactly as returned.
	at := time.Date(2024, 5, 6, 7, 8, 9, 123_000_000, time.FixedZone("X", 3600))
	keyed := rec
	keyed.Key, keyed.CreatedAt, keyed.Status, keyed.Cost = "k-1", at, store.StatusCancelled, 1
	res3, err := s.Charge(ctx, keyed)
	if err != nil {
		t.Fatal(err)
	}
	if !res3.Record.CreatedAt.Equal(at) || res3.Record.Status != store.StatusCancelled || res3.Record.Key != "k-1" {
		t.Fatalf("keyed charge %+v", res3.Record)
	}
	sameRecord(t, "RecordByKey", recordByKey(t, s, "k-1"), res3.Record)
	wantBalance(t, s, "u1", after-cost-1)

	// A negative balance is allowed: Charge takes the whole cost.
	res4, err := s.Charge(ctx, store.Record{UserID: "u1", Cost: units(100)})
	if err != nil {
		t.Fatal(err)
	}
	if res4.Balance != after-cost-1-units(100) {
		t.Fatalf("charge into the negative: balance %v", res4.Balance)
	}
	checkLedger(t, s, "u1", 4)
}

func testChargeDuplicate(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	first, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "k1", Model: "m1", InputTokens: 10, Cost: units(3)})
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || first.Balance != units(7) {
		t.Fatalf("first %+v", first)
	}
	again, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "k1", Model: "m2", InputTokens: 99, Cost: units(5)})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Balance != units(7) || again.Held != 0 {
		t.Fatalf("duplicate %+v", again)
	}
	sameRecord(t, "duplicate's record", again.Record, first.Record)
	wantBalance(t, s, "u1", units(7))
	checkLedger(t, s, "u1", 1)
}

// testChargeConcurrentSameKey charges one key from 100 goroutines at once:
// one record, the balance moved once. It runs a few rounds: the first warms
// the connection pool, so that later rounds really race.
func testChargeConcurrentSameKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(1000))
	const (
		n      = 100
		rounds = 4
	)
	for round := range rounds {
		key := fmt.Sprintf("same-%d", round)
		var (
			wg      sync.WaitGroup
			results [n]store.ChargeResult
			errs    [n]error
		)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.Charge(ctx, store.Record{UserID: "u1", Key: key, Cost: units(1), InputTokens: int64(i)})
			})
		}
		close(start)
		wg.Wait()
		want := units(999 - int64(round))
		fresh := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d, charge %d: %v", round, i, errs[i])
			}
			if !results[i].Duplicate {
				fresh++
			}
			if results[i].Record.ID != results[0].Record.ID || results[i].Record.Cost != units(1) {
				t.Fatalf("round %d: charge %d saw record %+v, charge 0 saw %+v", round, i, results[i].Record, results[0].Record)
			}
			if results[i].Balance != want {
				t.Fatalf("round %d, charge %d: balance %v, want %v", round, i, results[i].Balance, want)
			}
		}
		if fresh != 1 {
			t.Fatalf("round %d: %d charges were not duplicates, want 1", round, fresh)
		}
		wantBalance(t, s, "u1", want)
		checkLedger(t, s, "u1", int64(round)+1)
	}
}

func testChargeBlockedUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(1))
	if err := s.SetBlocked(ctx, "u1", true); err != nil {
		t.Fatal(err)
	}
	res, err := s.Charge(ctx, store.Record{UserID: "u1", Cost: units(2)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Balance != units(-1) {
		t.Fatalf("blocked user's charge: %+v", res)
	}
	checkLedger(t, s, "u1", 1)
}

func reserve(t *testing.T, s store.Store, user, key string, cost money.Amount, rule store.ReserveRule) store.ReserveResult {
	t.Helper()
	res, err := s.Reserve(t.Context(), store.Reservation{Record: store.Record{UserID: user, Key: key, Cost: cost, Model: "m"}, Rule: rule})
	if err != nil {
		t.Fatalf("Reserve(%s, %s, %v): %v", user, key, cost, err)
	}
	return res
}

func wantPlaced(t *testing.T, res store.ReserveResult, bal money.Amount) {
	t.Helper()
	if !res.Placed || res.Existing || res.Blocked || res.Balance != bal ||
		res.Record.ID <= 0 || res.Record.Status != store.StatusPending || res.Record.BalanceAfter != bal {
		t.Fatalf("Reserve = %+v, want placed with balance %v", res, bal)
	}
}

func wantRefused(t *testing.T, res store.ReserveResult, bal money.Amount) {
	t.Helper()
	if res.Placed || res.Existing || res.Blocked || res.Balance != bal {
		t.Fatalf("Reserve = %+v, want refused with balance %v", res, bal)
	}
}

func testReserveRules(t *testing.T, s store.Store) {
	ctx := t.Context()

	// IfPositive: allowed above zero even when it goes below; refused at or below zero.
	newUser(t, s, "pos", units(1))
	wantPlaced(t, reserve(t, s, "pos", "p1", units(5), store.ReserveIfPositive), units(-4))
	wantRefused(t, reserve(t, s, "pos", "p2", units(1), store.ReserveIfPositive), units(-4))
	if _, err := s.SetBalance(ctx, "pos", 0, "admin", ""); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, reserve(t, s, "pos", "p3", 1, store.ReserveIfPositive), 0)
	if _, err := s.SetBalance(ctx, "pos", 1, "admin", ""); err != nil {
		t.Fatal(err)
	}
	wantPlaced(t, reserve(t, s, "pos", "p4", units(1), store.ReserveIfPositive), 1-units(1))
	checkLedger(t, s, "pos", 2)

	// IfCovered: only when the balance covers the cost.
	newUser(t, s, "cov", units(5))
	wantRefused(t, reserve(t, s, "cov", "c1", units(5)+1, store.ReserveIfCovered), units(5))
	wantPlaced(t, reserve(t, s, "cov", "c2", units(5), store.ReserveIfCovered), 0)
	wantRefused(t, reserve(t, s, "cov", "c3", 1, store.ReserveIfCovered), 0)
	wantPlaced(t, reserve(t, s, "cov", "c4", 0, store.ReserveIfCovered), 0)
	checkLedger(t, s, "cov", 2)
	// A refused reservation leaves no record behind.
	if _, err := s.RecordByKey(ctx, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused reservation left a record: %v", err)
	}

	// Always: whatever the balance.
	newUser(t, s, "alw", 0)
	wantPlaced(t, reserve(t, s, "alw", "a1", units(3), store.ReserveAlways), units(-3))
	wantPlaced(t, reserve(t, s, "alw", "a2", units(3), store.ReserveAlways), units(-6))
	checkLedger(t, s, "alw", 2)

	// The pending record is stored as returned, expiry included.
	exp := time.Now().Add(10 * time.Minute)
	res, err := s.Reserve(ctx, store.Reservation{Rule: store.ReserveAlways, Record: store.Record{
		UserID: "alw", Key: "a3", Cost: 7, Model: "m", Nickname: "Al", Source: store.SourceFunction,
		Status:  store.StatusCompleted, // forced to pending
		Purpose: "title", ChatID: "c", MessageID: "m", InputTokens: 3, ExpiresAt: &exp,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Status != store.StatusPending || res.Record.ExpiresAt == nil ||
		res.Record.ExpiresAt.Sub(exp).Abs() > time.Millisecond || res.Record.Cost != 7 {
		t.Fatalf("pending record %+v", res.Record)
	}
	recent(t, "CreatedAt", res.Record.CreatedAt)
	sameRecord(t, "pending record", recordByKey(t, s, "a3"), res.Record)
}

func testReserveBlocked(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	if err := s.SetBlocked(ctx, "u1", true); err != nil {
		t.Fatal(err)
	}
	for _, rule := range []store.ReserveRule{store.ReserveIfPositive, store.ReserveIfCovered, store.ReserveAlways} {
		res := reserve(t, s, "u1", fmt.Sprint("b", rule), units(1), rule)
		if !res.Blocked || res.Placed || res.Existing || res.Balance != units(10) {
			t.Fatalf("rule %d on a blocked user: %+v", rule, res)
		}
	}
	checkLedger(t, s, "u1", 0)
	if err := s.SetBlocked(ctx, "u1", false); err != nil {
		t.Fatal(err)
	}
	wantPlaced(t, reserve(t, s, "u1", "b-after", units(1), store.ReserveIfCovered), units(9))
}

func testReserveExisting(t *testing.T, s store.Store) {
	newUser(t, s, "u1", units(10))
	first := reserve(t, s, "u1", "r1", units(2), store.ReserveIfCovered)
	wantPlaced(t, first, units(8))
	again := reserve(t, s, "u1", "r1", units(5), store.ReserveAlways)
	if !again.Existing || again.Placed || again.Balance != units(8) {
		t.Fatalf("second reserve %+v", again)
	}
	sameRecord(t, "existing record", again.Record, first.Record)

	// A final record with the key also makes Reserve do nothing.
	if _, err := s.Charge(t.Context(), store.Record{UserID: "u1", Key: "c1", Cost: units(1)}); err != nil {
		t.Fatal(err)
	}
	res := reserve(t, s, "u1", "c1", units(1), store.ReserveAlways)
	if !res.Existing || res.Placed || res.Record.Status != store.StatusCompleted || res.Balance != units(7) {
		t.Fatalf("reserve over a charged key %+v", res)
	}
	checkLedger(t, s, "u1", 2)
}

func testReserveThenCharge(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	exp := time.Now().Add(time.Hour)
	held, err := s.Reserve(ctx, store.Reservation{Rule: store.ReserveIfCovered, Record: store.Record{
		UserID: "u1", Key: "r1", Cost: units(2), Model: "gpt", Nickname: "Ann", Purpose: "chat",
		ChatID: "chat-9", Source: store.SourceFunction, ExpiresAt: &exp,
	}})
	if err != nil {
		t.Fatal(err)
	}
	wantPlaced(t, held, units(8))

	final := money.Amount(500_000_001) // 0.500000001 units
	res, err := s.Charge(ctx, store.Record{
		UserID: "u1", Key: "r1", Cost: final, Model: "gpt", InputTokens: 120, OutputTokens: 80,
		CachedTokens: 20, ReasoningTokens: 10, Source: store.SourceEdge, Status: store.StatusCompleted,
		MessageID: "msg-9", DurationMS: 777,
	})
	if err != nil {
		t.Fatal(err)
	}
	after := units(10) - final
	if res.Duplicate || res.Held != units(2) || res.Balance != after {
		t.Fatalf("Charge = %+v, want held 2, balance %v", res, after)
	}
	want := held.Record
	want.Cost, want.BalanceAfter, want.Status, want.ExpiresAt = final, after, store.StatusCompleted, nil
	want.InputTokens, want.OutputTokens, want.CachedTokens, want.ReasoningTokens = 120, 80, 20, 10
	want.Source, want.MessageID, want.DurationMS = store.SourceEdge, "msg-9", 777
	// Fields the charge left empty keep the pending record's values.
	sameRecord(t, "completed record", res.Record, want)
	sameRecord(t, "RecordByKey", recordByKey(t, s, "r1"), want)
	wantBalance(t, s, "u1", after)
	l := checkLedger(t, s, "u1", 1)
	if l.Charges != final {
		t.Fatalf("ledger charges %v, want %v", l.Charges, final)
	}

	// It is now final: a duplicate for Charge, existing for Reserve.
	dup, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "r1", Cost: units(1)})
	if err != nil || !dup.Duplicate || dup.Balance != after || dup.Held != 0 {
		t.Fatalf("charge after completion: %+v, %v", dup, err)
	}
	ex := reserve(t, s, "u1", "r1", units(1), store.ReserveAlways)
	if !ex.Existing || ex.Placed || ex.Balance != after {
		t.Fatalf("reserve after completion: %+v", ex)
	}
	wantBalance(t, s, "u1", after)
	checkLedger(t, s, "u1", 1)
}

func testReserveThenChargeMore(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(2))
	wantPlaced(t, reserve(t, s, "u1", "r1", units(1), store.ReserveIfPositive), units(1))
	res, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "r1", Cost: units(3)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Held != units(1) || res.Balance != units(-1) || res.Record.Cost != units(3) ||
		res.Record.Status != store.StatusCompleted || res.Record.BalanceAfter != units(-1) {
		t.Fatalf("charge above the hold: %+v", res)
	}
	checkLedger(t, s, "u1", 1)
}

func testReserveThenFail(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	held := reserve(t, s, "u1", "r1", units(4), store.ReserveIfCovered)
	wantPlaced(t, held, units(6))
	res, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "r1", Cost: 0, Status: store.StatusFailed})
	if err != nil {
		t.Fatal(err)
	}
	if res.Held != units(4) || res.Balance != units(10) || res.Record.Cost != 0 ||
		res.Record.Status != store.StatusFailed || res.Record.ID != held.Record.ID || res.Record.BalanceAfter != units(10) {
		t.Fatalf("failed charge: %+v", res)
	}
	wantBalance(t, s, "u1", units(10))
	l := checkLedger(t, s, "u1", 1)
	if l.Charges != 0 {
		t.Fatalf("ledger charges %v after a refund", l.Charges)
	}
}

// testExpiredHolds lists only lapsed pending holds, oldest first, and a
// lapsed hold settled as expired gives its money back.
func testExpiredHolds(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	hold := func(key string, expires *time.Time) {
		t.Helper()
		res, err := s.Reserve(ctx, store.Reservation{Rule: store.ReserveIfCovered,
			Record: store.Record{UserID: "u1", Model: "m", Key: key, Cost: units(1), Source: store.SourceEdge, ExpiresAt: expires}})
		if err != nil || !res.Placed {
			t.Fatalf("reserve %s: %+v %v", key, res, err)
		}
	}
	late, early, future := base.Add(2*time.Minute), base.Add(time.Minute), base.Add(2*time.Hour)
	hold("late", &late)
	hold("early", &early)
	hold("future", &future)
	hold("never", nil)
	wantBalance(t, s, "u1", units(6))
	got, err := s.ExpiredHolds(ctx, base.Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Key != "early" || got[1].Key != "late" || got[0].Cost != units(1) {
		t.Fatalf("expired holds %+v", got)
	}
	if got, _ := s.ExpiredHolds(ctx, base.Add(time.Hour), 1); len(got) != 1 {
		t.Fatalf("limit ignored: %d", len(got))
	}
	res, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "early", Status: store.StatusExpired})
	if err != nil || res.Record.Status != store.StatusExpired || res.Held != units(1) {
		t.Fatalf("settle expired: %+v %v", res, err)
	}
	wantBalance(t, s, "u1", units(7))
	if got, _ := s.ExpiredHolds(ctx, base.Add(time.Hour), 10); len(got) != 1 || got[0].Key != "late" {
		t.Fatalf("settled hold still listed: %+v", got)
	}
	// A report that arrives after its hold lapsed still charges, in full.
	res, err = s.Charge(ctx, store.Record{UserID: "u1", Key: "early", Cost: units(3), InputTokens: 5})
	if err != nil || res.Duplicate || res.Held != 0 || res.Record.Status != store.StatusCompleted || res.Record.Cost != units(3) {
		t.Fatalf("late report: %+v %v", res, err)
	}
	wantBalance(t, s, "u1", units(4))
	checkLedger(t, s, "u1", 4)
}

// testReserveThenConcurrentCharges completes one pending record from 50
// goroutines at once: one completes it, the others are duplicates. It runs
// a few rounds: the first warms the connection pool.
func testReserveThenConcurrentCharges(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(100))
	const (
		n      = 50
		rounds = 4
	)
	for round := range rounds {
		key := fmt.Sprintf("r%d", round)
		before := units(100 - 3*int64(round))
		held := reserve(t, s, "u1", key, units(10), store.ReserveIfCovered)
		wantPlaced(t, held, before-units(10))
		var (
			wg      sync.WaitGroup
			results [n]store.ChargeResult
			errs    [n]error
		)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.Charge(ctx, store.Record{UserID: "u1", Key: key, Cost: units(3), OutputTokens: int64(i)})
			})
		}
		close(start)
		wg.Wait()
		after := before - units(3)
		completed := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d, charge %d: %v", round, i, errs[i])
			}
			r := results[i]
			if r.Record.ID != held.Record.ID || r.Record.Status != store.StatusCompleted || r.Record.Cost != units(3) || r.Balance != after {
				t.Fatalf("round %d, charge %d: %+v, want balance %v", round, i, r, after)
			}
			if !r.Duplicate {
				completed++
				if r.Held != units(10) {
					t.Fatalf("round %d: completing charge held %v, want 10", round, r.Held)
				}
			} else if r.Held != 0 {
				t.Fatalf("round %d: duplicate charge %d reports held %v", round, i, r.Held)
			}
		}
		if completed != 1 {
			t.Fatalf("round %d: %d charges completed the pending record, want 1", round, completed)
		}
		wantBalance(t, s, "u1", after)
		checkLedger(t, s, "u1", int64(round)+1)
	}
}

func testReserveConcurrentOverdraw(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(1000))
	const n = 200
	var (
		wg      sync.WaitGroup
		results [n]store.ReserveResult
		errs    [n]error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = s.Reserve(ctx, store.Reservation{Rule: store.ReserveIfCovered,
				Record: store.Record{UserID: "u1", Key: fmt.Sprintf("k%d", i), Cost: units(10)}})
		})
	}
	close(start)
	wg.Wait()
	placed := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("reserve %d: %v", i, errs[i])
		}
		r := results[i]
		switch {
		case r.Placed:
			placed++
			if r.Balance < 0 || r.Record.BalanceAfter != r.Balance {
				t.Fatalf("reserve %d placed with balance %v: %+v", i, r.Balance, r)
			}
		case r.Existing || r.Blocked:
			t.Fatalf("reserve %d: %+v", i, r)
		default:
			if r.Balance < 0 || r.Balance >= units(10) {
				t.Fatalf("reserve %d refused at balance %v", i, r.Balance)
			}
		}
	}
	if placed != 100 {
		t.Fatalf("%d reservations placed, want 100", placed)
	}
	wantBalance(t, s, "u1", 0)
	l := checkLedger(t, s, "u1", 100)
	if l.Charges != units(1000) {
		t.Fatalf("ledger charges %v", l.Charges)
	}
}

func testBalanceChanges(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(5))
	c, err := s.SetBalance(ctx, "u1", units(20), "admin@example.com", "top-up")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID <= 0 || c.UserID != "u1" || c.Actor != "admin@example.com" || c.Reason != "top-up" ||
		c.OldBalance != units(5) || c.NewBalance != units(20) {
		t.Fatalf("SetBalance = %+v", c)
	}
	recent(t, "CreatedAt", c.CreatedAt)
	wantBalance(t, s, "u1", units(20))

	d, err := s.AdjustBalance(ctx, "u1", -units(7)/2, "ops", "refund")
	if err != nil {
		t.Fatal(err)
	}
	if d.ID <= c.ID || d.OldBalance != units(20) || d.NewBalance != units(20)-units(7)/2 || d.Actor != "ops" || d.Reason != "refund" {
		t.Fatalf("AdjustBalance = %+v", d)
	}
	e, err := s.AdjustBalance(ctx, "u1", 1, "ops", "")
	if err != nil {
		t.Fatal(err)
	}
	if e.NewBalance != units(20)-units(7)/2+1 || e.OldBalance != d.NewBalance {
		t.Fatalf("AdjustBalance by one nano-unit = %+v", e)
	}
	if _, err := s.Charge(ctx, store.Record{UserID: "u1", Cost: units(1)}); err != nil {
		t.Fatal(err)
	}
	l := checkLedger(t, s, "u1", 1)
	if l.Initial != units(5) || l.Adjustments != units(15)-units(7)/2+1 || l.Charges != units(1) {
		t.Fatalf("ledger %+v", l)
	}
	// Setting the balance to what it is still records the change.
	f, err := s.SetBalance(ctx, "u1", l.Balance, "admin", "noop")
	if err != nil || f.OldBalance != l.Balance || f.NewBalance != l.Balance || f.ID <= e.ID {
		t.Fatalf("no-op SetBalance = %+v, %v", f, err)
	}
	checkLedger(t, s, "u1", 1)
}

func testSetBlocked(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(1))
	for _, b := range []bool{true, true, false, true, false} {
		if err := s.SetBlocked(ctx, "u1", b); err != nil {
			t.Fatal(err)
		}
		u, err := s.User(ctx, "u1")
		if err != nil {
			t.Fatal(err)
		}
		if u.Blocked != b || u.Balance != units(1) {
			t.Fatalf("after SetBlocked(%v): %+v", b, u)
		}
	}
}

func testModelPrices(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.ModelPrice(ctx, "gpt-4o"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ModelPrice of an unknown model: %v", err)
	}
	in := store.ModelPrice{ID: "gpt-4o", Name: "GPT-4o", BaseModelID: "base-1",
		Input: units(5) / 2, Output: units(10), PerMessage: -units(1)}
	p, err := s.PutModelPrice(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.Priced, want.UpdatedAt = true, p.UpdatedAt
	if p != want {
		t.Fatalf("PutModelPrice = %+v, want %+v", p, want)
	}
	recent(t, "UpdatedAt", p.UpdatedAt)
	got, err := s.ModelPrice(ctx, "gpt-4o")
	if err != nil {
		t.Fatal(err)
	}
	if !got.UpdatedAt.Equal(p.UpdatedAt) {
		t.Fatalf("UpdatedAt %v, stored %v", got.UpdatedAt, p.UpdatedAt)
	}
	got.UpdatedAt = p.UpdatedAt
	if got != p {
		t.Fatalf("ModelPrice = %+v, want %+v", got, p)
	}

	// RecordModel leaves a priced row as it is.
	if err := s.RecordModel(ctx, "gpt-4o", "Other", ""); err != nil {
		t.Fatal(err)
	}
	if got, err = s.ModelPrice(ctx, "gpt-4o"); err != nil || got.Name != "GPT-4o" || !got.Priced ||
		got.Input != units(5)/2 || got.Output != units(10) || got.PerMessage != -units(1) || got.BaseModelID != "base-1" {
		t.Fatalf("after RecordModel over a priced row: %+v, %v", got, err)
	}

	// Updating a price; a per-message price of 0.02 units (exact).
	in.PerMessage, in.Name = units(2)/100, "GPT-4o (flat)"
	if p, err = s.PutModelPrice(ctx, in); err != nil || p.PerMessage != units(2)/100 || p.Name != "GPT-4o (flat)" || !p.Priced {
		t.Fatalf("second PutModelPrice = %+v, %v", p, err)
	}

	// RecordModel creates an unpriced row with the defaults, once.
	if err := s.RecordModel(ctx, "new-model", "New Model", "gpt-4o"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordModel(ctx, "new-model", "Renamed", ""); err != nil {
		t.Fatal(err)
	}
	got, err = s.ModelPrice(ctx, "new-model")
	if err != nil {
		t.Fatal(err)
	}
	if got.Priced || got.Name != "New Model" || got.BaseModelID != "gpt-4o" || got.Input != 0 || got.Output != 0 || got.PerMessage >= 0 {
		t.Fatalf("recorded model %+v", got)
	}
	recent(t, "UpdatedAt", got.UpdatedAt)

	// Pricing it makes it priced, whatever Priced says.
	p, err = s.PutModelPrice(ctx, store.ModelPrice{ID: "new-model", Name: "New Model", Input: 150, Output: 600, PerMessage: -1, Priced: false})
	if err != nil || !p.Priced || p.Input != 150 || p.Output != 600 || p.PerMessage != -1 {
		t.Fatalf("pricing a recorded model: %+v, %v", p, err)
	}
}

func testRecordByKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(1))
	if _, err := s.RecordByKey(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RecordByKey before: %v", err)
	}
	// Records without a key are not found by the empty key (stored as NULL).
	for range 3 {
		if _, err := s.Charge(ctx, store.Record{UserID: "u1", Cost: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RecordByKey(ctx, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RecordByKey(\"\"): %v", err)
	}
	res, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "k", Cost: 2, Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, "RecordByKey", recordByKey(t, s, "k"), res.Record)
	if _, err := s.RecordByKey(ctx, "K"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("keys must be case-sensitive: %v", err)
	}
	checkLedger(t, s, "u1", 4)
}

// testLedgerInvariant runs a random mix of every write on several users
// from 16 goroutines and checks each user's ledger adds up.
func testLedgerInvariant(t *testing.T, s store.Store) {
	ctx := t.Context()
	const (
		users   = 5
		workers = 16
		ops     = 40
	)
	for i := range users {
		newUser(t, s, fmt.Sprintf("u%d", i), money.Amount(rand.Int64N(int64(units(20)))))
	}
	var (
		wg     sync.WaitGroup
		failed atomic.Pointer[error]
		seed   = uint64(time.Now().UnixNano())
	)
	fail := func(err error) { failed.CompareAndSwap(nil, &err) }
	t.Logf("seed %d", seed)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range ops {
				if failed.Load() != nil {
					return
				}
				if err := randomOp(ctx, s, rng, users); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatal(*err)
	}
	var records int64
	for i := range users {
		l := checkLedger(t, s, fmt.Sprintf("u%d", i), -1)
		records += l.Records
	}
	if records == 0 {
		t.Fatal("no records written")
	}
}

func randomOp(ctx context.Context, s store.Store, rng *rand.Rand, users int) error {
	u := rng.IntN(users)
	user := fmt.Sprintf("u%d", u)
	// Keys belong to one user; a few per user, so that charges and
	// reservations of one key collide.
	key := fmt.Sprintf("u%d-k%d", u, rng.IntN(8))
	cost := money.Amount(rng.Int64N(int64(units(3))))
	var (
		err  error
		name string
	)
	switch rng.IntN(10) {
	case 0, 1:
		name = "Charge"
		_, err = s.Charge(ctx, store.Record{UserID: user, Cost: cost, InputTokens: 1})
	case 2, 3:
		name = "Charge with key"
		_, err = s.Charge(ctx, store.Record{UserID: user, Key: key, Cost: cost, Status: store.StatusCompleted})
	case 4:
		name = "failed Charge with key"
		_, err = s.Charge(ctx, store.Record{UserID: user, Key: key, Cost: 0, Status: store.StatusFailed})
	case 5, 6:
		name = "Reserve"
		_, err = s.Reserve(ctx, store.Reservation{Record: store.Record{UserID: user, Key: key, Cost: cost},
			Rule: store.ReserveRule(rng.IntN(3))})
	case 7:
		name = "AdjustBalance"
		_, err = s.AdjustBalance(ctx, user, money.Amount(rng.Int64N(int64(units(4))))-units(2), "ops", "random")
	case 8:
		name = "SetBalance"
		_, err = s.SetBalance(ctx, user, money.Amount(rng.Int64N(int64(units(10)))), "admin", "random")
	case 9:
		name = "SetBlocked"
		err = s.SetBlocked(ctx, user, rng.IntN(2) == 0)
	}
	if err != nil {
		return fmt.Errorf("%s on %s (key %s): %w", name, user, key, err)
	}
	return nil
}
