package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openwebui-monitor/owmon/internal/money"
)

// TestModelLabelIsBounded charges 250 distinct models: the first
// MaxModels keep their names, the rest are summed under "other", and the
// series stay bounded whatever clients call their models.
func TestModelLabelIsBounded(t *testing.T) {
	m := New()
	reg := prometheus.NewPedanticRegistry()
	if err := m.Register(reg, Gauges{}); err != nil {
		t.Fatal(err)
	}
	for i := range 250 {
		m.Charged("edge", "completed", fmt.Sprintf("model-%d", i), money.Units(1), 10, 20, 0, 0)
	}
	// A model among the first ones keeps its name when seen again.
	m.Charged("edge", "completed", "model-3", money.Units(1), 10, 20, 0, 0)

	if n := testutil.CollectAndCount(m.cost); n != MaxModels+1 {
		t.Fatalf("%d cost series, want %d", n, MaxModels+1)
	}
	if n := testutil.CollectAndCount(m.tokens); n != 2*(MaxModels+1) {
		t.Fatalf("%d token series, want %d", n, 2*(MaxModels+1))
	}
	if got := testutil.ToFloat64(m.cost.WithLabelValues(OtherModel)); got != 150 {
		t.Fatalf("other cost %v, want 150", got)
	}
	if got := testutil.ToFloat64(m.cost.WithLabelValues("model-3")); got != 2 {
		t.Fatalf("model-3 cost %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.tokens.WithLabelValues(OtherModel, "output")); got != 150*20 {
		t.Fatalf("other output tokens %v", got)
	}
	if got := testutil.ToFloat64(m.charges.WithLabelValues("edge", "completed")); got != 251 {
		t.Fatalf("charges %v, want 251", got)
	}
	// The registry gathers cleanly (the pedantic checks pass).
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

// TestCostIsExactAtTheBoundary converts nano-units to currency units once.
func TestCostIsExactAtTheBoundary(t *testing.T) {
	for _, c := range []struct {
		a    money.Amount
		want float64
	}{{1, 1e-9}, {money.Units(46), 46}, {150, 0.00000015}, {1_050_000, 0.00105}} {
		if got := Units(c.a); got != c.want {
			t.Errorf("Units(%s) = %v, want %v", c.a, got, c.want)
		}
	}
}

// TestNilMetricsRecordNothing: code without metrics calls the same methods.
func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.Charged("edge", "completed", "x", 1, 1, 1, 1, 1)
	m.Refused("edge", "insufficient_balance")
	m.StoreError()
	m.IdentityLookup(IdentityOK)
	m.Settled(time.Millisecond)
	if err := m.Register(prometheus.NewRegistry(), Gauges{}); err != nil {
		t.Fatal(err)
	}
}

// TestGaugesReadState registers the gauges and reads what they read.
func TestGaugesReadState(t *testing.T) {
	m := New()
	reg := prometheus.NewPedanticRegistry()
	holds := 3.0
	if err := m.Register(reg, Gauges{HoldsOpen: func() float64 { return holds }, SettlementsPending: func() float64 { return 7 }}); err != nil {
		t.Fatal(err)
	}
	// A second config's registry takes the same counters.
	if err := m.Register(prometheus.NewPedanticRegistry(), Gauges{}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP owmon_holds_open Holds this process placed for model calls (or inlet pre-charges) and has not yet settled.
# TYPE owmon_holds_open gauge
owmon_holds_open 3
# HELP owmon_settlements_pending Charges kept in the journal, waiting for the store to take them.
# TYPE owmon_settlements_pending gauge
owmon_settlements_pending 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "owmon_holds_open", "owmon_settlements_pending"); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCharged is what a charge costs the metrics.
func BenchmarkCharged(b *testing.B) {
	m := New()
	for b.Loop() {
		m.Charged("edge", "completed", "gpt-4o", 26_000_000_000, 12, 7, 3, 0)
	}
}
