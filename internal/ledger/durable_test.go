package ledger

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/journal"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
)

// run is one process's ledger over a SQLite file and a journal in dir.
// Its store can be closed (the fault: every write fails after) and the
// process "ended" without settling (end: the journal is closed as a
// killed process leaves it, since Progress and Begin are already written).
type run struct {
	l  *Ledger
	st store.Store
	j  *journal.Journal
	d  *Durable
}

func startRun(t *testing.T, dir string, failOpen, localHolds bool) *run {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "l.db"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{SyncEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDurable(j, failOpen, nil)
	cfg := Config{InitBalance: money.Units(100), Durable: d,
		DefaultPrice: pricing.Price{Input: money.Units(1_000_000), Output: money.Units(1_000_000), PerMessage: -1}}
	if localHolds {
		cfg.LocalHolds = NewLocalHolds()
	}
	r := &run{l: New(st, cfg), st: st, j: j, d: d}
	t.Cleanup(func() { r.st.Close(); r.j.Close() })
	return r
}

// end stops the process: the store and the journal are closed, nothing
// in flight is settled.
func (r *run) end() {
	r.st.Close()
	r.j.Close()
}

func record(t *testing.T, st store.Store, key string) store.Record {
	t.Helper()
	rec, err := st.RecordByKey(context.Background(), key)
	if err != nil {
		t.Fatalf("record %s: %v", key, err)
	}
	return rec
}

func balance(t *testing.T, st store.Store, user string) money.Amount {
	t.Helper()
	u, err := st.User(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return u.Balance
}

// TestDeferredChargesSurviveRestart: charges the store refuses are kept in
// the journal, answered as deferred, written in order once a store takes
// them (here in the next process), and never twice.
func TestDeferredChargesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r1 := startRun(t, dir, true, true)
	if _, err := r1.l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 1, OutputTokens: 2, Key: "k1"}); err != nil {
		t.Fatal(err)
	}
	r1.st.Close() // the fault: every write fails from now on
	for i, key := range []string{"k2", "k3"} {
		res, err := r1.l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 3, OutputTokens: 4, Key: key})
		if err != nil || !res.Deferred || res.Record.Cost != money.Units(7) {
			t.Fatalf("charge %d while the store is down: %+v %v", i, res, err)
		}
	}
	if h := r1.l.Health(ctx); h.StoreOK || h.Pending != 2 || h.Status != "degraded" || !h.Admitting {
		t.Fatalf("health while down: %+v", h)
	}
	r1.end()

	r2 := startRun(t, dir, true, true)
	if h := r2.d.Health(); h.Pending != 2 {
		t.Fatalf("the next process sees %d deferred charges, want 2", h.Pending)
	}
	r2.l.drain(ctx)
	for _, key := range []string{"k2", "k3"} {
		if rec := record(t, r2.st, key); rec.Status != StatusCompleted || rec.Cost != money.Units(7) {
			t.Fatalf("%s after the drain: %+v", key, rec)
		}
	}
	r2.l.drain(ctx)
	if got := balance(t, r2.st, "alice"); got != money.Units(100-3-7-7) {
		t.Fatalf("balance %s, want 83", got)
	}
	if h := r2.l.Health(ctx); !h.StoreOK || h.Pending != 0 || h.Status != "ok" {
		t.Fatalf("health after the drain: %+v", h)
	}
	if led, err := r2.st.Ledger(ctx, "alice"); err != nil || led.Records != 3 {
		t.Fatalf("ledger %+v %v: want 3 records", led, err)
	}
}

// TestCrashedCallsChargedForWhatTheyProduced: calls in flight when the
// process died are charged on the next start for their prompt and the
// output last journaled, as cancelled and estimated: one held in memory
// (SQLite, an answer over HTTP) and one held in the store (a web-UI chat,
// left to its hold's expiry, which charges it from the journal).
func TestCrashedCallsChargedForWhatTheyProduced(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r1 := startRun(t, dir, true, true)
	res, err := r1.l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 10, Key: "edge/x",
		Source: SourceEdge, Enforce: true, Settled: true})
	if err != nil || !res.Allowed || res.Local == nil {
		t.Fatalf("hold %+v %v", res, err)
	}
	web, err := r1.l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 5, Key: "c1/m1", ChatID: "c1", MessageID: "m1",
		Source: SourceEdge, Enforce: true, Expires: time.Now().Add(-time.Second)})
	if err != nil || !web.Placed || web.Local != nil {
		t.Fatalf("stored hold %+v %v", web, err)
	}
	r1.l.Progress("edge/x", 3)
	r1.l.Progress("edge/x", 7)
	r1.l.Progress("c1/m1", 4)
	time.Sleep(50 * time.Millisecond) // the journal writes progress within SyncEvery
	r1.end()

	r2 := startRun(t, dir, true, true)
	r2.l.drain(ctx)
	rec := record(t, r2.st, "edge/x")
	if rec.Status != StatusCancelled || !rec.Estimated || rec.InputTokens != 10 || rec.OutputTokens != 7 ||
		rec.Cost != money.Units(17) || rec.Source != SourceEdge {
		t.Fatalf("the interrupted call: %+v", rec)
	}
	// The web-UI chat waits for its hold's expiry (the websocket may still
	// report it), then is charged from the journal, not released at 0.
	if rec := record(t, r2.st, "c1/m1"); rec.Status != StatusPending {
		t.Fatalf("the web chat before its expiry: %+v", rec)
	}
	if n, err := r2.l.ExpireHolds(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("expired %d, %v", n, err)
	}
	rec = record(t, r2.st, "c1/m1")
	if rec.Status != StatusCancelled || rec.InputTokens != 5 || rec.OutputTokens != 4 || rec.Cost != money.Units(9) {
		t.Fatalf("the web chat after its expiry: %+v", rec)
	}
	if got := balance(t, r2.st, "alice"); got != money.Units(100-17-9) {
		t.Fatalf("balance %s, want 74", got)
	}
	if h := r2.d.Health(); h.RecoveredCalls != 2 || h.ExpiredHolds != 0 {
		t.Fatalf("health %+v: want 2 recovered, 0 expired", h)
	}
	// Nothing is charged again by a third process.
	r2.end()
	r3 := startRun(t, dir, true, true)
	r3.l.drain(ctx)
	if led, _ := r3.st.Ledger(ctx, "alice"); led.Records != 2 {
		t.Fatalf("%d records after a third start, want 2", led.Records)
	}
}

// TestOutagePolicy: with the store down, fail_open admits a known user
// against their last balance less what their deferred charges and calls
// in flight take, and refuses one it never read; fail_closed refuses.
func TestOutagePolicy(t *testing.T) {
	ctx := context.Background()
	bob := store.UserInfo{ID: "bob", Name: "Bob"}
	for _, local := range []bool{true, false} {
		r := startRun(t, t.TempDir(), true, local)
		hold := func(u store.UserInfo, key string, prompt int64) (HoldResult, error) {
			return r.l.Hold(ctx, Hold{User: u, Model: "m", PromptTokens: prompt, Key: key, Source: SourceEdge, Enforce: true, Settled: true})
		}
		first, err := hold(alice, "a0", 10)
		if err != nil || !first.Allowed {
			t.Fatal(first, err)
		}
		if _, err := r.l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 10, Key: "a0"}); err != nil {
			t.Fatal(err)
		}
		r.l.ReleaseLocal(first.Local)
		r.st.Close() // alice was last seen with 90
		if _, err := r.l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 30, Key: "a1"}); err != nil {
			t.Fatal(err) // deferred: 60 left
		}
		// The inlet tells a known user their last balance less what is owed.
		if pre, err := r.l.PreChargeInlet(ctx, PreCharge{User: alice, Model: "m", Source: SourceFunction}); err != nil || pre.Balance != money.Units(60) {
			t.Fatalf("local=%v: inlet during the outage: %+v %v", local, pre, err)
		}
		res, err := hold(alice, "a2", 50)
		if err != nil || !res.Allowed || res.Amount != money.Units(50) {
			t.Fatalf("local=%v: a known user during the outage: %+v %v", local, res, err)
		}
		if res, err := hold(alice, "a3", 20); err != nil || !res.Allowed || res.Amount != money.Units(10) {
			t.Fatalf("local=%v: the rest of 60 beside a hold of 50: %+v %v", local, res, err)
		}
		if res, err := hold(alice, "a4", 1); err != nil || res.Allowed {
			t.Fatalf("local=%v: nothing left: %+v %v", local, res, err)
		}
		if _, err := hold(bob, "b1", 1); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("local=%v: a user never read: %v", local, err)
		}
	}

	r := startRun(t, t.TempDir(), false, false)
	if _, err := r.l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 1, Key: "x", Source: SourceEdge, Enforce: true, Settled: true}); err != nil {
		t.Fatal(err)
	}
	r.st.Close()
	if _, err := r.l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 1, Key: "x"}); err != nil {
		t.Fatal(err) // kept in the journal under fail_closed too
	}
	if _, err := r.l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 1, Key: "y", Source: SourceEdge, Enforce: true, Settled: true}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("fail_closed during an outage: %v", err)
	}
	if h := r.d.Health(); h.Admitting || h.Status != "unavailable" || h.StoreOutage != "fail_closed" {
		t.Fatalf("health %+v", h)
	}
}
