// Package metrics owns owmon's Prometheus series: charges, their cost and
// tokens, refusals, the store's errors, identity lookups and how long a
// settlement takes, plus gauges read from the ledger (holds open,
// settlements waiting for the store).
//
// Every label set is bounded: no user ids, and the model label keeps the
// first MaxModels distinct models seen, then "other" (clients name models
// freely). A nil *Metrics records nothing, so code and tests without
// metrics need no checks.
//
// Money is exact everywhere else; the cost counter is in currency units,
// a float by nature, converted here and nowhere before.
package metrics

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openwebui-monitor/owmon/internal/money"
)

// MaxModels bounds the model label: past this many distinct models, the
// rest are counted as OtherModel.
const MaxModels = 100

// OtherModel is the model label of models seen after the first MaxModels.
const OtherModel = "other"

// Metrics are the collectors. One Metrics lives as long as the store it
// counts for (across config reloads) and is registered in each config's
// registry. It is safe for concurrent use.
type Metrics struct {
	charges     *prometheus.CounterVec
	cost        *prometheus.CounterVec
	tokens      *prometheus.CounterVec
	refusals    *prometheus.CounterVec
	storeErrors prometheus.Counter
	identity    *prometheus.CounterVec
	settle      prometheus.Histogram

	mu     sync.RWMutex
	models map[string]struct{}
}

// New returns the collectors, registered nowhere yet.
func New() *Metrics {
	return &Metrics{
		charges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "owmon_charges_total",
			Help: "Charges settled, by the path that metered the answer (function, edge, websocket, provider) and the record's status (completed, cancelled, failed, expired).",
		}, []string{"path", "status"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "owmon_cost_total",
			Help: "Cost charged, in currency units, by model (the first 100 models seen, then \"other\").",
		}, []string{"model"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "owmon_tokens_total",
			Help: "Tokens charged, by model (the first 100 models seen, then \"other\") and kind (input, output, cached, reasoning).",
		}, []string{"model", "kind"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "owmon_refusals_total",
			Help: "Requests refused, by path (function, edge, provider) and reason (the error type the client gets).",
		}, []string{"path", "reason"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "owmon_store_errors_total",
			Help: "Store writes that failed (the database did not take them).",
		}),
		identity: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "owmon_identity_lookups_total",
			Help: "Credentials resolved to users, by result (cache_hit, ok, local_only, unauthenticated, forbidden, unavailable).",
		}, []string{"result"}),
		settle: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "owmon_settle_seconds",
			Help:    "How long a charge takes to settle: pricing and the store's transaction (or the journal's write).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		models: make(map[string]struct{}),
	}
}

// Gauges are the state the gauges read, from the ledger.
type Gauges struct {
	HoldsOpen          func() float64 // holds placed and not yet settled
	SettlementsPending func() float64 // deferred charges waiting for the store
}

// Register registers the collectors in reg, with gauges reading g (nil
// functions are left out). Each config has a registry of its own: the
// counters go on counting across reloads, the gauges read the config's
// ledger.
func (m *Metrics) Register(reg prometheus.Registerer, g Gauges) error {
	if m == nil || reg == nil {
		return nil
	}
	cs := []prometheus.Collector{m.charges, m.cost, m.tokens, m.refusals, m.storeErrors, m.identity, m.settle}
	if g.HoldsOpen != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "owmon_holds_open",
			Help: "Holds this process placed for model calls (or inlet pre-charges) and has not yet settled.",
		}, g.HoldsOpen))
	}
	if g.SettlementsPending != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "owmon_settlements_pending",
			Help: "Charges kept in the journal, waiting for the store to take them.",
		}, g.SettlementsPending))
	}
	for _, c := range cs {
		var already prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !errors.As(err, &already) {
			return err
		}
	}
	return nil
}

// model is the label of a model: itself among the first MaxModels seen,
// else OtherModel.
func (m *Metrics) model(name string) string {
	m.mu.RLock()
	_, ok := m.models[name]
	full := len(m.models) >= MaxModels
	m.mu.RUnlock()
	if ok {
		return name
	}
	if full {
		return OtherModel
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.models[name]; ok {
		return name
	}
	if len(m.models) >= MaxModels {
		return OtherModel
	}
	m.models[name] = struct{}{}
	return name
}

// Charged counts a settled charge: path is the ledger's source, status the
// record's status, cost exact (converted to currency units here).
func (m *Metrics) Charged(path, status, model string, cost money.Amount, in, out, cached, reasoning int64) {
	if m == nil {
		return
	}
	m.charges.WithLabelValues(path, status).Inc()
	if cost == 0 && in == 0 && out == 0 && cached == 0 && reasoning == 0 {
		return // a release (failed, expired): no model series for nothing
	}
	label := m.model(model)
	if cost > 0 {
		m.cost.WithLabelValues(label).Add(Units(cost))
	}
	for _, t := range [...]struct {
		kind string
		n    int64
	}{{"input", in}, {"output", out}, {"cached", cached}, {"reasoning", reasoning}} {
		if t.n > 0 {
			m.tokens.WithLabelValues(label, t.kind).Add(float64(t.n))
		}
	}
}

// Units is an amount in currency units, as Prometheus takes it: the
// nearest float64 to the exact decimal.
func Units(a money.Amount) float64 { return float64(a) / float64(money.Scale) }

// Refused counts a refused request: path is the ledger's source of the
// endpoint that refused, reason the error type its client gets.
func (m *Metrics) Refused(path, reason string) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(path, reason).Inc()
}

// StoreError counts a store write that failed.
func (m *Metrics) StoreError() {
	if m == nil {
		return
	}
	m.storeErrors.Inc()
}

// Identity lookup results.
const (
	IdentityCacheHit        = "cache_hit"       // answered from the cache (refusals too)
	IdentityOK              = "ok"              // OpenWebUI named the user
	IdentityLocalOnly       = "local_only"      // a JWT verified locally; OpenWebUI could not answer
	IdentityUnauthenticated = "unauthenticated" // OpenWebUI refused the credential (401)
	IdentityForbidden       = "forbidden"       // OpenWebUI would not say (403)
	IdentityUnavailable     = "unavailable"     // OpenWebUI did not answer
)

// IdentityLookup counts a credential resolved, by result (the constants
// above).
func (m *Metrics) IdentityLookup(result string) {
	if m == nil {
		return
	}
	m.identity.WithLabelValues(result).Inc()
}

// Settled observes how long a charge took to settle.
func (m *Metrics) Settled(d time.Duration) {
	if m == nil {
		return
	}
	m.settle.Observe(d.Seconds())
}
