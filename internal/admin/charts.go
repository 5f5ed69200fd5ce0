package admin

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/openwebui-monitor/owmon/internal/store"
)

// The overview's charts are SVG written here, on the server: no chart
// library, no script. Every mark carries a <title> (the browser's tooltip)
// and every text is escaped; colours are presentation attributes, which
// the Content-Security-Policy allows (style attributes it would not).

var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
	"#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

// chartItem is one mark: its label, its size and how to print its value.
type chartItem struct {
	Label, Value, Href string
	Size               float64
}

func metricOf(v *view, metric string, t store.UsageTotals) (float64, string) {
	if metric == "calls" {
		return float64(t.Calls), formatInt(t.Calls)
	}
	return float64(t.Cost) / 1e9, formatMoney(v.Currency, t.Cost)
}

// axis is a chart's value axis: round ticks from zero to Max, Step apart,
// each labelled in the metric's unit.
type axis struct {
	Max, Step float64
	Ticks     []string // the label of 0, Step, 2·Step, … Max
}

// newAxis picks round ticks (1, 2 or 5 times a power of ten apart, about
// four of them) covering most, which is more than zero; counts step by
// whole numbers. Labels carry the unit: the currency symbol for cost.
func newAxis(most float64, metric, cur string) axis {
	if !(most > 0) || math.IsInf(most, 0) {
		most = 1
	}
	raw := most / 4
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	step := pow * 10
	for _, m := range []float64{1, 2, 5} {
		if m*pow >= raw*(1-1e-9) {
			step = m * pow
			break
		}
	}
	if metric == "calls" {
		step = math.Max(step, 1)
	}
	n := int(math.Ceil(most/step - 1e-9))
	a := axis{Max: float64(n) * step, Step: step}
	// Decimals enough to tell the ticks apart, no more.
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	for i := 0; i <= n; i++ {
		v := float64(i) * step
		if metric == "calls" {
			a.Ticks = append(a.Ticks, formatInt(int64(math.Round(v))))
			continue
		}
		a.Ticks = append(a.Ticks, tickMoney(cur, v, dec))
	}
	return a
}

// tickMoney is an axis label for an amount of money: dec decimals, with
// the currency symbol and thousands separators; large amounts in k and M.
func tickMoney(cur string, v float64, dec int) string {
	suffix := ""
	switch {
	case v == 0:
		return cur + "0"
	case v >= 1e6 && dec == 0:
		v, suffix = v/1e6, "M"
	case v >= 1e3 && dec == 0:
		v, suffix = v/1e3, "k"
	}
	if suffix != "" {
		s := strconv.FormatFloat(v, 'f', -1, 64)
		return cur + s + suffix
	}
	s := strconv.FormatFloat(v, 'f', dec, 64)
	whole, frac, _ := strings.Cut(s, ".")
	if frac != "" {
		frac = "." + frac
	}
	return cur + formatDigits(whole) + frac
}

func esc(s string) string { return html.EscapeString(s) }

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func overviewCharts(v *view, u store.Usage, metric, base string) (share, ranking, daily template.HTML) {
	var models []chartItem
	for _, m := range u.ByModel {
		size, val := metricOf(v, metric, m.UsageTotals)
		models = append(models, chartItem{Label: m.Model, Value: val, Size: size})
	}
	sort.SliceStable(models, func(i, j int) bool { return models[i].Size > models[j].Size })
	var users []chartItem
	for _, x := range u.ByUser {
		size, val := metricOf(v, metric, x.UsageTotals)
		name := x.Name
		if name == "" {
			name = x.UserID
		}
		users = append(users, chartItem{Label: name, Value: val, Size: size, Href: base + "users/" + url.PathEscape(x.UserID)})
	}
	sort.SliceStable(users, func(i, j int) bool { return users[i].Size > users[j].Size })
	if len(users) > 10 {
		users = users[:10]
	}
	var days []chartItem
	if len(u.ByDay) > 0 {
		byDay := map[string]store.UsageTotals{}
		for _, d := range u.ByDay {
			byDay[d.Day.UTC().Format("2006-01-02")] = d.UsageTotals
		}
		first, last := u.ByDay[0].Day.UTC(), u.ByDay[len(u.ByDay)-1].Day.UTC()
		for d := first; !d.After(last) && len(days) < 3660; d = d.AddDate(0, 0, 1) {
			key := d.Format("2006-01-02")
			size, val := metricOf(v, metric, byDay[key])
			days = append(days, chartItem{Label: key, Value: val, Size: size})
		}
	}
	unit := v.T("metric." + metric)
	if metric != "calls" && v.Currency != "" {
		unit += " (" + v.Currency + ")"
	}
	return shareChart(models), barChart(users), dayChart(days, metric, v.Currency, unit)
}

// shareChart is a donut of the items' shares with a legend: the ten
// largest, the rest summed as "…".
func shareChart(items []chartItem) template.HTML {
	var total float64
	for _, it := range items {
		total += it.Size
	}
	if len(items) == 0 || total <= 0 {
		return ""
	}
	if len(items) > 10 {
		rest := chartItem{Label: "…", Value: fmt.Sprintf("%d", len(items)-9)}
		for _, it := range items[9:] {
			rest.Size += it.Size
		}
		rest.Value = fmt.Sprintf("%.1f%%", rest.Size/total*100)
		items = append(items[:9:9], rest)
	}
	const cx, cy, r = 100.0, 100.0, 70.0
	circ := 2 * math.Pi * r
	height := math.Max(200, float64(len(items))*20+20)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart share" data-testid="chart-share" viewBox="0 0 460 %.0f" role="img">`, height)
	offset := 0.0
	for i, it := range items {
		pct := it.Size / total * 100
		length := it.Size / total * circ
		fmt.Fprintf(&b, `<circle class="mark" data-testid="share-mark" cx="%.0f" cy="%.0f" r="%.0f" fill="none" stroke="%s" stroke-width="36" stroke-dasharray="%.3f %.3f" stroke-dashoffset="%.3f" transform="rotate(-90 %.0f %.0f)"><title>%s: %s (%.1f%%)</title></circle>`,
			cx, cy, r, palette[i%len(palette)], length, circ-length, -offset, cx, cy, esc(it.Label), esc(it.Value), pct)
		offset += length
		y := 20 + float64(i)*20
		fmt.Fprintf(&b, `<rect x="200" y="%.0f" width="12" height="12" fill="%s"/><text x="218" y="%.0f">%s <tspan class="muted">%.1f%%</tspan></text>`,
			y, palette[i%len(palette)], y+10, esc(truncate(it.Label, 32)), pct)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// barChart is a horizontal bar per item, largest first, each a link when
// it has one.
func barChart(items []chartItem) template.HTML {
	if len(items) == 0 {
		return ""
	}
	max := 0.0
	for _, it := range items {
		max = math.Max(max, it.Size)
	}
	const left, width, row = 170.0, 300.0, 26.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart bars" data-testid="chart-users" viewBox="0 0 600 %.0f">`, float64(len(items))*row+8)
	for i, it := range items {
		y := float64(i)*row + 4
		w := 0.0
		if max > 0 {
			w = it.Size / max * width
		}
		open, end := "<g", "</g>"
		if it.Href != "" {
			open, end = `<a href="`+esc(it.Href)+`"`, "</a>"
		}
		fmt.Fprintf(&b, `%s class="mark" data-testid="user-mark"><title>%s: %s</title><text x="%.0f" y="%.0f" text-anchor="end">%s</text><rect x="%.0f" y="%.0f" width="%.2f" height="%.0f" rx="2" fill="%s"/><text x="%.2f" y="%.0f">%s</text>%s`,
			open, esc(it.Label), esc(it.Value), left-8, y+15, esc(truncate(it.Label, 22)),
			left, y+2, math.Max(w, 1), row-8, palette[0], left+math.Max(w, 1)+6, y+15, esc(it.Value), end)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// dayChart is a bar per day with a value axis of round ticks in the
// metric's unit (its name, unit, above the axis) and the first, middle
// and last dates.
func dayChart(items []chartItem, metric, cur, unit string) template.HTML {
	if len(items) == 0 {
		return ""
	}
	most := 0.0
	for _, it := range items {
		most = math.Max(most, it.Size)
	}
	ax := newAxis(most, metric, cur)
	const x0, x1, y0, y1 = 80.0, 630.0, 22.0, 190.0
	var b strings.Builder
	b.WriteString(`<svg class="chart days" data-testid="chart-daily" viewBox="0 0 640 220" role="img">`)
	fmt.Fprintf(&b, `<text class="muted unit" data-testid="axis-unit" x="%.0f" y="10" text-anchor="start">%s</text>`, 4.0, esc(unit))
	for i, label := range ax.Ticks {
		y := y1 - float64(i)*ax.Step/ax.Max*(y1-y0)
		class := "grid"
		if i == 0 {
			class = "axis"
		}
		fmt.Fprintf(&b, `<line class="%s" x1="%.0f" y1="%.2f" x2="%.0f" y2="%.2f"/><text class="tick" data-testid="axis-tick" x="%.0f" y="%.2f" text-anchor="end">%s</text>`,
			class, x0, y, x1, y, x0-6, y+4, esc(label))
	}
	max := ax.Max
	step := (x1 - x0) / float64(len(items))
	gap := math.Max(math.Min(step*0.2, 4), step-40) // bars at most 40 wide
	for i, it := range items {
		h := 0.0
		if max > 0 {
			h = it.Size / max * (y1 - y0)
		}
		fmt.Fprintf(&b, `<rect class="mark" data-testid="day-mark" x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"><title>%s: %s</title></rect>`,
			x0+float64(i)*step+gap/2, y1-h, math.Max(step-gap, 0.5), h, palette[0], esc(it.Label), esc(it.Value))
	}
	labels := []int{0}
	if len(items) > 2 {
		labels = append(labels, len(items)/2)
	}
	if len(items) > 1 {
		labels = append(labels, len(items)-1)
	}
	for _, i := range labels {
		anchor := "middle"
		if i == 0 && len(items) > 1 {
			anchor = "start"
		} else if i == len(items)-1 && len(items) > 1 {
			anchor = "end"
		}
		x := x0 + (float64(i)+0.5)*step
		if anchor == "start" {
			x = x0
		} else if anchor == "end" {
			x = x1
		}
		fmt.Fprintf(&b, `<text x="%.2f" y="210" text-anchor="%s">%s</text>`, x, anchor, esc(items[i].Label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// breakdownTables is what only the monitor knows, as tables with a bar
// per row: usage by purpose (what OpenWebUI used the calls for) and by
// path (function, gate, websocket tap, provider meter), sized by the
// metric, then input against output tokens with the cached and reasoning
// ones among them. Empty when there is no usage.
func breakdownTables(v *view, u store.Usage, metric string) template.HTML {
	if len(u.ByPurpose) == 0 && len(u.BySource) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(`<section class="grid2 breakdown" data-testid="breakdown">`)
	for _, g := range []struct {
		kind, title, col string
		rows             []store.KindUsage
	}{
		{"purpose", v.T("breakdown.purpose"), v.T("breakdown.purposecol"), u.ByPurpose},
		{"source", v.T("breakdown.source"), v.T("breakdown.sourcecol"), u.BySource},
	} {
		most := 0.0
		for _, k := range g.rows {
			size, _ := metricOf(v, metric, k.UsageTotals)
			most = math.Max(most, size)
		}
		fmt.Fprintf(&b, `<div class="card"><h2>%s</h2><table class="table kinds" data-testid="breakdown-%s"><thead><tr><th>%s</th><th class="num">%s</th><th class="num">%s</th><th class="num">%s</th><th class="num">%s</th><th class="kindbar-col"></th></tr></thead><tbody>`,
			esc(g.title), g.kind, esc(g.col), esc(v.T("total.cost")), esc(v.T("total.calls")), esc(v.T("tokens.input")),
			esc(v.T("tokens.output")))
		for i, k := range g.rows {
			label := v.T("breakdown.unknown")
			if k.Key != "" {
				label = v.Name(g.kind, k.Key)
			}
			size, val := metricOf(v, metric, k.UsageTotals)
			w := 0.0
			if most > 0 {
				w = size / most * 100
			}
			fmt.Fprintf(&b, `<tr data-testid="%s-row" data-key="%s"><td>%s</td><td class="num" data-testid="kind-cost">%s</td><td class="num" data-testid="kind-calls">%s</td><td class="num" data-testid="kind-input">%s</td><td class="num" data-testid="kind-output">%s</td>`,
				g.kind, esc(k.Key), esc(label), v.Money(k.Cost), formatInt(k.Calls), formatInt(k.InputTokens), formatInt(k.OutputTokens))
			fmt.Fprintf(&b, `<td class="kindbar-col"><svg class="kindbar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img"><rect x="0" y="0" width="%.2f" height="10" fill="%s"><title>%s: %s</title></rect></svg></td></tr>`,
				w, palette[i%len(palette)], esc(label), esc(val))
		}
		b.WriteString(`</tbody></table></div>`)
	}
	b.WriteString(`</section>`)

	// Input against output, each with its part served from cache or spent
	// on reasoning.
	in, out := u.Total.InputTokens, u.Total.OutputTokens
	most := math.Max(float64(max(in, out)), 1)
	fmt.Fprintf(&b, `<section class="card" data-testid="breakdown-tokens"><h2>%s</h2>`, esc(v.T("breakdown.tokens")))
	const left, width, row = 90.0, 400.0, 30.0
	fmt.Fprintf(&b, `<svg class="chart tokens" viewBox="0 0 600 %.0f" role="img">`, 2*row+4)
	for i, r := range []struct {
		label, partLabel string
		all, part        int64
		colour           string
	}{
		{v.T("tokens.input"), v.T("tokens.cached"), in, u.CachedTokens, palette[0]},
		{v.T("tokens.output"), v.T("tokens.reasoning"), out, u.ReasoningTokens, palette[1]},
	} {
		y := float64(i)*row + 4
		wAll, wPart := float64(r.all)/most*width, math.Min(float64(r.part), float64(r.all))/most*width
		fmt.Fprintf(&b, `<text x="0" y="%.0f">%s</text>`, y+15, esc(r.label))
		fmt.Fprintf(&b, `<rect class="mark" x="%.0f" y="%.0f" width="%.2f" height="20" fill="%s"><title>%s: %s</title></rect>`,
			left, y, wAll, r.colour, esc(r.label), formatInt(r.all))
		fmt.Fprintf(&b, `<rect class="mark" x="%.0f" y="%.0f" width="%.2f" height="20" fill="%s" fill-opacity=".55"><title>%s: %s</title></rect>`,
			left, y, wPart, palette[3+i], esc(r.partLabel), formatInt(r.part))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s</text>`, left+wAll+6, y+15, formatInt(r.all))
	}
	b.WriteString(`</svg>`)
	fmt.Fprintf(&b, `<table class="table kinds tokens-sum"><tbody><tr><th>%s</th><td class="num" data-testid="tokens-input">%s</td><th>%s</th><td class="num" data-testid="tokens-cached">%s</td></tr><tr><th>%s</th><td class="num" data-testid="tokens-output">%s</td><th>%s</th><td class="num" data-testid="tokens-reasoning">%s</td></tr></tbody></table></section>`,
		esc(v.T("tokens.input")), formatInt(in), esc(v.T("tokens.cached")), formatInt(u.CachedTokens),
		esc(v.T("tokens.output")), formatInt(out), esc(v.T("tokens.reasoning")), formatInt(u.ReasoningTokens))
	return template.HTML(b.String())
}
