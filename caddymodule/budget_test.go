package caddymodule

// Budget limits at the gate: a call over a limit is refused with 429 in
// the error shape of its API, saying which limit, what was used and when
// it resets, with Retry-After; the official client libraries and
// OpenWebUI's web UI ("detail") read it.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/testpg"
)

// exhaust gives everyone a daily limit of zero messages: any call that
// reaches OpenWebUI is one the gate let through over a limit.
func (e *edgeEnv) exhaust(t *testing.T) {
	t.Helper()
	day, _ := budget.ParseWindow("day")
	if _, err := e.st.PutLimit(context.Background(), budget.Limit{Scope: budget.Scope{Kind: "all"},
		Measure: budget.Messages, Amount: 0, Window: day}); err != nil {
		t.Fatal(err)
	}
}

func TestGateBudgetRefusalsEveryClientReads(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	e.exhaust(t)
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	for _, c := range []struct{ path, body, shape string }{
		{"/ollama/api/chat", `{"model":"gpt-4o",` + msgs + `}`, "ollama"},
		{"/ollama/api/generate/0", `{"model":"gpt-4o","prompt":"hi"}`, "ollama"},
		{"/api/v1/messages", `{"model":"gpt-4o","max_tokens":10,` + msgs + `}`, "anthropic"},
		{"/api/chat/completions", `{"model":"gpt-4o",` + msgs + `}`, "openai"},
		{"/ollama/v1/chat/completions", `{"model":"gpt-4o",` + msgs + `}`, "openai"},
	} {
		req, _ := http.NewRequest(http.MethodPost, e.url+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+e.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		j := gjson.ParseBytes(b)
		var msg string
		switch c.shape {
		case "ollama":
			msg = j.Get("error").Str
		case "anthropic":
			if j.Get("type").Str == "error" && j.Get("error.type").Str == "budget_limit_exceeded" {
				msg = j.Get("error.message").Str
			}
		case "openai":
			if j.Get("error.type").Str == "budget_limit_exceeded" && j.Get("error.code").Str == "budget_limit_exceeded" {
				msg = j.Get("error.message").Str
			}
		}
		retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != http.StatusTooManyRequests || j.Get("detail").Str != msg ||
			!strings.HasPrefix(msg, "Budget limit reached: messages per day (all). Used 0 of 0; it resets at ") {
			t.Errorf("%s: %d %s", c.path, resp.StatusCode, b)
		}
		if retry < 1 || retry > 86400 || resp.Header.Get("X-Should-Retry") != "false" {
			t.Errorf("%s: Retry-After %q, X-Should-Retry %q", c.path, resp.Header.Get("Retry-After"), resp.Header.Get("X-Should-Retry"))
		}
		if n := e.modelCalls(strings.TrimSuffix(c.path, "/0")); n != 0 {
			t.Errorf("%s: %d calls reached OpenWebUI", c.path, n)
		}
	}
	// The user still has their balance: a limit takes nothing.
	if got := e.balance(t, "alice"); got.String() != "100" {
		t.Errorf("balance after the refusals: %v", got)
	}
}

// TestBudgetRefusalsThroughOfficialSDKs: each official library shows the
// application status 429 and exactly the gate's message (refusal.mjs runs
// them with no retries; X-Should-Retry: false also stops their default
// retries).
func TestBudgetRefusalsThroughOfficialSDKs(t *testing.T) {
	node, dir := sdkDir(t)
	e := startEdge(t, sqliteDB(t), "")
	e.exhaust(t)
	for _, c := range sdkCalls {
		t.Run(c.sdk+"/"+c.call, func(t *testing.T) {
			out := runSDK(t, node, dir, c.sdk, c.call, e.url, e.key)
			for _, problem := range sdkRefusalProblems(c.sdk, out, limitRefusal) {
				t.Error(problem)
			}
			if n := e.modelCalls(c.path); n != 0 {
				t.Errorf("%d calls reached OpenWebUI on %s", n, c.path)
			}
		})
	}
}

// BenchmarkEdgeBudgets is BenchmarkEdge's completions against an upstream
// answering in 50–150 ms, from 16 users, with budget limits that apply to
// every call and never refuse one: each user's own daily cost limit, their
// group's monthly token limit, a rolling message limit for everyone and a
// weekly limit on a model pattern ("limits"); the same with the group's
// limit a pool all 16 users share ("pool", which serialises their holds:
// see BenchmarkHolds in internal/store); and, to compare, no limits
// ("none"). On SQLite and on PostgreSQL, where it also reports the
// database server's CPU per call:
//
//	go test -run '^$' -bench BenchmarkEdgeBudgets -benchtime 1x ./caddymodule
func BenchmarkEdgeBudgets(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, limits := range []string{"none", "limits", "pool"} {
			b.Run(kind+"/"+limits, func(b *testing.B) {
				database := "sqlite://" + filepath.Join(b.TempDir(), "bench.db")
				if kind == "postgres" {
					database = testpg.DSN(b)
				}
				metered, plain, _ := benchSitesOn(b, database)
				st := activeStore(b)
				ctx := context.Background()
				var jwts, users []string
				for i := range 16 {
					id := fmt.Sprintf("bench%d", i)
					users = append(users, id)
					jwts = append(jwts, fakeowui.SignJWT("bench-secret", map[string]any{"id": id, "exp": time.Now().Add(time.Hour).Unix()}))
				}
				if limits != "none" {
					if err := st.SetGroups(ctx, []budget.Group{{ID: "staff", Name: "Staff", Members: users}}); err != nil {
						b.Fatal(err)
					}
					var specs []budget.Limit
					for _, u := range users {
						specs = append(specs, limitSpec(b, "user:"+u, "cost", "day", int64(money.Units(1_000_000_000)), false))
					}
					specs = append(specs,
						limitSpec(b, "group:staff", "tokens", "month", 1<<50, limits == "pool"),
						limitSpec(b, "all", "messages", "5h", 1<<40, false),
						limitSpec(b, "all", "cost", "week", int64(money.Units(1_000_000_000)), false, "gpt-4*"))
					for _, l := range specs {
						if _, err := st.PutLimit(ctx, l); err != nil {
							b.Fatal(err)
						}
					}
				}
				bodies := completionBodies(4000)
				db0 := postgresCPU()
				p, m := compare(b, 4, 64, 1000, func(site string, i int) error {
					return send(http.MethodPost, site+"/api/chat/completions", jwts[i%len(jwts)], bodies[i%len(bodies)], "X-Bench-Latency", "50ms-150ms")
				}, metered, plain)
				report(b, p, m)
				if kind == "postgres" {
					// PostgreSQL's own CPU per metered call (4,000 and 128 to warm up).
					b.ReportMetric(float64((postgresCPU()-db0).Microseconds())/4128, "db-cpu-µs/call")
				}
			})
		}
	}
}

func limitSpec(b *testing.B, scope, measure, window string, amount int64, shared bool, models ...string) budget.Limit {
	sc, err := budget.ParseScope(scope)
	if err != nil {
		b.Fatal(err)
	}
	w, err := budget.ParseWindow(window)
	if err != nil {
		b.Fatal(err)
	}
	return budget.Limit{Scope: sc, Measure: budget.Measure(measure), Amount: amount, Window: w, Shared: shared, Models: models}
}
