package ledger

// What the ledger tells operators: one place where a settled charge is
// counted (metrics) and logged, and the state the gauges read.

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/openwebui-monitor/owmon/internal/metrics"
)

// Metrics returns the ledger's metrics (nil: none), for the paths that
// refuse requests before the ledger sees them.
func (l *Ledger) Metrics() *metrics.Metrics { return l.metrics }

// charged counts and logs a charge the ledger settled (written, or kept
// in the journal), an expired hold included. A duplicate changed nothing,
// and a covered key is the provider meter's to count.
func (l *Ledger) charged(res ChargeResult, took time.Duration) {
	r := res.Record
	if res.Covered {
		return
	}
	l.open.remove(r.Key)
	if res.Duplicate {
		return
	}
	l.metrics.Charged(r.Source, r.Status, r.Model, r.Cost, r.InputTokens, r.OutputTokens, r.CachedTokens, r.ReasoningTokens)
	if took > 0 {
		l.metrics.Settled(took)
	}
	if r.Status == StatusExpired {
		l.log.Info("hold expired", "path", r.Source, "user", r.UserID, "model", r.Model, "key", r.Key,
			"released", res.Held.String(), "balance", res.Balance.String())
		return
	}
	if l.cfg.QuietCharges || !l.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	l.log.Info("charge", "path", r.Source, "status", r.Status, "user", r.UserID, "model", r.Model,
		"purpose", r.Purpose, "input_tokens", r.InputTokens, "output_tokens", r.OutputTokens,
		"cached_tokens", r.CachedTokens, "reasoning_tokens", r.ReasoningTokens, "estimated", r.Estimated,
		"cost", r.Cost.String(), "held", res.Held.String(), "balance", res.Balance.String(),
		"key", r.Key, "deferred", res.Deferred, "duration_ms", r.DurationMS)
}

// HoldsOpen counts the holds this process placed and has not settled:
// those in memory, and those in the store it placed (until their hold
// TTL has passed: another instance may have settled them).
func (l *Ledger) HoldsOpen() int {
	n := l.open.count(time.Now())
	for _, lh := range l.localTables() {
		lh.mu.Lock()
		n += lh.count
		lh.mu.Unlock()
	}
	return n
}

// SettlementsPending counts charges kept in the journal, not yet written
// to the store.
func (l *Ledger) SettlementsPending() int {
	d := l.durable
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending
}

// openHolds are the keys of holds in the store this process placed and
// has not seen settled. One table serves every ledger over a store (it
// lives in the Durable, across config reloads).
type openHolds struct {
	mu   sync.Mutex
	keys map[string]time.Time // key → when the hold lapses (zero: unknown)
}

func newOpenHolds() *openHolds { return &openHolds{keys: make(map[string]time.Time)} }

// openHoldGrace is how long past its expiry a hold still counts: the
// sweep that expires it runs every quarter of the TTL, at most a minute.
const openHoldGrace = time.Minute

// openHoldMax bounds the table: past it, holds are no longer counted.
const openHoldMax = 100_000

func (o *openHolds) add(key string, expires time.Time) {
	if key == "" {
		return
	}
	o.mu.Lock()
	if len(o.keys) < openHoldMax {
		o.keys[key] = expires
	}
	o.mu.Unlock()
}

func (o *openHolds) remove(key string) {
	if key == "" {
		return
	}
	o.mu.Lock()
	delete(o.keys, key)
	o.mu.Unlock()
}

func (o *openHolds) rekey(old, key string) {
	o.mu.Lock()
	if e, ok := o.keys[old]; ok {
		delete(o.keys, old)
		o.keys[key] = e
	}
	o.mu.Unlock()
}

// count counts the holds, forgetting those well past their expiry.
func (o *openHolds) count(now time.Time) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, e := range o.keys {
		if !e.IsZero() && now.After(e.Add(openHoldGrace)) {
			delete(o.keys, k)
		}
	}
	return len(o.keys)
}
