package function

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/ledger"
)

// TestInletRefusesOverBudget: in the function-only deployment the inlet
// refuses a chat over a budget limit as the function reads a refusal
// (200, success false, the message in "error"), saying which limit, what
// was used and when it resets; the limit covers only its models.
func TestInletRefusesOverBudget(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.Budgets = &ledger.Budgets{}
	eachBackend(t, cfg, func(t *testing.T, f *fixture) {
		day, _ := budget.ParseWindow("day")
		if _, err := f.st.PutLimit(context.Background(), budget.Limit{Scope: budget.Scope{Kind: "role", ID: "user"},
			Measure: budget.Messages, Amount: 1, Window: day, Models: []string{"gpt-4*"}}); err != nil {
			t.Fatal(err)
		}
		reply := withReply(`{"role":"assistant","content":"Bonjour","usage":{"prompt_tokens":10,"completion_tokens":5}}`)
		if status, r := f.post(t, "/api/v1/inlet", inletBody("u1", "gpt-4o", "c1", "m1")); status != http.StatusOK || !r.Get("success").Bool() {
			t.Fatalf("first inlet: %d %s", status, r.Raw)
		}
		if status, r := f.post(t, "/api/v1/outlet", filterBody("u1", "gpt-4o", "c1", "m1", reply)); status != http.StatusOK {
			t.Fatalf("outlet: %d %s", status, r.Raw)
		}
		status, r := f.post(t, "/api/v1/inlet", inletBody("u1", "gpt-4o", "c1", "m2"))
		msg := r.Get("error").Str
		if status != http.StatusOK || r.Get("success").Bool() || r.Get("message").Str != msg ||
			!strings.HasPrefix(msg, "Budget limit reached: messages per day on gpt-4* (role:user). Used 1 of 1; it resets at ") ||
			r.Get("limit.used").Raw != "1" || r.Get("limit.amount").Raw != "1" || r.Get("limit.resets_at").Str == "" {
			t.Fatalf("inlet over the limit: %d %s", status, r.Raw)
		}
		// Another model is not limited.
		if status, r := f.post(t, "/api/v1/inlet", inletBody("u1", "llama3", "c1", "m3")); status != http.StatusOK || !r.Get("success").Bool() {
			t.Fatalf("inlet for another model: %d %s", status, r.Raw)
		}
	})
}
