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
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
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
		{"Probe", testProbe},
		{"ReserveExisting", testReserveExisting},
		{"ReserveThenCharge", testReserveThenCharge},
		{"ReserveThenChargeMore", testReserveThenChargeMore},
		{"ReserveThenFail", testReserveThenFail},
		{"ExpiredHolds", testExpiredHolds},
		{"ReleaseHold", testReleaseHold},
		{"MessageUsage", testMessageUsage},
		{"ReserveThenConcurrentCharges", testReserveThenConcurrentCharges},
		{"ReserveConcurrentOverdraw", testReserveConcurrentOverdraw},
		{"BalanceChanges", testBalanceChanges},
		{"SetBlocked", testSetBlocked},
		{"ModelPrices", testModelPrices},
		{"RecordByKey", testRecordByKey},
		{"LedgerInvariant", testLedgerInvariant},
		{"ListUsersSort", testListUsersSort},
		{"ListUsersSearch", testListUsersSearch},
		{"InvalidQueries", testInvalidQueries},
		{"ListRecords", testListRecords},
		{"ListRecordsUserSearch", testListRecordsUserSearch},
		{"EachRecord", testEachRecord},
		{"DeleteUser", testDeleteUser},
		{"BalanceChangesList", testBalanceChangesList},
		{"UsageBetween", testUsageBetween},
		{"UsageRollups", testUsageRollups},
		{"UsageBreakdown", testUsageBreakdown},
		{"ListModelPrices", testListModelPrices},
		{"ImportFailure", testImportFailure},
		{"AdoptByKey", testAdoptByKey},
		{"AdoptByChat", testAdoptByChat},
		{"AdoptNewChat", testAdoptNewChat},
		{"RekeyHold", testRekeyHold},
		{"ChargeCovered", testChargeCovered},
		{"AdoptRace", testAdoptRace},
		{"OverflowRefused", testOverflowRefused},
		{"AggregatesAtBounds", testAggregatesAtBounds},
		{"ImportKeep", testImportKeep},
		{"LimitUsage", testLimitUsage},
		{"ReserveOverLimit", testReserveOverLimit},
		{"ReserveLimitConcurrent", testReserveLimitConcurrent},
		{"GrantsApplyOnce", testGrantsApplyOnce},
		{"LimitsStored", testLimitsStored},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
	// Tests that need more than one store.
	multi := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) store.Store)
	}{
		{"ExportImport", testExportImport},
	}
	for _, tc := range multi {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open)
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

	// CoveredOrRest: the cost when covered, else the rest of a positive
	// balance, recorded as the hold's cost; nothing at zero.
	newUser(t, s, "rest", units(5))
	wantPlaced(t, reserve(t, s, "rest", "r1", units(3), store.ReserveCoveredOrRest), units(2))
	part := reserve(t, s, "rest", "r2", units(3), store.ReserveCoveredOrRest)
	wantPlaced(t, part, 0)
	if part.Record.Cost != units(2) || recordByKey(t, s, "r2").Cost != units(2) {
		t.Fatalf("a hold of the rest: %+v", part.Record)
	}
	wantRefused(t, reserve(t, s, "rest", "r3", 1, store.ReserveCoveredOrRest), 0)
	checkLedger(t, s, "rest", 2)

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

// testProbe: the probe write succeeds on a working store, again and again,
// and leaves users and records alone.
func testProbe(t *testing.T, s store.Store) {
	for range 3 {
		if err := s.Probe(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if users, n, err := s.ListUsers(t.Context(), store.UserQuery{}); err != nil || n != 0 || len(users) != 0 {
		t.Fatalf("the probe left users: %v %d %v", users, n, err)
	}
}

func testReserveBlocked(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	if err := s.SetBlocked(ctx, "u1", true); err != nil {
		t.Fatal(err)
	}
	for _, rule := range []store.ReserveRule{store.ReserveIfPositive, store.ReserveIfCovered, store.ReserveAlways, store.ReserveCoveredOrRest} {
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
	// …also when the hold would now be refused: for its balance, or
	// for a limit with no room left (the first hold used it).
	refused := reserve(t, s, "u1", "r1", units(50), store.ReserveIfCovered)
	if !refused.Existing || refused.Placed || refused.Balance != units(8) {
		t.Fatalf("reserve of an existing key over the balance %+v", refused)
	}
	over, err := s.Reserve(t.Context(), store.Reservation{Rule: store.ReserveIfCovered,
		Limits: []store.LimitCheck{{Measure: "messages", Amount: 1, From: time.Now().Add(-time.Hour)}},
		Record: store.Record{UserID: "u1", Key: "r1", Cost: units(1)}})
	if err != nil || !over.Existing || over.Placed || over.OverLimit != 0 || over.Balance != units(8) {
		t.Fatalf("reserve of an existing key over a limit %+v, %v", over, err)
	}
	// Many holds with one new key at once: one is placed, the others
	// return it, and the balance is taken once.
	var wg sync.WaitGroup
	results := make([]store.ReserveResult, 16)
	errs := make([]error, 16)
	for i := range results {
		wg.Go(func() {
			results[i], errs[i] = s.Reserve(t.Context(), store.Reservation{Rule: store.ReserveIfCovered,
				Record: store.Record{UserID: "u1", Key: "same", Cost: units(1)}})
		})
	}
	wg.Wait()
	placed := 0
	for i, r := range results {
		switch {
		case errs[i] != nil:
			t.Fatalf("concurrent reserve %d: %v", i, errs[i])
		case r.Placed:
			placed++
		case !r.Existing || r.Record.Key != "same":
			t.Fatalf("concurrent reserve %d: %+v", i, r)
		}
	}
	if placed != 1 {
		t.Fatalf("%d of 16 holds with one key placed", placed)
	}
	wantBalance(t, s, "u1", units(7))
	if _, err := s.ReleaseHold(t.Context(), "same"); err != nil {
		t.Fatal(err)
	}

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

// testReleaseHold removes only pending records and gives their money back.
func testReleaseHold(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	wantPlaced(t, reserve(t, s, "u1", "h1", units(4), store.ReserveIfCovered), units(6))
	wantPlaced(t, reserve(t, s, "u1", "h2", units(1), store.ReserveIfCovered), units(5))
	if _, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "done", Cost: units(2), Model: "m"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		want bool
	}{{"h1", true}, {"h1", false}, {"done", false}, {"nothing", false}, {"", false}} {
		got, err := s.ReleaseHold(ctx, tc.key)
		if err != nil || got != tc.want {
			t.Fatalf("ReleaseHold(%q) = %v, %v; want %v", tc.key, got, err, tc.want)
		}
	}
	wantBalance(t, s, "u1", units(7)) // 10 − 1 held − 2 charged
	if _, err := s.RecordByKey(ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("released hold still there: %v", err)
	}
	if r := recordByKey(t, s, "done"); r.Status != store.StatusCompleted || r.Cost != units(2) {
		t.Fatalf("final record changed: %+v", r)
	}
	checkLedger(t, s, "u1", 2)
	// The key is free again: a later charge with it takes the full cost.
	if res, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "h1", Cost: units(3), Model: "m"}); err != nil || res.Held != 0 || res.Balance != units(4) {
		t.Fatalf("charge after release: %+v, %v", res, err)
	}
}

// testMessageUsage sums one source's records of one message, pending ones
// included, failed and expired ones and other messages and sources not.
func testMessageUsage(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(100))
	charge := func(key, source, chat, msg, status string, in, out, cached, reasoning int64, cost money.Amount) {
		t.Helper()
		if _, err := s.Charge(ctx, store.Record{UserID: "u1", Key: key, Source: source, ChatID: chat, MessageID: msg,
			Status: status, Model: "gpt", InputTokens: in, OutputTokens: out, CachedTokens: cached, ReasoningTokens: reasoning, Cost: cost}); err != nil {
			t.Fatal(err)
		}
	}
	charge("p1", store.SourceProvider, "c1", "m1", "", 100, 10, 40, 3, units(1))
	charge("p2", store.SourceProvider, "c1", "m1", store.StatusCancelled, 120, 5, 0, 0, units(2))
	charge("p3", store.SourceProvider, "c1", "m1", store.StatusFailed, 999, 999, 0, 0, 0)
	charge("p4", store.SourceProvider, "c2", "m1", "", 999, 999, 0, 0, units(5))
	charge("p5", store.SourceProvider, "c1", "m2", "", 999, 999, 0, 0, units(5))
	charge("e1", store.SourceEdge, "c1", "m1", "", 999, 999, 0, 0, units(5))
	if _, err := s.Reserve(ctx, store.Reservation{Rule: store.ReserveAlways, Record: store.Record{UserID: "u1", Key: "p6",
		Source: store.SourceProvider, ChatID: "c1", MessageID: "m1", Model: "gpt", Cost: units(3)}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.MessageUsage(ctx, store.SourceProvider, "c1", "m1")
	want := store.MessageUsage{Records: 3, Model: "gpt", InputTokens: 220, OutputTokens: 15, CachedTokens: 40, ReasoningTokens: 3, Cost: units(6)}
	if err != nil || got != want {
		t.Fatalf("MessageUsage = %+v, %v; want %+v", got, err, want)
	}
	if got, err := s.MessageUsage(ctx, store.SourceProvider, "c9", "m9"); err != nil || got != (store.MessageUsage{}) {
		t.Fatalf("MessageUsage of nothing = %+v, %v", got, err)
	}
	// API calls have no chat id.
	charge("p7", store.SourceProvider, "", "m7", "", 1, 2, 0, 0, units(1))
	if got, err := s.MessageUsage(ctx, store.SourceProvider, "", "m7"); err != nil || got.Records != 1 || got.OutputTokens != 2 {
		t.Fatalf("MessageUsage without chat = %+v, %v", got, err)
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
	testReserveConcurrent(t, s, store.ReserveIfCovered)
	t.Run("rest", func(t *testing.T) { testReserveConcurrent(t, s, store.ReserveCoveredOrRest) })
}

// testReserveConcurrent: 200 holds of 10 race for a balance of 1000 (plus
// 5 with ReserveCoveredOrRest, which one hold takes): 100 full holds are
// placed (and one of the rest), and the balance ends at zero.
func testReserveConcurrent(t *testing.T, s store.Store, rule store.ReserveRule) {
	ctx := t.Context()
	user, start0 := "u1", units(1000)
	if rule == store.ReserveCoveredOrRest {
		user, start0 = "u2", units(1005)
	}
	newUser(t, s, user, start0)
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
			results[i], errs[i] = s.Reserve(ctx, store.Reservation{Rule: rule,
				Record: store.Record{UserID: user, Key: fmt.Sprintf("%s-k%d", user, i), Cost: units(10)}})
		})
	}
	close(start)
	wg.Wait()
	placed, rest := 0, 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("reserve %d: %v", i, errs[i])
		}
		r := results[i]
		switch {
		case r.Placed && r.Record.Cost != units(10):
			rest++
			if r.Record.Cost != units(5) || r.Balance != 0 {
				t.Fatalf("reserve %d held the rest %v, balance %v", i, r.Record.Cost, r.Balance)
			}
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
	wantRest := 0
	if rule == store.ReserveCoveredOrRest {
		wantRest = 1
	}
	if placed != 100 || rest != wantRest {
		t.Fatalf("%d full reservations and %d of the rest placed, want 100 and %d", placed, rest, wantRest)
	}
	wantBalance(t, s, user, 0)
	l := checkLedger(t, s, user, int64(100+wantRest))
	if l.Charges != start0 {
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
	// A row recorded without a base takes the one named later, once; a
	// base it has is kept.
	if err := s.RecordModel(ctx, "late-base", "Late", ""); err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{"gpt-4o", "other"} {
		if err := s.RecordModel(ctx, "late-base", "Late", base); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.ModelPrice(ctx, "late-base"); err != nil || got.BaseModelID != "gpt-4o" || got.Priced {
		t.Fatalf("a base named later: %+v %v", got, err)
	}

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

// ---- Admin queries: lists, usage, backups ----

// foldASCII is the case folding the stores sort and search text with:
// ASCII letters only (SQLite's NOCASE), then byte order.
func foldASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func normTime(tm time.Time) time.Time { return time.Unix(0, tm.UnixNano()).UTC() }

func normUser(u store.User) store.User {
	u.CreatedAt, u.UpdatedAt = normTime(u.CreatedAt), normTime(u.UpdatedAt)
	return u
}

func normChange(c store.BalanceChange) store.BalanceChange {
	c.CreatedAt = normTime(c.CreatedAt)
	return c
}

func normPrice(p store.ModelPrice) store.ModelPrice {
	p.UpdatedAt = normTime(p.UpdatedAt)
	return p
}

func mapAll[T any](in []T, f func(T) T) []T {
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func userIDs(us []store.User) []string {
	ids := make([]string, len(us))
	for i, u := range us {
		ids[i] = u.ID
	}
	return ids
}

func recordIDs(rs []store.Record) []int64 {
	ids := make([]int64, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids
}

func listUsers(t *testing.T, s store.Store, q store.UserQuery) ([]store.User, int64) {
	t.Helper()
	us, total, err := s.ListUsers(t.Context(), q)
	if err != nil {
		t.Fatalf("ListUsers(%+v): %v", q, err)
	}
	return us, total
}

func listRecords(t *testing.T, s store.Store, q store.RecordQuery) ([]store.Record, int64) {
	t.Helper()
	rs, total, err := s.ListRecords(t.Context(), q)
	if err != nil {
		t.Fatalf("ListRecords(%+v): %v", q, err)
	}
	return rs, total
}

func eachRecord(t *testing.T, s store.Store, q store.RecordQuery) []store.Record {
	t.Helper()
	out := []store.Record{}
	if err := s.EachRecord(t.Context(), q, func(r store.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("EachRecord(%+v): %v", q, err)
	}
	return out
}

func sameRecords(t *testing.T, what string, got, want []store.Record) {
	t.Helper()
	if g, w := mapAll(got, norm), mapAll(want, norm); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got  ids %v\n want ids %v\n got  %+v\n want %+v", what, recordIDs(got), recordIDs(want), g, w)
	}
}

// sortedBy returns a copy of rows sorted by cmp with the tie-breaker, all
// reversed when desc.
func sortedBy[T any](rows []T, cmp, tie func(a, b T) int, desc bool) []T {
	out := slices.Clone(rows)
	slices.SortStableFunc(out, func(a, b T) int {
		c := cmp(a, b)
		if c == 0 {
			c = tie(a, b)
		}
		if desc {
			return -c
		}
		return c
	})
	return out
}

// userOrder is the expected order of each of store.UserSortFields.
var userOrder = map[string]func(a, b store.User) int{
	"created_at": func(a, b store.User) int { return a.CreatedAt.Compare(b.CreatedAt) },
	"balance":    func(a, b store.User) int { return cmp.Compare(a.Balance, b.Balance) },
	"name":       func(a, b store.User) int { return strings.Compare(foldASCII(a.Name), foldASCII(b.Name)) },
	"email":      func(a, b store.User) int { return strings.Compare(foldASCII(a.Email), foldASCII(b.Email)) },
	"role":       func(a, b store.User) int { return strings.Compare(foldASCII(a.Role), foldASCII(b.Role)) },
}

func byUserID(a, b store.User) int { return strings.Compare(a.ID, b.ID) }

// testListUsersSort pages through users sorted by every allowed field,
// both ways: text case-insensitively, ties by id.
func testListUsersSort(t *testing.T, s store.Store) {
	ctx := t.Context()
	fixture := []struct {
		id, name, email, role string
		balance               money.Amount
	}{
		{"u3", "alice", "Zed@example.com", "user", units(5)},
		{"u1", "Bob", "amy@example.com", "Admin", -units(2)},
		{"u5", "carol", "bo@example.com", "user", units(7)},
		{"u2", "Dave", "Cy@example.com", "admin", 1},
		{"u4", "eve", "dan@example.com", "viewer", 0},
	}
	var all []store.User
	for _, f := range fixture {
		if _, err := s.UpsertUser(ctx, store.UserInfo{ID: f.id, Name: f.name, Email: f.email, Role: f.role}, f.balance); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range fixture {
		u, err := s.User(ctx, f.id)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, u)
	}

	// The default: created_at ascending, 20 a page.
	got, total := listUsers(t, s, store.UserQuery{})
	want := sortedBy(all, userOrder["created_at"], byUserID, false)
	if total != 5 || !reflect.DeepEqual(mapAll(got, normUser), mapAll(want, normUser)) {
		t.Fatalf("default ListUsers = %v (total %d), want %v", userIDs(got), total, userIDs(want))
	}

	for _, field := range store.UserSortFields {
		order, ok := userOrder[field]
		if !ok {
			t.Fatalf("the contract has no expected order for user sort field %q", field)
		}
		for _, desc := range []bool{false, true} {
			want := userIDs(sortedBy(all, order, byUserID, desc))
			var paged []string
			for page := 1; page <= 4; page++ {
				us, total := listUsers(t, s, store.UserQuery{Page: page, PageSize: 2, SortField: field, Descending: desc})
				if total != 5 {
					t.Fatalf("sort %s desc=%v page %d: total %d, want 5", field, desc, page, total)
				}
				if wantLen := min(2, max(0, 5-2*(page-1))); len(us) != wantLen {
					t.Fatalf("sort %s desc=%v page %d: %d users, want %d", field, desc, page, len(us), wantLen)
				}
				paged = append(paged, userIDs(us)...)
			}
			if !slices.Equal(paged, want) {
				t.Fatalf("sort %s desc=%v: paged %v, want %v", field, desc, paged, want)
			}
		}
	}
	// Page 0 is page 1.
	p0, _ := listUsers(t, s, store.UserQuery{Page: 0, PageSize: 3, SortField: "balance"})
	p1, _ := listUsers(t, s, store.UserQuery{Page: 1, PageSize: 3, SortField: "balance"})
	if !slices.Equal(userIDs(p0), userIDs(p1)) || len(p0) != 3 {
		t.Fatalf("page 0 %v, page 1 %v", userIDs(p0), userIDs(p1))
	}
}

// testListUsersSearch finds users by a case-insensitive substring of the
// name or the email, wildcards taken literally, and filters blocked ones.
func testListUsersSearch(t *testing.T, s store.Store) {
	ctx := t.Context()
	fixture := []store.UserInfo{
		{ID: "s1", Name: "Ann Lee", Email: "ann@example.com"},
		{ID: "s2", Name: "100% Real", Email: "real@example.com"},
		{ID: "s3", Name: "Bob", Email: "b_o_b@example.org"},
		{ID: "s4", Name: "Carl", Email: "bxoxb@example.org"},
		{ID: "s5", Name: `back\slash`, Email: "slash@example.com"},
		{ID: "s6", Name: "1000 Real", Email: "thousand@example.com"},
		{ID: "s7", Name: "ANNA", Email: "x@EXAMPLE.NET"},
	}
	for _, u := range fixture {
		if _, err := s.UpsertUser(ctx, u, units(1)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(q store.UserQuery, want ...string) {
		t.Helper()
		q.PageSize = 500
		us, total := listUsers(t, s, q)
		got := userIDs(us)
		slices.Sort(got)
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(got, want) || total != int64(len(want)) {
			t.Fatalf("search %q blocked %v: %v (total %d), want %v", q.Search, q.Blocked, got, total, want)
		}
	}
	check(store.UserQuery{}, "s1", "s2", "s3", "s4", "s5", "s6", "s7")
	check(store.UserQuery{Search: "ann"}, "s1", "s7")
	check(store.UserQuery{Search: "ANN"}, "s1", "s7")
	check(store.UserQuery{Search: "aNn lEe"}, "s1")
	check(store.UserQuery{Search: "100%"}, "s2")
	check(store.UserQuery{Search: "%"}, "s2")
	check(store.UserQuery{Search: "b_o"}, "s3")
	check(store.UserQuery{Search: "_"}, "s3")
	check(store.UserQuery{Search: `k\s`}, "s5")
	check(store.UserQuery{Search: `\`}, "s5")
	check(store.UserQuery{Search: "EXAMPLE.ORG"}, "s3", "s4")
	check(store.UserQuery{Search: "example.net"}, "s7")
	check(store.UserQuery{Search: "nobody"})
	check(store.UserQuery{Search: "'; DROP TABLE users; --"})

	yes, no := true, false
	for _, id := range []string{"s2", "s3"} {
		if err := s.SetBlocked(ctx, id, true); err != nil {
			t.Fatal(err)
		}
	}
	check(store.UserQuery{Blocked: &yes}, "s2", "s3")
	check(store.UserQuery{Blocked: &no}, "s1", "s4", "s5", "s6", "s7")
	check(store.UserQuery{Blocked: &yes, Search: "B_O"}, "s3")
	check(store.UserQuery{Blocked: &no, Search: "b_o"})
	check(store.UserQuery{Blocked: &no, Search: "real"}, "s6")
	us, _ := listUsers(t, s, store.UserQuery{Blocked: &yes})
	for _, u := range us {
		if !u.Blocked {
			t.Fatalf("blocked filter returned %+v", u)
		}
	}
}

// testInvalidQueries refuses sort fields outside the lists (an SQL
// injection among them) and pages out of range, and changes nothing.
func testInvalidQueries(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(1))
	if _, err := s.Charge(ctx, store.Record{UserID: "u1", Cost: 1, Model: "m"}); err != nil {
		t.Fatal(err)
	}
	invalid := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrInvalidQuery) {
			t.Fatalf("%s: err = %v, want ErrInvalidQuery", what, err)
		}
	}
	for _, q := range []store.UserQuery{
		{SortField: "balance; DROP TABLE users"},
		{SortField: "balance; DROP TABLE users", Descending: true},
		{SortField: "password"},
		{SortField: "id"},
		{SortField: "Balance"},
		{SortField: "balance DESC"},
		{SortField: "cost"}, // a record field
		{PageSize: maxPageSizeForTests + 1},
		{PageSize: -1},
		{Page: -1},
	} {
		_, _, err := s.ListUsers(ctx, q)
		invalid(fmt.Sprintf("ListUsers(%+v)", q), err)
	}
	for _, q := range []store.RecordQuery{
		{SortField: "cost; DROP TABLE usage_records"},
		{SortField: "1"},
		{SortField: "id"},
		{SortField: "balance"}, // a user field
		{SortField: "created_at DESC"},
		{PageSize: maxPageSizeForTests + 1},
		{PageSize: -5},
		{Page: -1},
	} {
		_, _, err := s.ListRecords(ctx, q)
		invalid(fmt.Sprintf("ListRecords(%+v)", q), err)
		if q.SortField != "" {
			called := false
			err := s.EachRecord(ctx, q, func(store.Record) error { called = true; return nil })
			invalid(fmt.Sprintf("EachRecord(%+v)", q), err)
			if called {
				t.Fatalf("EachRecord(%+v) called fn", q)
			}
		}
	}
	// The limits themselves are fine.
	if _, total := listUsers(t, s, store.UserQuery{PageSize: maxPageSizeForTests, Page: 1}); total != 1 {
		t.Fatalf("total %d", total)
	}
	if _, total := listUsers(t, s, store.UserQuery{PageSize: 1, Page: 1000}); total != 1 {
		t.Fatalf("total %d", total)
	}
	// The tables are still there.
	if u, err := s.User(ctx, "u1"); err != nil || u.Balance != units(1)-1 {
		t.Fatalf("after the attempts: %+v, %v", u, err)
	}
	if rs, total := listRecords(t, s, store.RecordQuery{}); total != 1 || len(rs) != 1 {
		t.Fatalf("records after the attempts: %d, %d", len(rs), total)
	}
	checkLedger(t, s, "u1", 1)
}

// maxPageSizeForTests is the largest page the contract allows.
const maxPageSizeForTests = 500

// recordOrder is the expected order of each of store.RecordSortFields.
var recordOrder = map[string]func(a, b store.Record) int{
	"created_at":    func(a, b store.Record) int { return a.CreatedAt.Compare(b.CreatedAt) },
	"cost":          func(a, b store.Record) int { return cmp.Compare(a.Cost, b.Cost) },
	"input_tokens":  func(a, b store.Record) int { return cmp.Compare(a.InputTokens, b.InputTokens) },
	"output_tokens": func(a, b store.Record) int { return cmp.Compare(a.OutputTokens, b.OutputTokens) },
	"model":         func(a, b store.Record) int { return strings.Compare(foldASCII(a.Model), foldASCII(b.Model)) },
	"user_id":       func(a, b store.Record) int { return strings.Compare(foldASCII(a.UserID), foldASCII(b.UserID)) },
	"nickname":      func(a, b store.Record) int { return strings.Compare(foldASCII(a.Nickname), foldASCII(b.Nickname)) },
	"balance_after": func(a, b store.Record) int { return cmp.Compare(a.BalanceAfter, b.BalanceAfter) },
}

func byRecordID(a, b store.Record) int { return cmp.Compare(a.ID, b.ID) }

// recordsBase is the time of the first record of recordFixture.
var recordsBase = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// recordFixture writes records of three users with ties in most fields,
// and returns them as written.
func recordFixture(t *testing.T, s store.Store) []store.Record {
	ctx := t.Context()
	for _, id := range []string{"ua", "Ub", "uc"} {
		newUser(t, s, id, units(100))
	}
	specs := []struct {
		user, model, nick string
		in, out           int64
		cost              money.Amount
		at                time.Duration
		pending           bool
	}{
		{"ua", "m1", "ann", 10, 5, units(1), 0, false},
		{"Ub", "M2", "Bob", 20, 5, units(3), time.Minute, false},
		{"uc", "m3", "cy", 10, 7, units(2), 2 * time.Minute, false},
		{"ua", "m2", "Ann", 30, 1, units(1), 2 * time.Minute, false}, // same time as the one before
		{"Ub", "m1", "bob", 5, 9, units(5), 3 * time.Minute, false},
		{"uc", "M2", "Cy", 10, 5, units(4), 4 * time.Minute, true},
		{"ua", "m3", "ann", 40, 2, units(6), 5 * time.Minute, false},
		{"Ub", "m2", "BOB", 15, 3, units(2), 5*time.Minute + time.Millisecond, false},
		{"uc", "m1", "cy", 25, 8, units(7), 6 * time.Minute, false},
	}
	var recs []store.Record
	for i, sp := range specs {
		r := store.Record{UserID: sp.user, Model: sp.model, Nickname: sp.nick, InputTokens: sp.in, OutputTokens: sp.out,
			Cost: sp.cost, CreatedAt: recordsBase.Add(sp.at), Source: store.SourceFunction, Key: fmt.Sprintf("rec-%d", i)}
		if sp.pending {
			res, err := s.Reserve(ctx, store.Reservation{Record: r, Rule: store.ReserveAlways})
			if err != nil || !res.Placed {
				t.Fatalf("Reserve %d: %+v, %v", i, res, err)
			}
			recs = append(recs, res.Record)
			continue
		}
		res, err := s.Charge(ctx, r)
		if err != nil {
			t.Fatalf("Charge %d: %v", i, err)
		}
		recs = append(recs, res.Record)
	}
	return recs
}

func filterRecords(recs []store.Record, q store.RecordQuery) []store.Record {
	var out []store.Record
	for _, r := range recs {
		if len(q.Users) > 0 && !slices.Contains(q.Users, r.UserID) {
			continue
		}
		if len(q.Models) > 0 && !slices.Contains(q.Models, r.Model) {
			continue
		}
		if !q.From.IsZero() && r.CreatedAt.Before(q.From) {
			continue
		}
		if !q.To.IsZero() && !r.CreatedAt.Before(q.To) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// recordQueries are filters over recordFixture, with how many records each
// matches (so that a filter that matches nothing cannot pass unnoticed).
func recordQueries() []struct {
	q    store.RecordQuery
	want int
} {
	at := func(d time.Duration) time.Time { return recordsBase.Add(d) }
	return []struct {
		q    store.RecordQuery
		want int
	}{
		{store.RecordQuery{}, 9},
		{store.RecordQuery{Users: []string{"ua", "uc"}}, 6},
		{store.RecordQuery{Users: []string{"Ub"}}, 3},
		{store.RecordQuery{Users: []string{"ub"}}, 0}, // ids are exact
		{store.RecordQuery{Users: []string{"nobody"}}, 0},
		{store.RecordQuery{Models: []string{"m1"}}, 3},
		{store.RecordQuery{Models: []string{"m2", "M2"}}, 4},
		{store.RecordQuery{Models: []string{"m1'); DROP TABLE usage_records; --"}}, 0},
		{store.RecordQuery{From: at(2 * time.Minute), To: at(5 * time.Minute)}, 4},                                 // [From, To)
		{store.RecordQuery{From: at(2*time.Minute + time.Nanosecond), To: at(5*time.Minute + time.Nanosecond)}, 3}, // bounds between stored instants are exact
		{store.RecordQuery{From: at(5 * time.Minute)}, 3},
		{store.RecordQuery{To: at(time.Minute)}, 1},
		{store.RecordQuery{From: at(time.Hour)}, 0},
		{store.RecordQuery{From: at(3 * time.Minute), To: at(time.Minute)}, 0},
		{store.RecordQuery{Users: []string{"ua", "Ub"}, Models: []string{"m1", "m2"}, From: at(time.Minute), To: at(6 * time.Minute)}, 3},
	}
}

// testListRecords filters records by users, models and time, and pages
// through them sorted by every allowed field, both ways.
func testListRecords(t *testing.T, s store.Store) {
	recs := recordFixture(t, s)
	for _, r := range recs {
		sameRecord(t, "fixture record", recordByKey(t, s, r.Key), r)
	}

	// The default: created_at ascending.
	got, total := listRecords(t, s, store.RecordQuery{})
	sameRecords(t, "default ListRecords", got, sortedBy(recs, recordOrder["created_at"], byRecordID, false))
	if total != 9 {
		t.Fatalf("total %d", total)
	}

	for _, tc := range recordQueries() {
		want := filterRecords(recs, tc.q)
		if len(want) != tc.want {
			t.Fatalf("fixture: %+v matches %d records, the test expects %d", tc.q, len(want), tc.want)
		}
		q := tc.q
		q.PageSize = maxPageSizeForTests
		got, total := listRecords(t, s, q)
		sameRecords(t, fmt.Sprintf("ListRecords(%+v)", tc.q), got, sortedBy(want, recordOrder["created_at"], byRecordID, false))
		if total != int64(len(want)) {
			t.Fatalf("ListRecords(%+v): total %d, want %d", tc.q, total, len(want))
		}
		// A page of two, sorted by cost descending, with the total of all.
		q.PageSize, q.Page, q.SortField, q.Descending = 2, 2, "cost", true
		got, total = listRecords(t, s, q)
		sorted := sortedBy(want, recordOrder["cost"], byRecordID, true)
		sameRecords(t, fmt.Sprintf("page 2 of %+v", q), got, sorted[min(2, len(sorted)):min(4, len(sorted))])
		if total != int64(len(want)) {
			t.Fatalf("ListRecords(%+v): total %d, want %d", q, total, len(want))
		}
	}

	for _, field := range store.RecordSortFields {
		order, ok := recordOrder[field]
		if !ok {
			t.Fatalf("the contract has no expected order for record sort field %q", field)
		}
		for _, desc := range []bool{false, true} {
			want := sortedBy(recs, order, byRecordID, desc)
			var paged []store.Record
			for page := 1; page <= 4; page++ {
				rs, total := listRecords(t, s, store.RecordQuery{Page: page, PageSize: 4, SortField: field, Descending: desc})
				if total != 9 {
					t.Fatalf("sort %s desc=%v page %d: total %d", field, desc, page, total)
				}
				paged = append(paged, rs...)
			}
			sameRecords(t, fmt.Sprintf("sort %s desc=%v", field, desc), paged, want)
		}
	}
}

// testEachRecord streams the same rows as an unpaged ListRecords, in the
// same order, whatever the page asked for, and stops at fn's error.
func testEachRecord(t *testing.T, s store.Store) {
	ctx := t.Context()
	recs := recordFixture(t, s)
	for _, tc := range recordQueries() {
		for _, sort := range []struct {
			field string
			desc  bool
		}{{"", false}, {"created_at", true}, {"model", false}, {"cost", true}, {"nickname", true}, {"user_id", false}} {
			q := tc.q
			q.SortField, q.Descending = sort.field, sort.desc
			all := q
			all.PageSize = maxPageSizeForTests
			want, _ := listRecords(t, s, all)
			if len(want) != tc.want {
				t.Fatalf("ListRecords(%+v): %d records, want %d", all, len(want), tc.want)
			}
			q.Page, q.PageSize = 3, 1 // ignored
			sameRecords(t, fmt.Sprintf("EachRecord(%+v)", q), eachRecord(t, s, q), want)
			q.PageSize = 100_000 // ignored, even out of range
			sameRecords(t, fmt.Sprintf("EachRecord(%+v)", q), eachRecord(t, s, q), want)
		}
	}
	// An error from fn stops the walk and is returned.
	stop := errors.New("stop")
	calls := 0
	err := s.EachRecord(ctx, store.RecordQuery{}, func(store.Record) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Fatalf("EachRecord with a failing fn: %v after %d calls", err, calls)
	}
	if n := len(eachRecord(t, s, store.RecordQuery{})); n != len(recs) {
		t.Fatalf("EachRecord: %d records, want %d", n, len(recs))
	}
}

// testDeleteUser removes a user with their records and balance changes,
// and nobody else's.
func testDeleteUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"u1", "u2"} {
		newUser(t, s, id, units(10))
		if _, err := s.Charge(ctx, store.Record{UserID: id, Cost: units(1), Key: id + "-k", Model: "m"}); err != nil {
			t.Fatal(err)
		}
		reserve(t, s, id, id+"-hold", units(1), store.ReserveAlways)
		if _, err := s.AdjustBalance(ctx, id, units(2), "admin", "gift"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteUser(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(ctx, "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("User after DeleteUser: %v", err)
	}
	if _, err := s.Ledger(ctx, "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Ledger after DeleteUser: %v", err)
	}
	if _, err := s.RecordByKey(ctx, "u1-k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the deleted user's record: %v", err)
	}
	if _, total := listRecords(t, s, store.RecordQuery{Users: []string{"u1"}}); total != 0 {
		t.Fatalf("the deleted user still has %d records", total)
	}
	if cs, err := s.BalanceChanges(ctx, "u1", 10); err != nil || len(cs) != 0 {
		t.Fatalf("the deleted user's balance changes: %+v, %v", cs, err)
	}
	if err := s.DeleteUser(ctx, "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteUser: %v", err)
	}
	if err := s.DeleteUser(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteUser of nobody: %v", err)
	}
	// The other user is untouched.
	wantBalance(t, s, "u2", units(10))
	checkLedger(t, s, "u2", 2)
	if cs, err := s.BalanceChanges(ctx, "u2", 10); err != nil || len(cs) != 1 {
		t.Fatalf("the other user's balance changes: %+v, %v", cs, err)
	}
	if us, total := listUsers(t, s, store.UserQuery{}); total != 1 || us[0].ID != "u2" {
		t.Fatalf("users after DeleteUser: %v", userIDs(us))
	}
	// The id can be used again, from scratch; the old key is free.
	newUser(t, s, "u1", units(3))
	if res, err := s.Charge(ctx, store.Record{UserID: "u1", Cost: units(1), Key: "u1-k"}); err != nil || res.Duplicate {
		t.Fatalf("charge after re-creating: %+v, %v", res, err)
	}
	checkLedger(t, s, "u1", 1)
}

// testBalanceChangesList lists a user's balance changes newest first, at
// most the limit (50 when none is given).
func testBalanceChangesList(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", 0)
	newUser(t, s, "u2", 0)
	var made []store.BalanceChange
	for i := range 55 {
		c, err := s.AdjustBalance(ctx, "u1", money.Amount(i+1), "admin", fmt.Sprintf("step %d", i))
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, c)
		if i%20 == 0 {
			if _, err := s.SetBalance(ctx, "u2", units(int64(i)), "ops", "other"); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.Reverse(made) // newest first
	check := func(limit, want int) {
		t.Helper()
		got, err := s.BalanceChanges(ctx, "u1", limit)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := mapAll(got, normChange), mapAll(made[:want], normChange); !reflect.DeepEqual(g, w) {
			t.Fatalf("BalanceChanges(u1, %d):\n got  %+v\n want %+v", limit, g, w)
		}
	}
	check(3, 3)
	check(1, 1)
	check(0, 50)
	check(-1, 50)
	check(55, 55)
	check(1000, 55)
	if got, err := s.BalanceChanges(ctx, "u2", 0); err != nil || len(got) != 3 || got[0].NewBalance != units(40) || got[2].NewBalance != 0 {
		t.Fatalf("BalanceChanges(u2): %+v, %v", got, err)
	}
	if got, err := s.BalanceChanges(ctx, "nobody", 10); err != nil || len(got) != 0 {
		t.Fatalf("BalanceChanges(nobody): %+v, %v", got, err)
	}
	checkLedger(t, s, "u1", 0)
}

// normUsage makes usage comparable: days as plain UTC instants, nil slices
// as empty ones.
func normUsage(u store.Usage) store.Usage {
	// The breakdowns are testUsageBreakdown's.
	u.ByPurpose, u.BySource, u.CachedTokens, u.ReasoningTokens = nil, nil, 0, 0
	u.ByDay = mapAll(u.ByDay, func(d store.DayUsage) store.DayUsage { d.Day = normTime(d.Day); return d })
	if u.ByModel == nil {
		u.ByModel = []store.ModelUsage{}
	}
	if u.ByUser == nil {
		u.ByUser = []store.UserUsage{}
	}
	return u
}

// testUsageBetween sums final records over a time range across two UTC
// days, leaving pending ones out, with the users' current names.
func testUsageBetween(t *testing.T, s store.Store) {
	ctx := t.Context()
	day0 := time.Date(2024, 3, 9, 0, 0, 0, 0, time.UTC)
	day1, day2, day3 := day0.AddDate(0, 0, 1), day0.AddDate(0, 0, 2), day0.AddDate(0, 0, 3)
	for _, id := range []string{"ua", "ub", "uc", "ud"} {
		newUser(t, s, id, units(100))
	}
	charge := func(user, model string, at time.Time, cost money.Amount, in, out int64, status string) {
		t.Helper()
		if _, err := s.Charge(ctx, store.Record{UserID: user, Model: model, Nickname: "nick-" + user, CreatedAt: at,
			Cost: cost, InputTokens: in, OutputTokens: out, Status: status}); err != nil {
			t.Fatal(err)
		}
	}
	// In a zone east of UTC, so that local days differ from UTC days.
	east := time.FixedZone("east", 5*3600)
	charge("ua", "m-a", day1.Add(time.Hour).In(east), units(3), 100, 10, "")
	charge("ub", "m-b", day2.Add(-time.Millisecond), units(2), 200, 20, "")
	charge("ua", "m-b", day2, units(1), 300, 30, "")
	charge("ub", "m-c", day2.Add(12*time.Hour), 0, 5, 0, store.StatusFailed)
	charge("ud", "m-a", day0.Add(12*time.Hour), units(4), 1, 1, "")
	charge("ud", "m-z", day3, units(1), 2, 2, "")
	// A pending hold is not usage.
	if res, err := s.Reserve(ctx, store.Reservation{Rule: store.ReserveAlways, Record: store.Record{UserID: "ua",
		Model: "m-pending", Cost: units(5), InputTokens: 1000, CreatedAt: day2.Add(13 * time.Hour), Key: "hold"}}); err != nil || !res.Placed {
		t.Fatalf("Reserve: %+v, %v", res, err)
	}
	// A user renamed after the fact shows under the new name.
	if _, err := s.UpsertUser(ctx, store.UserInfo{ID: "ua", Name: "Ann Renamed"}, 0); err != nil {
		t.Fatal(err)
	}

	tot := func(cost money.Amount, calls, in, out int64) store.UsageTotals {
		return store.UsageTotals{Cost: cost, Calls: calls, InputTokens: in, OutputTokens: out}
	}
	mu := func(model string, t store.UsageTotals) store.ModelUsage {
		return store.ModelUsage{Model: model, UsageTotals: t}
	}
	uu := func(id, name string, t store.UsageTotals) store.UserUsage {
		return store.UserUsage{UserID: id, Name: name, UsageTotals: t}
	}
	du := func(day time.Time, t store.UsageTotals) store.DayUsage {
		return store.DayUsage{Day: day, UsageTotals: t}
	}
	check := func(from, to time.Time, want store.Usage) {
		t.Helper()
		got, err := s.UsageBetween(ctx, from, to)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range got.ByDay {
			if d.Day.Location() != time.UTC {
				t.Fatalf("day %v is not in UTC", d.Day)
			}
		}
		if g, w := normUsage(got), normUsage(want); !reflect.DeepEqual(g, w) {
			t.Fatalf("UsageBetween(%v, %v):\n got  %+v\n want %+v", from, to, g, w)
		}
	}

	check(day1, day3, store.Usage{
		Total:       tot(units(6), 4, 605, 60),
		ActiveUsers: 2,
		Models:      3,
		ByModel: []store.ModelUsage{ // m-a and m-b tie on cost: by name
			mu("m-a", tot(units(3), 1, 100, 10)),
			mu("m-b", tot(units(3), 2, 500, 50)),
			mu("m-c", tot(0, 1, 5, 0)),
		},
		ByUser: []store.UserUsage{
			uu("ua", "Ann Renamed", tot(units(4), 2, 400, 40)),
			uu("ub", "Name ub", tot(units(2), 2, 205, 20)),
		},
		ByDay: []store.DayUsage{
			du(day1, tot(units(5), 2, 300, 30)),
			du(day2, tot(units(1), 2, 305, 30)),
		},
	})
	// Unbounded.
	check(time.Time{}, time.Time{}, store.Usage{
		Total:       tot(units(11), 6, 608, 63),
		ActiveUsers: 3,
		Models:      4,
		ByModel: []store.ModelUsage{
			mu("m-a", tot(units(7), 2, 101, 11)),
			mu("m-b", tot(units(3), 2, 500, 50)),
			mu("m-z", tot(units(1), 1, 2, 2)),
			mu("m-c", tot(0, 1, 5, 0)),
		},
		ByUser: []store.UserUsage{
			uu("ud", "Name ud", tot(units(5), 2, 3, 3)),
			uu("ua", "Ann Renamed", tot(units(4), 2, 400, 40)),
			uu("ub", "Name ub", tot(units(2), 2, 205, 20)),
		},
		ByDay: []store.DayUsage{
			du(day0, tot(units(4), 1, 1, 1)),
			du(day1, tot(units(5), 2, 300, 30)),
			du(day2, tot(units(1), 2, 305, 30)),
			du(day3, tot(units(1), 1, 2, 2)),
		},
	})
	// Only a start; only an end (the record at the end is left out).
	check(day2, time.Time{}, store.Usage{
		Total: tot(units(2), 3, 307, 32), ActiveUsers: 3, Models: 3,
		ByModel: []store.ModelUsage{mu("m-b", tot(units(1), 1, 300, 30)), mu("m-z", tot(units(1), 1, 2, 2)), mu("m-c", tot(0, 1, 5, 0))},
		ByUser: []store.UserUsage{uu("ua", "Ann Renamed", tot(units(1), 1, 300, 30)), uu("ud", "Name ud", tot(units(1), 1, 2, 2)),
			uu("ub", "Name ub", tot(0, 1, 5, 0))},
		ByDay: []store.DayUsage{du(day2, tot(units(1), 2, 305, 30)), du(day3, tot(units(1), 1, 2, 2))},
	})
	check(time.Time{}, day2.Add(-time.Millisecond), store.Usage{
		Total: tot(units(7), 2, 101, 11), ActiveUsers: 2, Models: 1,
		ByModel: []store.ModelUsage{mu("m-a", tot(units(7), 2, 101, 11))},
		ByUser:  []store.UserUsage{uu("ud", "Name ud", tot(units(4), 1, 1, 1)), uu("ua", "Ann Renamed", tot(units(3), 1, 100, 10))},
		ByDay:   []store.DayUsage{du(day0, tot(units(4), 1, 1, 1)), du(day1, tot(units(3), 1, 100, 10))},
	})
	// Nothing in range.
	check(day3.Add(time.Millisecond), day3.Add(time.Hour), store.Usage{})
	check(day2, day1, store.Usage{})
}

// testListModelPrices lists every price row by id, in byte order.
func testListModelPrices(t *testing.T, s store.Store) {
	ctx := t.Context()
	if ps, err := s.ListModelPrices(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("ListModelPrices of an empty store: %+v, %v", ps, err)
	}
	for _, id := range []string{"b-model", "a-model", "B-model"} {
		if _, err := s.PutModelPrice(ctx, store.ModelPrice{ID: id, Name: "Name " + id, Input: 1, Output: 2, PerMessage: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordModel(ctx, "c", "C", "a-model"); err != nil {
		t.Fatal(err)
	}
	ps, err := s.ListModelPrices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
		one, err := s.ModelPrice(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if normPrice(one) != normPrice(p) {
			t.Fatalf("listed %+v, ModelPrice %+v", p, one)
		}
	}
	if want := []string{"B-model", "a-model", "b-model", "c"}; !slices.Equal(ids, want) {
		t.Fatalf("ListModelPrices ids %v, want %v", ids, want)
	}
}

// normBackup makes backups comparable.
func normBackup(b store.Backup) store.Backup {
	return store.Backup{
		Users:          mapAll(b.Users, normUser),
		ModelPrices:    mapAll(b.ModelPrices, normPrice),
		Records:        mapAll(b.Records, norm),
		BalanceChanges: mapAll(b.BalanceChanges, normChange),
	}
}

func export(t *testing.T, s store.Store) store.Backup {
	t.Helper()
	b, err := s.Export(t.Context())
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	return b
}

func sameBackup(t *testing.T, what string, got, want store.Backup) {
	t.Helper()
	g, w := normBackup(got), normBackup(want)
	if !reflect.DeepEqual(g.Users, w.Users) {
		t.Fatalf("%s: users\n got  %+v\n want %+v", what, g.Users, w.Users)
	}
	if !reflect.DeepEqual(g.ModelPrices, w.ModelPrices) {
		t.Fatalf("%s: model prices\n got  %+v\n want %+v", what, g.ModelPrices, w.ModelPrices)
	}
	if !reflect.DeepEqual(g.Records, w.Records) {
		t.Fatalf("%s: records\n got  %+v\n want %+v", what, g.Records, w.Records)
	}
	if !reflect.DeepEqual(g.BalanceChanges, w.BalanceChanges) {
		t.Fatalf("%s: balance changes\n got  %+v\n want %+v", what, g.BalanceChanges, w.BalanceChanges)
	}
}

// backupFixture fills a store with some of everything.
func backupFixture(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "ua", units(10))
	newUser(t, s, "ub", units(5))
	if _, err := s.UpsertUser(ctx, store.UserInfo{ID: "uc", Name: "Zoë", Email: "zoe@example.com", Role: "admin"}, -3); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBlocked(ctx, "ub", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutModelPrice(ctx, store.ModelPrice{ID: "gpt", Name: "GPT", BaseModelID: "base", Input: units(1), Output: units(2), PerMessage: -1}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordModel(ctx, "seen", "Seen", ""); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 7, 1, 2, 3, 4, 5_000_000, time.UTC)
	for i := range 5 {
		if _, err := s.Charge(ctx, store.Record{UserID: "ua", Model: "gpt", Nickname: "Ann", InputTokens: int64(i), OutputTokens: 3,
			CachedTokens: 1, ReasoningTokens: 2, Cost: money.Amount(1_000_000_007 * (i + 1)), Source: store.SourceEdge,
			Estimated: i%2 == 0, Purpose: "chat", ChatID: "c", MessageID: fmt.Sprintf("m%d", i), Key: fmt.Sprintf("k%d", i),
			DurationMS: 123, CreatedAt: at.Add(time.Duration(i) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Charge(ctx, store.Record{UserID: "ub", Cost: units(1), Status: store.StatusCancelled}); err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(time.Hour)
	if res, err := s.Reserve(ctx, store.Reservation{Rule: store.ReserveAlways, Record: store.Record{UserID: "uc",
		Model: "seen", Cost: units(2), Key: "hold", ExpiresAt: &expires}}); err != nil || !res.Placed {
		t.Fatalf("Reserve: %+v, %v", res, err)
	}
	if _, err := s.AdjustBalance(ctx, "ua", units(7), "admin", "gift"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetBalance(ctx, "uc", units(1), "admin", "reset"); err != nil {
		t.Fatal(err)
	}
}

// checkAllLedgers checks the ledger of every user of a backup.
func checkAllLedgers(t *testing.T, s store.Store, b store.Backup) {
	t.Helper()
	for _, u := range b.Users {
		var n int64
		for _, r := range b.Records {
			if r.UserID == u.ID {
				n++
			}
		}
		checkLedger(t, s, u.ID, n)
	}
}

// testExportImport round-trips every row through Export and Import into
// another store, which then goes on where the first left off.
func testExportImport(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := t.Context()
	src := open(t)
	backupFixture(t, src)
	b := export(t, src)
	if len(b.Users) != 3 || len(b.ModelPrices) != 2 || len(b.Records) != 7 || len(b.BalanceChanges) != 2 {
		t.Fatalf("export: %d users, %d prices, %d records, %d changes", len(b.Users), len(b.ModelPrices), len(b.Records), len(b.BalanceChanges))
	}
	if !slices.IsSorted(recordIDs(b.Records)) {
		t.Fatalf("exported records not by id: %v", recordIDs(b.Records))
	}
	if all, _ := listRecords(t, src, store.RecordQuery{SortField: "created_at", PageSize: maxPageSizeForTests}); len(all) != len(b.Records) {
		t.Fatalf("export has %d records, the store %d", len(b.Records), len(all))
	}
	checkAllLedgers(t, src, b)

	// The destination has data of its own, which the import replaces.
	dst := open(t)
	newUser(t, dst, "zz", units(1))
	for range 20 {
		if _, err := dst.Charge(ctx, store.Record{UserID: "zz", Cost: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dst.AdjustBalance(ctx, "zz", 1, "admin", ""); err != nil {
		t.Fatal(err)
	}
	if err := dst.RecordModel(ctx, "old-model", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := dst.Import(ctx, b, nil); err != nil {
		t.Fatalf("Import: %v", err)
	}
	sameBackup(t, "export after import", export(t, dst), b)
	if _, err := dst.User(ctx, "zz"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a user the backup lacks survived the import: %v", err)
	}
	if _, err := dst.ModelPrice(ctx, "old-model"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a price the backup lacks survived the import: %v", err)
	}
	checkAllLedgers(t, dst, b)
	for _, r := range b.Records {
		if r.Key != "" {
			sameRecord(t, "imported record", recordByKey(t, dst, r.Key), r)
		}
	}

	// It goes on where the source left off: new ids after the imported
	// ones, the keys still taken, the hold still held.
	var maxRecord, maxChange int64
	for _, r := range b.Records {
		maxRecord = max(maxRecord, r.ID)
	}
	for _, c := range b.BalanceChanges {
		maxChange = max(maxChange, c.ID)
	}
	res, err := dst.Charge(ctx, store.Record{UserID: "ua", Cost: 1, Key: "new"})
	if err != nil || res.Record.ID <= maxRecord {
		t.Fatalf("charge after import: %+v, %v (largest imported id %d)", res, err, maxRecord)
	}
	c, err := dst.AdjustBalance(ctx, "ua", 1, "admin", "")
	if err != nil || c.ID <= maxChange {
		t.Fatalf("balance change after import: %+v, %v (largest imported id %d)", c, err, maxChange)
	}
	if dup, err := dst.Charge(ctx, store.Record{UserID: "ua", Cost: 1, Key: "k3"}); err != nil || !dup.Duplicate {
		t.Fatalf("an imported key: %+v, %v", dup, err)
	}
	held, err := dst.Charge(ctx, store.Record{UserID: "uc", Cost: units(1), Key: "hold"})
	if err != nil || held.Duplicate || held.Held != units(2) {
		t.Fatalf("settling an imported hold: %+v, %v", held, err)
	}
	checkLedger(t, dst, "ua", 6)
	checkLedger(t, dst, "uc", 1)

	// Importing into the store it came from gives the same rows back.
	if err := src.Import(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	sameBackup(t, "re-import into the source", export(t, src), b)
	checkAllLedgers(t, src, b)

	// An empty backup empties the store.
	if err := dst.Import(ctx, store.Backup{}, nil); err != nil {
		t.Fatal(err)
	}
	if e := export(t, dst); len(e.Users)+len(e.ModelPrices)+len(e.Records)+len(e.BalanceChanges) != 0 {
		t.Fatalf("after importing nothing: %+v", e)
	}
	if _, total := listUsers(t, dst, store.UserQuery{}); total != 0 {
		t.Fatalf("%d users after importing nothing", total)
	}
}

// testImportFailure imports broken backups: each fails and leaves every row
// as it was.
func testImportFailure(t *testing.T, s store.Store) {
	ctx := t.Context()
	backupFixture(t, s)
	before := export(t, s)
	good := func() store.Backup {
		b := export(t, s)
		// Fresh rows, so that the cases below do not share slices.
		return store.Backup{Users: slices.Clone(b.Users), ModelPrices: slices.Clone(b.ModelPrices),
			Records: slices.Clone(b.Records), BalanceChanges: slices.Clone(b.BalanceChanges)}
	}
	ghost := func(b *store.Backup) { b.Records[len(b.Records)-1].UserID = "ghost" }
	cases := []struct {
		name  string
		spoil func(b *store.Backup)
	}{
		{"record of an unknown user", ghost},
		{"two users with one id", func(b *store.Backup) { b.Users = append(b.Users, b.Users[0]) }},
		{"two records with one id", func(b *store.Backup) { b.Records = append(b.Records, b.Records[0]) }},
		{"two records with one key", func(b *store.Backup) {
			r := b.Records[0]
			r.ID = 1_000_000
			b.Records = append(b.Records, r)
		}},
		{"two prices with one id", func(b *store.Backup) { b.ModelPrices = append(b.ModelPrices, b.ModelPrices[0]) }},
		{"balance change of an unknown user", func(b *store.Backup) {
			b.BalanceChanges[len(b.BalanceChanges)-1].UserID = "ghost"
		}},
		{"only a record, of an unknown user", func(b *store.Backup) {
			*b = store.Backup{Records: b.Records[:1]}
		}},
	}
	for _, tc := range cases {
		b := good()
		tc.spoil(&b)
		if err := s.Import(ctx, b, nil); err == nil {
			t.Fatalf("%s: Import succeeded", tc.name)
		}
		sameBackup(t, "after a failed import ("+tc.name+")", export(t, s), before)
	}
	checkAllLedgers(t, s, before)
	// The store still works, and a good backup still imports.
	if _, err := s.Charge(ctx, store.Record{UserID: "ua", Cost: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Import(ctx, before, nil); err != nil {
		t.Fatal(err)
	}
	sameBackup(t, "after a good import", export(t, s), before)
}

// bruteUsage sums the final records in [from, to) (zero: unbounded) as
// UsageBetween does, from every record.
func bruteUsage(t *testing.T, s store.Store, recs []store.Record, from, to time.Time) store.Usage {
	t.Helper()
	u := store.Usage{ByModel: []store.ModelUsage{}, ByUser: []store.UserUsage{}, ByDay: []store.DayUsage{}}
	models, users, days := map[string]*store.UsageTotals{}, map[string]*store.UsageTotals{}, map[time.Time]*store.UsageTotals{}
	add := func(m *store.UsageTotals, r store.Record) {
		m.Cost += r.Cost
		m.Calls++
		m.InputTokens += r.InputTokens
		m.OutputTokens += r.OutputTokens
	}
	get := func(m map[string]*store.UsageTotals, k string) *store.UsageTotals {
		if m[k] == nil {
			m[k] = &store.UsageTotals{}
		}
		return m[k]
	}
	for _, r := range recs {
		if r.Status == store.StatusPending || (!from.IsZero() && r.CreatedAt.Before(from)) ||
			(!to.IsZero() && !r.CreatedAt.Before(to)) {
			continue
		}
		add(&u.Total, r)
		add(get(models, r.Model), r)
		add(get(users, r.UserID), r)
		d := r.CreatedAt.UTC().Truncate(24 * time.Hour)
		if days[d] == nil {
			days[d] = &store.UsageTotals{}
		}
		add(days[d], r)
	}
	for m, v := range models {
		u.ByModel = append(u.ByModel, store.ModelUsage{Model: m, UsageTotals: *v})
	}
	slices.SortFunc(u.ByModel, func(a, b store.ModelUsage) int {
		return cmp.Or(cmp.Compare(b.Cost, a.Cost), strings.Compare(a.Model, b.Model))
	})
	for id, v := range users {
		name := ""
		if usr, err := s.User(t.Context(), id); err == nil {
			name = usr.Name
		} else if !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		u.ByUser = append(u.ByUser, store.UserUsage{UserID: id, Name: name, UsageTotals: *v})
	}
	slices.SortFunc(u.ByUser, func(a, b store.UserUsage) int {
		return cmp.Or(cmp.Compare(b.Cost, a.Cost), strings.Compare(a.UserID, b.UserID))
	})
	for d, v := range days {
		u.ByDay = append(u.ByDay, store.DayUsage{Day: d, UsageTotals: *v})
	}
	slices.SortFunc(u.ByDay, func(a, b store.DayUsage) int { return a.Day.Compare(b.Day) })
	u.ActiveUsers, u.Models = int64(len(u.ByUser)), int64(len(u.ByModel))
	return u
}

// testUsageRollups runs a random mix of charges, reservations completed,
// expired and charged late, deletions and an import, and after each step
// compares UsageBetween over ranges with whole and partial UTC days against
// a sum over every record.
func testUsageRollups(t *testing.T, s store.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 11))
	day0 := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	const nUsers, nModels, nDays = 4, 3, 5
	userID := func(i int) string { return fmt.Sprintf("ru%d", i) }
	for i := range nUsers {
		if _, err := s.UpsertUser(ctx, store.UserInfo{ID: userID(i), Name: fmt.Sprintf("R%d", i)}, units(1000)); err != nil {
			t.Fatal(err)
		}
	}
	randUser := func() string { return userID(rng.IntN(nUsers)) }
	randModel := func() string { return fmt.Sprintf("rm%d", rng.IntN(nModels)) }
	randTime := func() time.Time {
		return day0.Add(time.Duration(rng.Int64N(int64(nDays * 24 * time.Hour))))
	}
	ranges := [][2]time.Time{
		{},
		{day0.Add(3*time.Hour + 1), day0.Add(3*24*time.Hour + 5*time.Hour)},
		{day0.Add(24 * time.Hour), day0.Add(3 * 24 * time.Hour)},
		{{}, day0.Add(2*24*time.Hour + time.Millisecond)},
		{day0.Add(24*time.Hour + 90*time.Minute), day0.Add(24*time.Hour + 20*time.Hour)},
		{day0.Add(2*24*time.Hour + 500*time.Microsecond), {}},
		{day0.Add(-48 * time.Hour), day0.Add(10 * 24 * time.Hour)},
		{day0.Add(4*24*time.Hour - time.Millisecond), day0.Add(4*24*time.Hour + time.Millisecond)},
	}
	check := func(step int, what string) {
		t.Helper()
		recs := eachRecord(t, s, store.RecordQuery{})
		for _, rg := range ranges {
			got, err := s.UsageBetween(ctx, rg[0], rg[1])
			if err != nil {
				t.Fatalf("step %d (%s): UsageBetween %v: %v", step, what, rg, err)
			}
			want := bruteUsage(t, s, recs, rg[0], rg[1])
			if g, w := normUsage(got), normUsage(want); !reflect.DeepEqual(g, w) {
				t.Fatalf("step %d (%s): UsageBetween %v..%v:\ngot  %+v\nwant %+v", step, what, rg[0], rg[1], g, w)
			}
		}
		checkLimitUsage(t, s, recs, step, what, day0)
	}
	var pending, expired []string // keys
	keys := 0
	newKey := func() string { keys++; return fmt.Sprintf("rk%d", keys) }
	take := func(ks *[]string) string {
		i := rng.IntN(len(*ks))
		k := (*ks)[i]
		*ks = slices.Delete(*ks, i, i+1)
		return k
	}
	imported := false
	for step := range 160 {
		var what string
		var err error
		switch op := rng.IntN(20); {
		case op < 6: // a new final record
			what = "charge"
			status := []string{"", "", store.StatusFailed, store.StatusExpired}[rng.IntN(4)]
			key := ""
			if rng.IntN(2) == 0 {
				key = newKey()
			}
			_, err = s.Charge(ctx, store.Record{UserID: randUser(), Model: randModel(), Key: key, CreatedAt: randTime(),
				Cost: units(rng.Int64N(5)), InputTokens: rng.Int64N(100), OutputTokens: rng.Int64N(100), Status: status})
		case op < 11: // a hold
			what = "reserve"
			key := newKey()
			var res store.ReserveResult
			res, err = s.Reserve(ctx, store.Reservation{Rule: store.ReserveAlways, Record: store.Record{
				UserID: randUser(), Model: randModel(), Key: key, CreatedAt: randTime(), Cost: units(rng.Int64N(5)),
				InputTokens: rng.Int64N(100)}})
			if err == nil && res.Placed {
				pending = append(pending, key)
			}
		case op < 14 && len(pending) > 0: // a hold completed, maybe with another model
			what = "complete"
			model := ""
			if rng.IntN(2) == 0 {
				model = randModel()
			}
			_, err = s.Charge(ctx, store.Record{Key: take(&pending), Model: model, Cost: units(rng.Int64N(5)),
				InputTokens: rng.Int64N(100), OutputTokens: rng.Int64N(100)})
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
		case op < 18 && len(expired) > 0: // the late report of an expired hold
			what = "late charge"
			model := ""
			if rng.IntN(2) == 0 {
				model = randModel()
			}
			_, err = s.Charge(ctx, store.Record{Key: take(&expired), Model: model, Cost: units(rng.Int64N(5)),
				InputTokens: rng.Int64N(100), OutputTokens: rng.Int64N(100)})
		case op == 18: // a user deleted (and back, with nothing)
			what = "delete user"
			id := randUser()
			if err = s.DeleteUser(ctx, id); err == nil {
				_, err = s.UpsertUser(ctx, store.UserInfo{ID: id, Name: "again " + id}, units(1000))
			}
			// Their keys are gone.
			pending, expired = nil, nil
		case op == 19 && !imported || step == 150: // an import of the export, less some records
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
}
