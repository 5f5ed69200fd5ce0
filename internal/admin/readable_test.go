package admin

import (
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/openwebui-monitor/owmon/internal/money"
)

// Amounts on the pages are rounded for reading; the exact amount is the
// title, and the API and exports keep every digit.
func TestFormatMoneyReadable(t *testing.T) {
	for _, c := range []struct {
		in           int64
		shown, exact string
	}{
		{0, "$0.00", "$0.00"},
		{1, "$0.000000001", "$0.000000001"},
		{42_123, "$0.000042", "$0.000042123"},
		{-42_123, "-$0.000042", "-$0.000042123"},
		{150, "$0.00000015", "$0.00000015"},
		{4_800_000, "$0.0048", "$0.0048"},
		{9_999_999, "$0.01", "$0.009999999"},
		{10_000_000, "$0.01", "$0.01"},
		{12_345_678, "$0.0123", "$0.012345678"},
		{500_000_000, "$0.50", "$0.50"},
		{999_990_000, "$1.00", "$0.99999"},
		{1_500_000_000, "$1.50", "$1.50"},
		{1_234_567_891, "$1.23", "$1.234567891"},
		{1_235_000_000, "$1.24", "$1.235"}, // half away from zero
		{-1_235_000_000, "-$1.24", "-$1.235"},
		{1_234_567_000_000_000, "$1,234,567.00", "$1,234,567.00"},
		{math.MaxInt64, "$9,223,372,036.85", "$9,223,372,036.854775807"},
		{math.MinInt64, "-$9,223,372,036.85", "-$9,223,372,036.854775808"},
	} {
		if got := formatMoney("$", money.Amount(c.in)); got != c.shown {
			t.Errorf("formatMoney(%d) = %q, want %q", c.in, got, c.shown)
		}
		if got := exactMoney("$", money.Amount(c.in)); got != c.exact {
			t.Errorf("exactMoney(%d) = %q, want %q", c.in, got, c.exact)
		}
		v := &view{Currency: "$"}
		if got, want := string(v.Money(money.Amount(c.in))), `<span class="money" title="`+c.exact+`">`+c.shown+`</span>`; got != want {
			t.Errorf("Money(%d) = %s, want %s", c.in, got, want)
		}
	}
	if got := string((&view{Currency: `<€>`}).Money(1)); strings.Contains(got, "<€>") {
		t.Errorf("the currency is not escaped: %s", got)
	}
}

// The daily chart's axis has round ticks from zero past the largest bar,
// labelled in the metric's unit.
func TestChartAxisTicks(t *testing.T) {
	for _, c := range []struct {
		most        float64
		metric, cur string
		step        float64
		ticks       []string
	}{
		{3, "calls", "", 1, []string{"0", "1", "2", "3"}},
		{0.4, "calls", "", 1, []string{"0", "1"}},
		{0, "calls", "", 1, []string{"0", "1"}},
		{9_800, "calls", "", 5000, []string{"0", "5,000", "10,000"}},
		{1234, "calls", "", 500, []string{"0", "500", "1,000", "1,500"}},
		{0.0082, "cost", "$", 0.005, []string{"$0", "$0.005", "$0.010"}},
		{0.0041, "cost", "$", 0.002, []string{"$0", "$0.002", "$0.004", "$0.006"}},
		{7.3, "cost", "€", 2, []string{"€0", "€2", "€4", "€6", "€8"}},
		{0.35, "cost", "$", 0.1, []string{"$0", "$0.1", "$0.2", "$0.3", "$0.4"}},
		{2_600, "cost", "$", 1000, []string{"$0", "$1k", "$2k", "$3k"}},
		{4_100_000, "cost", "$", 2_000_000, []string{"$0", "$2M", "$4M", "$6M"}},
	} {
		a := newAxis(c.most, c.metric, c.cur)
		if math.Abs(a.Step-c.step) > c.step*1e-9 || !reflect.DeepEqual(a.Ticks, c.ticks) {
			t.Errorf("newAxis(%v, %s) = step %v ticks %q, want %v %q", c.most, c.metric, a.Step, a.Ticks, c.step, c.ticks)
		}
		if a.Max < c.most {
			t.Errorf("newAxis(%v): top %v below the largest value", c.most, a.Max)
		}
	}
	svg := string(dayChart([]chartItem{{Label: "2025-01-01", Value: "$0.0048", Size: 0.0048}, {Label: "2025-01-02", Value: "$0.0012", Size: 0.0012}},
		"cost", "$", "Cost ($)"))
	ticks := regexp.MustCompile(`data-testid="axis-tick"[^>]*>([^<]*)<`).FindAllStringSubmatch(svg, -1)
	var got []string
	for _, m := range ticks {
		got = append(got, m[1])
	}
	if want := []string{"$0", "$0.002", "$0.004", "$0.006"}; !reflect.DeepEqual(got, want) {
		t.Errorf("day chart ticks %q, want %q", got, want)
	}
	if !strings.Contains(svg, `data-testid="axis-unit" x="4" y="10" text-anchor="start">Cost ($)<`) {
		t.Errorf("day chart has no unit: %s", svg)
	}
	// Bars are scaled to the axis' top, not to the largest bar.
	if !strings.Contains(svg, `height="134.40"`) { // 0.0048 / 0.006 × 168
		t.Errorf("bar heights: %s", svg)
	}
}
