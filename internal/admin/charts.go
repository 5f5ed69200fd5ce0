package admin

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"net/url"
	"sort"
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
	return float64(t.Cost) / 1e9, v.Money(t.Cost)
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
	return shareChart(models), barChart(users), dayChart(days)
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

// dayChart is a bar per day with a y axis (zero, half, most) and the first,
// middle and last dates.
func dayChart(items []chartItem) template.HTML {
	if len(items) == 0 {
		return ""
	}
	max := 0.0
	maxLabel := ""
	for _, it := range items {
		if it.Size >= max {
			max, maxLabel = it.Size, it.Value
		}
	}
	const x0, x1, y0, y1 = 80.0, 630.0, 10.0, 190.0
	var b strings.Builder
	b.WriteString(`<svg class="chart days" data-testid="chart-daily" viewBox="0 0 640 220" role="img">`)
	fmt.Fprintf(&b, `<line class="axis" x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f"/><line class="grid" x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f"/><line class="grid" x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f"/>`,
		x0, y1, x1, y1, x0, y0, x1, y0, x0, (y0+y1)/2, x1, (y0+y1)/2)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text><text x="%.0f" y="%.0f" text-anchor="end">0</text>`,
		x0-6, y0+4, esc(maxLabel), x0-6, y1+4)
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
