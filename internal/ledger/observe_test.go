package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openwebui-monitor/owmon/internal/metrics"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// logged decodes a JSON log buffer into lines with msg.
func logged(t *testing.T, buf *bytes.Buffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestChargesAreCountedAndLoggedOnce: a hold, its charge, a repeated
// report of the same answer, and an expired hold. Each charge is counted
// and logged once; the holds open go up and back down.
func TestChargesAreCountedAndLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	m := metrics.New()
	reg := prometheus.NewPedanticRegistry()
	l, _ := newLedger(t, Config{Metrics: m, Log: slog.New(slog.NewJSONHandler(&buf, nil)), HoldOutputTokens: 10, InitBalance: money.Units(100)})
	if err := m.Register(reg, metrics.Gauges{HoldsOpen: func() float64 { return float64(l.HoldsOpen()) }}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 5, Key: "c/1", ChatID: "c", MessageID: "1",
		Source: SourceEdge, Enforce: true, Expires: time.Now().Add(time.Hour)})
	if err != nil || !res.Placed {
		t.Fatalf("hold %+v %v", res, err)
	}
	if n := l.HoldsOpen(); n != 1 {
		t.Fatalf("%d holds open, want 1", n)
	}
	a := Answer{User: alice, Model: "m", InputTokens: 5, OutputTokens: 3, CachedTokens: 2, Source: SourceEdge, ChatID: "c", MessageID: "1"}
	for range 2 { // the second is a duplicate: no charge
		if _, err := l.Charge(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.HoldsOpen(); n != 0 {
		t.Fatalf("%d holds open after the charge, want 0", n)
	}
	// A hold nobody settles lapses.
	if _, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 5, Key: "c/2", ChatID: "c", MessageID: "2",
		Source: SourceWebsocket, Enforce: true, Expires: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if n, err := l.ExpireHolds(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("expired %d %v", n, err)
	}
	if n := l.HoldsOpen(); n != 0 {
		t.Fatalf("%d holds open after the expiry, want 0", n)
	}
	want := `
# HELP owmon_charges_total Charges settled, by the path that metered the answer (function, edge, websocket, provider) and the record's status (completed, cancelled, failed, expired).
# TYPE owmon_charges_total counter
owmon_charges_total{path="edge",status="completed"} 1
owmon_charges_total{path="websocket",status="expired"} 1
# HELP owmon_cost_total Cost charged, in currency units, by model (the first 100 models seen, then "other").
# TYPE owmon_cost_total counter
owmon_cost_total{model="m"} 8
# HELP owmon_tokens_total Tokens charged, by model (the first 100 models seen, then "other") and kind (input, output, cached, reasoning).
# TYPE owmon_tokens_total counter
owmon_tokens_total{kind="cached",model="m"} 2
owmon_tokens_total{kind="input",model="m"} 5
owmon_tokens_total{kind="output",model="m"} 3
# HELP owmon_holds_open Holds this process placed for model calls (or inlet pre-charges) and has not yet settled.
# TYPE owmon_holds_open gauge
owmon_holds_open 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"owmon_charges_total", "owmon_cost_total", "owmon_tokens_total", "owmon_holds_open"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "owmon_settle_seconds"); n != 1 {
		t.Fatalf("settle histogram: %d", n)
	}
	charges := logged(t, &buf, "charge")
	if len(charges) != 1 {
		t.Fatalf("%d charge lines, want 1:\n%s", len(charges), buf.String())
	}
	c := charges[0]
	for k, v := range map[string]any{"path": "edge", "status": "completed", "user": "alice", "model": "m", "cost": "8",
		"input_tokens": 5.0, "output_tokens": 3.0, "cached_tokens": 2.0, "key": "c/1", "balance": "92", "held": "15"} {
		if c[k] != v {
			t.Errorf("charge line %s = %v, want %v (%v)", k, c[k], v, c)
		}
	}
	if e := logged(t, &buf, "hold expired"); len(e) != 1 || e[0]["user"] != "alice" || e[0]["key"] != "c/2" {
		t.Fatalf("hold expired lines %v", e)
	}
}

// TestQuietChargesSilencesChargeLinesOnly: log_charges off.
func TestQuietChargesSilencesChargeLinesOnly(t *testing.T) {
	var buf bytes.Buffer
	m := metrics.New()
	l, _ := newLedger(t, Config{Metrics: m, Log: slog.New(slog.NewJSONHandler(&buf, nil)), QuietCharges: true})
	ctx := context.Background()
	if _, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 1, Source: SourceFunction, ChatID: "c", MessageID: "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SetBalance(ctx, "alice", money.Units(3), "admin", "refill"); err != nil {
		t.Fatal(err)
	}
	if n := len(logged(t, &buf, "charge")); n != 0 {
		t.Fatalf("%d charge lines with QuietCharges:\n%s", n, buf.String())
	}
	reg := prometheus.NewRegistry()
	if err := m.Register(reg, metrics.Gauges{}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP owmon_charges_total Charges settled, by the path that metered the answer (function, edge, websocket, provider) and the record's status (completed, cancelled, failed, expired).
# TYPE owmon_charges_total counter
owmon_charges_total{path="function",status="completed"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "owmon_charges_total"); err != nil {
		t.Fatalf("the charge is still counted: %v", err)
	}
	b := logged(t, &buf, "admin set a balance")
	if len(b) != 1 || b[0]["old_balance"] != "-1" || b[0]["new_balance"] != "3" || b[0]["actor"] != "admin" || b[0]["reason"] != "refill" {
		t.Fatalf("admin line %v\n%s", b, buf.String())
	}
}

// BenchmarkCharged is what counting and logging a charge costs, on top
// of the charge itself: with the line (JSON to io.Discard) and without
// it (log_charges off).
func BenchmarkCharged(b *testing.B) {
	res := ChargeResult{Record: store.Record{UserID: "alice", Model: "gpt-4o", Source: SourceEdge, Status: StatusCompleted,
		InputTokens: 1200, OutputTokens: 300, Cost: 4_200_000, Key: "chat/message", Purpose: "chat"}, Balance: money.Units(42)}
	for _, quiet := range []bool{false, true} {
		b.Run(map[bool]string{false: "line", true: "quiet"}[quiet], func(b *testing.B) {
			l := New(nil, Config{Metrics: metrics.New(), Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), QuietCharges: quiet})
			for b.Loop() {
				l.charged(res, time.Millisecond)
			}
		})
	}
}

// TestHoldsOpenCountsHoldsInMemory: SQLite's holds live in memory until
// their call is charged and the hold released.
func TestHoldsOpenCountsHoldsInMemory(t *testing.T) {
	l, _ := newLedger(t, Config{LocalHolds: NewLocalHolds(), InitBalance: money.Units(100), HoldOutputTokens: 10})
	ctx := context.Background()
	res, err := l.Hold(ctx, Hold{User: alice, Model: "m", PromptTokens: 5, Key: "edge/1", Source: SourceEdge, Enforce: true, Settled: true})
	if err != nil || res.Local == nil {
		t.Fatalf("hold %+v %v", res, err)
	}
	if n := l.HoldsOpen(); n != 1 {
		t.Fatalf("%d holds open, want 1", n)
	}
	if _, err := l.Charge(ctx, Answer{User: alice, Model: "m", InputTokens: 5, OutputTokens: 1, Source: SourceEdge, Key: "edge/1"}); err != nil {
		t.Fatal(err)
	}
	l.ReleaseLocal(res.Local)
	l.ReleaseLocal(res.Local) // again: nothing
	if n := l.HoldsOpen(); n != 0 {
		t.Fatalf("%d holds open after the release, want 0", n)
	}
}
