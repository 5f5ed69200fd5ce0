package ledger

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/money"
)

// LimitJSON is a budget limit with its window's usage, as every endpoint
// writes it: the admin API (a user's limits), the function's endpoints (a
// refusal) and the user's own page (/me). Amounts are in the limit's
// measure: an exact decimal string for cost, an integer for tokens and
// messages.
type LimitJSON struct {
	ID          int64           `json:"id"`
	Scope       string          `json:"scope"`
	Measure     string          `json:"measure"`
	Window      string          `json:"window"`
	Models      []string        `json:"models,omitempty"`
	Shared      bool            `json:"shared"`
	Description string          `json:"description"`
	Amount      json.RawMessage `json:"amount"`
	Used        json.RawMessage `json:"used"`
	Remaining   json.RawMessage `json:"remaining"`
	StartsAt    time.Time       `json:"starts_at"`
	ResetsAt    time.Time       `json:"resets_at"`
}

// MeasureJSON writes an amount of a limit's measure: a decimal string for
// cost, an integer for the counts.
func MeasureJSON(l budget.Limit, v int64) json.RawMessage {
	if l.Measure == budget.Cost {
		return json.RawMessage(strconv.Quote(money.Amount(v).String()))
	}
	return json.RawMessage(strconv.FormatInt(v, 10))
}

// JSON is the limit and its usage as LimitJSON.
func (s LimitStatus) JSON() LimitJSON {
	l := s.Limit
	return LimitJSON{ID: l.ID, Scope: l.Scope.String(), Measure: string(l.Measure), Window: l.Window.String(),
		Models: l.Models, Shared: l.Shared, Description: l.Describe(), Amount: MeasureJSON(l, l.Amount),
		Used: MeasureJSON(l, s.Used), Remaining: MeasureJSON(l, s.Remaining), StartsAt: s.Start.UTC(), ResetsAt: s.Reset.UTC()}
}
