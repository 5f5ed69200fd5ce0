package money

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
)

func TestParseAndString(t *testing.T) {
	cases := []struct {
		in   string
		want Amount
		text string
	}{
		{"0", 0, "0"},
		{"12", 12 * Scale, "12"},
		{"-0.5", -Scale / 2, "-0.5"},
		{"0.000000001", 1, "0.000000001"},
		{"1.25e-3", 1_250_000, "0.00125"},
		{"2.5E+2", 250 * Scale, "250"},
		{"+3.", 3 * Scale, "3"},
		{".75", 750_000_000, "0.75"},
		{"60", 60 * Scale, "60"},
		{"0.1000000000", 100_000_000, "0.1"},
		{"9223372036.854775807", math.MaxInt64, "9223372036.854775807"},
		{"1e-9", 1, "0.000000001"},
		{"-0", 0, "0"},
	}
	for _, c := range cases {
		got, err := Parse(c.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.in, err)
		}
		if got != c.want {
			t.Fatalf("Parse(%q) = %d, want %d", c.in, got, c.want)
		}
		if s := got.String(); s != c.text {
			t.Fatalf("String(%d) = %q, want %q", got, s, c.text)
		}
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]error{
		"":                     ErrSyntax,
		"abc":                  ErrSyntax,
		"1.2.3":                ErrSyntax,
		".":                    ErrSyntax,
		"1e":                   ErrSyntax,
		"0x10":                 ErrSyntax,
		"NaN":                  ErrSyntax,
		"0.0000000001":         ErrPrecision,
		"1e-10":                ErrPrecision,
		"9223372036.854775808": ErrRange,
		"100000000000":         ErrRange,
	}
	for in, want := range cases {
		if _, err := Parse(in); !errors.Is(err, want) {
			t.Errorf("Parse(%q) error = %v, want %v", in, err, want)
		}
	}
}

func TestJSON(t *testing.T) {
	var v struct {
		A Amount `json:"a"`
		B Amount `json:"b"`
	}
	if err := json.Unmarshal([]byte(`{"a": 0.1, "b": "2.5"}`), &v); err != nil {
		t.Fatal(err)
	}
	// Ten times 0.1 is exactly 1: no binary floating point involved.
	sum := Amount(0)
	for i := 0; i < 10; i++ {
		sum += v.A
	}
	if sum != Scale {
		t.Fatalf("10 × 0.1 = %s", sum)
	}
	out, _ := json.Marshal(v)
	if string(out) != `{"a":0.1,"b":2.5}` {
		t.Fatalf("marshal = %s", out)
	}
	if err := json.Unmarshal([]byte(`{"a": true}`), &v); err == nil {
		t.Fatal("accepted a boolean")
	}
}

func TestAddSaturates(t *testing.T) {
	if got := Amount(math.MaxInt64).Add(1); got != math.MaxInt64 {
		t.Fatalf("overflow wrapped to %d", got)
	}
	if got := Amount(math.MinInt64).Add(-1); got != math.MinInt64 {
		t.Fatalf("underflow wrapped to %d", got)
	}
	if got := Amount(5).Add(-7); got != -2 {
		t.Fatalf("5-7 = %d", got)
	}
}

func TestParseEnds(t *testing.T) {
	for _, a := range []Amount{Max, Min, Min + 1} {
		if got, err := Parse(a.String()); err != nil || got != a {
			t.Errorf("Parse(%s) = %d, %v", a, got, err)
		}
	}
	for _, s := range []string{"9223372036.854775808", "-9223372036.854775809"} {
		if _, err := Parse(s); err != ErrRange {
			t.Errorf("Parse(%s): %v, want ErrRange", s, err)
		}
	}
}

func TestCheckedArithmetic(t *testing.T) {
	cases := []struct {
		a, b   Amount
		sum    Amount
		sumOK  bool
		diff   Amount
		diffOK bool
	}{
		{5, 7, 12, true, -2, true},
		{Max, 1, 0, false, Max - 1, true},
		{Max, -1, Max - 1, true, 0, false},
		{Min, -1, 0, false, Min + 1, true},
		{Min, 1, Min + 1, true, 0, false},
		{0, Min, Min, true, 0, false},
		{-1, Min, 0, false, Max, true},
		{Max, Min, -1, true, 0, false},
	}
	for _, c := range cases {
		if s, ok := c.a.AddChecked(c.b); ok != c.sumOK || ok && s != c.sum {
			t.Errorf("%d + %d = %d, %v", c.a, c.b, s, ok)
		}
		if d, ok := c.a.SubChecked(c.b); ok != c.diffOK || ok && d != c.diff {
			t.Errorf("%d - %d = %d, %v", c.a, c.b, d, ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "1.5", "-2e3", "0.000000001", "9223372036.854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(v.String())
		if err != nil || back != v {
			t.Fatalf("round trip %q -> %s -> %d (%v)", s, v, back, err)
		}
	})
}
