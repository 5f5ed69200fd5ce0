package pricing

import (
	"math"
	"math/big"
	"testing"

	"github.com/openwebui-monitor/owmon/internal/money"
)

func amount(t *testing.T, s string) money.Amount {
	t.Helper()
	v, err := money.Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return v
}

func TestCost(t *testing.T) {
	cases := []struct {
		name          string
		in, out       string // prices per 1M
		perMsg        string
		inTok, outTok int64
		want          string
	}{
		{"one token at 0.15", "0.15", "0.6", "-1", 1, 0, "0.00000015"},
		{"mixed", "2.5", "10", "-1", 1200, 350, "0.0065"},
		{"ten million at 1000", "1000", "1000", "-1", 10_000_000, 10_000_000, "20000"},
		{"rounds half up once", "0.0015", "0", "-1", 1, 0, "0.000000002"},
		{"below half rounds down", "0.0014", "0", "-1", 1, 0, "0.000000001"},
		{"per message", "60", "60", "0.02", 5000, 5000, "0.02"},
		{"per message zero is free", "60", "60", "0", 5000, 5000, "0"},
		{"negative tokens count as zero", "1", "1", "-1", -5, 1_000_000, "1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Price{Input: amount(t, c.in), Output: amount(t, c.out), PerMessage: amount(t, c.perMsg)}
			got := p.Cost(c.inTok, c.outTok)
			if want := amount(t, c.want); got != want {
				t.Fatalf("Cost(%d,%d) = %s, want %s", c.inTok, c.outTok, got, want)
			}
		})
	}
}

func TestCostChecked(t *testing.T) {
	p := Price{Input: amount(t, "60"), Output: amount(t, "60"), PerMessage: -1}
	if c, ok := p.CostChecked(100_000_000, 100_000_000); !ok || c != amount(t, "12000") {
		t.Fatalf("1e8+1e8 tokens at 60 per 1M: %s, %v", c, ok)
	}
	if c, ok := p.CostChecked(math.MaxInt64, 0); ok || c != math.MaxInt64 {
		t.Fatalf("2^63-1 tokens at 60 per 1M: %s, %v (want overflow)", c, ok)
	}
	// Just inside and just outside: 1 per 1M tokens is 1000 nano-units a
	// token, so MaxInt64/1000 tokens fit and a few more do not.
	one := Price{Input: amount(t, "1"), PerMessage: -1}
	if _, ok := one.CostChecked(math.MaxInt64/1000, 0); !ok {
		t.Fatal("the largest count that fits overflowed")
	}
	if _, ok := one.CostChecked(math.MaxInt64/1000+1, 0); ok {
		t.Fatal("a count one past the largest fitted")
	}
}

// TestCostMatchesBigRat checks the 128-bit arithmetic against math/big on
// values that overflow 64 bits in the intermediate product.
func TestCostMatchesBigRat(t *testing.T) {
	prices := []money.Amount{1, 7, 150, 999_999, 1_000_000_000_000, 123_456_789_012}
	toks := []int64{0, 1, 3, 999_999, 10_000_000, 1 << 40}
	for _, pi := range prices {
		for _, po := range prices {
			for _, a := range toks {
				for _, b := range toks {
					p := Price{Input: pi, Output: po, PerMessage: -1}
					got := p.Cost(a, b)
					num := new(big.Int).Mul(big.NewInt(a), big.NewInt(int64(pi)))
					num.Add(num, new(big.Int).Mul(big.NewInt(b), big.NewInt(int64(po))))
					num.Add(num, big.NewInt(TokensPerPrice/2))
					num.Quo(num, big.NewInt(TokensPerPrice))
					want := money.Amount(math.MaxInt64)
					if num.IsInt64() {
						want = money.Amount(num.Int64())
					}
					if got != want {
						t.Fatalf("Cost(%d,%d) at %d/%d = %d, want %d", a, b, pi, po, got, want)
					}
				}
			}
		}
	}
}

func TestParseInletCosts(t *testing.T) {
	c, err := ParseInletCosts("gpt-4o:0.05, llama3.2:latest:0.01,default:0.002")
	if err != nil {
		t.Fatal(err)
	}
	for model, want := range map[string]string{"gpt-4o": "0.05", "llama3.2:latest": "0.01", "other": "0.002"} {
		if got := c.For(model); got != amount(t, want) {
			t.Errorf("For(%q) = %s, want %s", model, got, want)
		}
	}
	c, err = ParseInletCosts("0.1")
	if err != nil || c.For("anything") != amount(t, "0.1") {
		t.Fatalf("plain number: %v %v", c, err)
	}
	for _, bad := range []string{"gpt-4o", "gpt-4o:abc", ":1", "gpt-4o:-1", "-0.5", "a:1,,b:2"} {
		if _, err := ParseInletCosts(bad); err == nil {
			t.Errorf("ParseInletCosts(%q) accepted", bad)
		}
	}
}

func TestBaseCandidates(t *testing.T) {
	cases := map[[2]string][]string{
		{"my-assistant", "gpt-4o"}: {"gpt-4o"},
		{"my_pipe.gpt-4o", ""}:     {"gpt-4o"},
		{"gpt-4.1", ""}:            {"1"},
		{"plain", ""}:              nil,
		{"x.y", "y"}:               {"y"},
		{"trailing.", ""}:          nil,
	}
	for in, want := range cases {
		got := BaseCandidates(in[0], in[1])
		if len(got) != len(want) {
			t.Fatalf("BaseCandidates(%q,%q) = %q, want %q", in[0], in[1], got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("BaseCandidates(%q,%q) = %q, want %q", in[0], in[1], got, want)
			}
		}
	}
}
