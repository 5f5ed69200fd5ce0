package budget

import (
	"fmt"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
)

func TestParseWindow(t *testing.T) {
	for in, want := range map[string]string{"day": "day", "week": "week", "month": "month", "5h": "5h",
		"7d": "7d", "90m": "1h30m", "24h": "1d", "366d": "366d", "1m": "1m"} {
		w, err := ParseWindow(in)
		if err != nil || w.String() != want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %s", in, w, err, want)
		}
		if back, err := ParseWindow(w.String()); err != nil || back != w {
			t.Errorf("ParseWindow(%q) does not read back: %v, %v", w.String(), back, err)
		}
	}
	for _, in := range []string{"", "year", "0h", "-5h", "30s", "367d", "1.5m", "d", "5x"} {
		if _, err := ParseWindow(in); err == nil {
			t.Errorf("ParseWindow(%q) accepted", in)
		}
	}
}

func TestBounds(t *testing.T) {
	shanghai := time.FixedZone("CST", 8*3600)
	kolkata := time.FixedZone("IST", 5*3600+1800)
	at := time.Date(2026, 3, 4, 20, 15, 0, 0, time.UTC) // a Wednesday; 04:15 on Thursday in Shanghai
	for _, tc := range []struct {
		window     string
		loc        *time.Location
		start, end string
	}{
		{"day", time.UTC, "2026-03-04T00:00:00Z", "2026-03-05T00:00:00Z"},
		{"day", shanghai, "2026-03-04T16:00:00Z", "2026-03-05T16:00:00Z"},
		{"day", kolkata, "2026-03-04T18:30:00Z", "2026-03-05T18:30:00Z"},
		{"week", time.UTC, "2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z"},
		{"week", shanghai, "2026-03-01T16:00:00Z", "2026-03-08T16:00:00Z"},
		{"month", time.UTC, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"},
		{"month", shanghai, "2026-02-28T16:00:00Z", "2026-03-31T16:00:00Z"},
		{"5h", time.UTC, "2026-03-04T15:15:00Z", "0001-01-01T00:00:00Z"},
	} {
		w, _ := ParseWindow(tc.window)
		s, e := w.Bounds(at, tc.loc)
		if got := s.Format(time.RFC3339) + " " + e.Format(time.RFC3339); got != tc.start+" "+tc.end {
			t.Errorf("%s in %s: %s, want %s %s", tc.window, tc.loc, got, tc.start, tc.end)
		}
	}
	// Sunday belongs to the week that began on Monday.
	w, _ := ParseWindow("week")
	if s, _ := w.Bounds(time.Date(2026, 3, 8, 23, 0, 0, 0, time.UTC), time.UTC); s.Day() != 2 {
		t.Errorf("a Sunday's week starts on the %d", s.Day())
	}
}

func TestParseScope(t *testing.T) {
	for _, in := range []string{"all", "user:u1", "group:g-1", "role:admin", "role:user"} {
		s, err := ParseScope(in)
		if err != nil || s.String() != in {
			t.Errorf("ParseScope(%q) = %v, %v", in, s, err)
		}
	}
	for _, in := range []string{"", "everyone", "user:", "role:root", "team:x", "user"} {
		if _, err := ParseScope(in); err == nil {
			t.Errorf("ParseScope(%q) accepted", in)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		ok   bool
	}{
		{"gpt-4*", "gpt-4o", true}, {"gpt-4*", "gpt-3.5", false}, {"*", "", true},
		{"*gpt*", "openrouter/gpt-4o", true}, {"o?", "o1", true}, {"o?", "o10", false},
		{"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"GPT-4o", "gpt-4o", false},
	} {
		if got := Match(tc.p, tc.s); got != tc.ok {
			t.Errorf("Match(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

func lim(id int64, scope string, amount int64, window string, models ...string) Limit {
	s, err := ParseScope(scope)
	if err != nil {
		panic(err)
	}
	w, err := ParseWindow(window)
	if err != nil {
		panic(err)
	}
	return Limit{ID: id, Scope: s, Measure: Cost, Amount: amount, Window: w, Models: models}
}

func TestEffective(t *testing.T) {
	limits := []Limit{
		lim(1, "all", 1, "day"),
		lim(2, "role:user", 2, "day"),
		lim(3, "group:interns", 3, "day"),
		lim(4, "group:staff", 4, "day"),
		lim(5, "group:staff", 40, "month"),
		lim(6, "user:u1", 6, "day"),
		lim(7, "all", 7, "day", "gpt-4*"),
		lim(8, "all", 8, "5h"),
	}
	ids := func(ls []Limit) string {
		var s []int64
		for _, l := range ls {
			s = append(s, l.ID)
		}
		return fmt.Sprint(s)
	}
	for _, tc := range []struct {
		subject Subject
		model   string
		want    string
	}{
		{Subject{UserID: "u9", Role: "admin"}, "llama3", "[1 8]"},
		{Subject{UserID: "u9", Role: "user"}, "llama3", "[2 8]"},
		{Subject{UserID: "u9", Role: "user", Groups: []string{"interns"}}, "llama3", "[3 8]"},
		{Subject{UserID: "u9", Role: "user", Groups: []string{"interns", "staff"}}, "llama3", "[4 5 8]"}, // the most generous group
		{Subject{UserID: "u1", Role: "user", Groups: []string{"interns", "staff"}}, "llama3", "[6 5 8]"}, // their own replaces the groups'
		{Subject{UserID: "u1", Role: "user"}, "gpt-4o", "[6 7 8]"},
		{Subject{UserID: "u1", Role: "user"}, "", "[6 7 8]"},
	} {
		if got := ids(Effective(limits, tc.subject, tc.model)); got != tc.want {
			t.Errorf("Effective(%+v, %q) = %s, want %s", tc.subject, tc.model, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := lim(0, "group:g", 5, "day", "gpt-*")
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for field, l := range map[string]Limit{
		"amount": {Scope: ok.Scope, Measure: Cost, Amount: -1, Window: ok.Window},
		"shared": {Scope: Scope{Kind: "user", ID: "u"}, Measure: Cost, Window: ok.Window, Shared: true},
		"models": {Scope: ok.Scope, Measure: Cost, Window: ok.Window, Models: []string{"gpt-[45]"}},
	} {
		if err := l.Validate(); err == nil || err.Error()[:len(field)] != field {
			t.Errorf("Validate(%s) = %v, want an error naming %s", field, err, field)
		}
	}
}

func TestGrantNext(t *testing.T) {
	month, _ := ParseWindow("month")
	reset := Grant{Mode: "reset", Amount: money.Units(5), Window: month}
	add := Grant{Mode: "add", Amount: money.Units(2), Cap: money.Units(8), Window: month}
	for _, tc := range []struct {
		g        Grant
		from, to money.Amount
	}{
		{reset, money.Units(-3), money.Units(5)}, {reset, money.Units(9), money.Units(5)},
		{add, money.Units(1), money.Units(3)}, {add, money.Units(7), money.Units(8)}, {add, money.Units(9), money.Units(9)},
		{add, money.Max, money.Max},
	} {
		if got := tc.g.Next(tc.from); got != tc.to {
			t.Errorf("%s grant on %v = %v, want %v", tc.g.Mode, tc.from, got, tc.to)
		}
	}
	if err := (Grant{Mode: "add", Amount: money.Units(2), Cap: money.Units(1), Window: month}).Validate(); err == nil {
		t.Error("an add grant with a cap below its amount validated")
	}
}
