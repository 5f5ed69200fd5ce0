// Package pricing turns token counts into money.
//
// Prices are per 1M tokens, in money.Amount (nano-units). The cost of one
// answer is computed exactly as (in·Input + out·Output) / 1,000,000 nano-units
// in 128-bit integer arithmetic and rounded once, half away from zero, to a
// whole nano-unit. Nothing else rounds: 10M tokens at 1,000 per 1M is
// 10,000 units exactly, and one token at 0.15 per 1M is 150 nano-units.
package pricing

import (
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/openwebui-monitor/owmon/internal/money"
)

// TokensPerPrice is the number of tokens a price is quoted for.
const TokensPerPrice = 1_000_000

// Price is what a model costs.
type Price struct {
	Input      money.Amount // per 1M input tokens
	Output     money.Amount // per 1M output tokens
	PerMessage money.Amount // flat price per answer; negative: bill by tokens
}

// PerMessageBilling reports whether answers are billed at a flat price.
func (p Price) PerMessageBilling() bool { return p.PerMessage >= 0 }

// Validate rejects negative token prices.
func (p Price) Validate() error {
	if p.Input < 0 {
		return fmt.Errorf("input price %s is negative", p.Input)
	}
	if p.Output < 0 {
		return fmt.Errorf("output price %s is negative", p.Output)
	}
	return nil
}

// Cost is the price of one answer with in input and out output tokens.
// Negative counts are treated as zero; a result beyond an int64 saturates.
func (p Price) Cost(in, out int64) money.Amount {
	c, _ := p.CostChecked(in, out)
	return c
}

// CostChecked is Cost that also reports whether the exact cost fits in an
// Amount: false (with money.Max) when it does not.
func (p Price) CostChecked(in, out int64) (money.Amount, bool) {
	if p.PerMessageBilling() {
		return p.PerMessage, true
	}
	aHi, aLo := mul(in, p.Input)
	bHi, bLo := mul(out, p.Output)
	lo, carry := bits.Add64(aLo, bLo, 0)
	hi, over := bits.Add64(aHi, bHi, carry)
	// Round half away from zero: add half the divisor before dividing.
	lo, carry = bits.Add64(lo, TokensPerPrice/2, 0)
	hi, over2 := bits.Add64(hi, 0, carry)
	if over|over2 != 0 || hi >= TokensPerPrice {
		return math.MaxInt64, false
	}
	q, _ := bits.Div64(hi, lo, TokensPerPrice)
	if q > math.MaxInt64 {
		return math.MaxInt64, false
	}
	return money.Amount(q), true
}

func mul(tokens int64, price money.Amount) (hi, lo uint64) {
	if tokens <= 0 || price <= 0 {
		return 0, 0
	}
	return bits.Mul64(uint64(tokens), uint64(price))
}

// InletCosts are the pre-charges taken when a chat starts (COST_ON_INLET):
// one default amount and amounts for named models.
type InletCosts struct {
	Default  money.Amount
	PerModel map[string]money.Amount
}

// ParseInletCosts reads "0.05" (every model) or "gpt-4o:0.05,llama3:latest:0.01"
// (per model; the amount follows the last colon, so model ids may contain
// colons; the model name "default" sets the default).
func ParseInletCosts(s string) (InletCosts, error) {
	var c InletCosts
	s = strings.TrimSpace(s)
	if s == "" {
		return c, nil
	}
	if v, err := money.Parse(s); err == nil {
		if v < 0 {
			return c, fmt.Errorf("amount %q is negative", s)
		}
		c.Default = v
		return c, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		i := strings.LastIndexByte(item, ':')
		if i <= 0 {
			return InletCosts{}, fmt.Errorf("item %q is not model:amount", item)
		}
		model, amount := strings.TrimSpace(item[:i]), strings.TrimSpace(item[i+1:])
		v, err := money.Parse(amount)
		if err != nil {
			return InletCosts{}, fmt.Errorf("item %q: amount %q: %v", item, amount, err)
		}
		if v < 0 {
			return InletCosts{}, fmt.Errorf("item %q: amount is negative", item)
		}
		if model == "default" {
			c.Default = v
			continue
		}
		if c.PerModel == nil {
			c.PerModel = make(map[string]money.Amount)
		}
		c.PerModel[model] = v
	}
	return c, nil
}

// For returns the pre-charge for a model.
func (c InletCosts) For(model string) money.Amount {
	if v, ok := c.PerModel[model]; ok {
		return v
	}
	return c.Default
}

// BaseCandidates lists, in order, the models whose price a model without a
// price of its own may inherit: the OpenWebUI base model it wraps
// (info.base_model_id), then the id after its last '.', which is how pipe
// functions name the provider models they expose ("my_pipe.gpt-4o").
func BaseCandidates(model, baseModelID string) []string {
	var out []string
	if baseModelID != "" && baseModelID != model {
		out = append(out, baseModelID)
	}
	if i := strings.LastIndexByte(model, '.'); i >= 0 && i < len(model)-1 {
		if suffix := model[i+1:]; suffix != baseModelID {
			out = append(out, suffix)
		}
	}
	return out
}
