package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// observedEnv is owmon in front of a fake OpenWebUI, with Caddy's log in
// a JSON file and Caddy's metrics served by the `metrics` handler.
type observedEnv struct {
	*edgeEnv
	metricsURL string
	logPath    string
	bobKey     string // a user with nothing left
	caddyfile  string
}

func startObserved(t *testing.T, extra string) *observedEnv {
	t.Helper()
	e := &edgeEnv{provider: fakeowui.NewProvider(t), database: sqliteDB(t)}
	e.owui = fakeowui.NewOpenWebUI(t, e.provider)
	e.jwt, e.key = e.owui.AddUser("alice", "alice@example.com", "Alice", "user")
	_, bobKey := e.owui.AddUser("bob", "bob@example.com", "Bob", "user")
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	port, metricsPort := freePort(t), freePort(t)
	cf := fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		output file %s
		format json
		level INFO
	}
	openwebui_monitor {
		database %s
		openwebui %s
		webui_secret_key %s
		api_key %s
		access_token admin-secret-token
		init_balance 100
		hold_output_tokens 16
		%s
	}
}

:%d {
	openwebui_monitor
	reverse_proxy %s
}

:%d {
	metrics
}
`, logPath, e.database, e.owui.URL(), e.owui.Secret(), testAPIKey, extra, port, e.owui.URL(), metricsPort)
	run(t, cf)
	e.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	e.st = activeStore(t)
	// 1 per input token, 2 per output token.
	if _, err := e.st.PutModelPrice(context.Background(), store.ModelPrice{ID: "gpt-4o", Input: money.Units(1_000_000), Output: money.Units(2_000_000), PerMessage: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.UpsertUser(context.Background(), store.UserInfo{ID: "bob"}, 0); err != nil {
		t.Fatal(err)
	}
	return &observedEnv{edgeEnv: e, metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), logPath: logPath, bobKey: bobKey, caddyfile: cf}
}

// scrape reads the owmon series from /metrics: series (name{labels}, as
// Prometheus's text format writes it) → value.
func (o *observedEnv) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := client.Get(o.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "owmon_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// waitSeries scrapes until series reaches want (settlements are written
// just after the answer), and returns the last scrape.
func (o *observedEnv) waitSeries(t *testing.T, series string, want float64) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := o.scrape(t)
		if m[series] == want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v; scraped:\n%s", series, m[series], want, dump(m))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dump(m map[string]float64) string {
	var b strings.Builder
	for k, v := range m {
		fmt.Fprintf(&b, "%s %v\n", k, v)
	}
	return b.String()
}

// logLines reads Caddy's JSON log: the lines whose msg is one of msgs.
func (o *observedEnv) logLines(t *testing.T, msgs ...string) (lines []map[string]any, raw []byte) {
	t.Helper()
	raw, err := os.ReadFile(o.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		for _, msg := range msgs {
			if m["msg"] == msg {
				lines = append(lines, m)
			}
		}
	}
	return lines, raw
}

// charge makes one charge on each metered path it tests: a chat through
// the gate (API key; 12 input and 7 output tokens: 26) and the function's
// outlet (10 and 5 reported: 20); and two refusals: Bob, who has nothing
// left, at the gate (402), and an outlet with a wrong key (401).
func (o *observedEnv) charge(t *testing.T) {
	t.Helper()
	resp := o.do(t, context.Background(), "/api/chat/completions", o.key, fmt.Sprintf(chatBody, false))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("chat: %d %s", resp.StatusCode, b)
	}
	status, b, err := post(o.url+"/api/v1/outlet", outletBody("carol", "m1",
		`{"role":"assistant","content":"Here is something secret-answer-text.","usage":{"prompt_tokens":10,"completion_tokens":5}}`))
	if err != nil || status != 200 {
		t.Fatalf("outlet: %d %s %v", status, b, err)
	}
	resp = o.do(t, context.Background(), "/api/chat/completions", o.bobKey, fmt.Sprintf(chatBody, false))
	resp.Body.Close()
	if resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("bob: %d", resp.StatusCode)
	}
	resp = o.do(t, context.Background(), "/api/v1/outlet", "sk-wrong-function-key", outletBody("carol", "m2", `{"role":"assistant","content":"x"}`))
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d", resp.StatusCode)
	}
}

// TestMetricsThroughCaddy charges on the gate and the function's outlet,
// refuses at both, and reads the owmon series from Caddy's /metrics.
func TestMetricsThroughCaddy(t *testing.T) {
	o := startObserved(t, "")
	o.charge(t)
	m := o.waitSeries(t, `owmon_charges_total{path="edge",status="completed"}`, 1)
	want := map[string]float64{
		`owmon_charges_total{path="edge",status="completed"}`:             1,
		`owmon_charges_total{path="function",status="completed"}`:         1,
		`owmon_cost_total{model="gpt-4o"}`:                                46, // 26 + 20, exactly
		`owmon_tokens_total{kind="input",model="gpt-4o"}`:                 22,
		`owmon_tokens_total{kind="output",model="gpt-4o"}`:                12,
		`owmon_refusals_total{path="edge",reason="insufficient_balance"}`: 1,
		`owmon_refusals_total{path="function",reason="unauthorized"}`:     1,
		`owmon_identity_lookups_total{result="ok"}`:                       2, // alice's key, bob's key
		`owmon_settle_seconds_count`:                                      2,
		`owmon_holds_open`:                                                0,
		`owmon_settlements_pending`:                                       0,
		`owmon_store_errors_total`:                                        0,
	}
	for series, v := range want {
		got, ok := m[series]
		if !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	// Labels stay bounded: no user ids anywhere in the series.
	for series := range m {
		for _, user := range []string{"alice", "bob", "carol"} {
			if strings.Contains(series, user) {
				t.Errorf("series %s names a user", series)
			}
		}
	}
	// The second call of the same key is answered from the cache.
	resp := o.do(t, context.Background(), "/api/chat/completions", o.key, fmt.Sprintf(chatBody, false))
	resp.Body.Close()
	m = o.waitSeries(t, `owmon_charges_total{path="edge",status="completed"}`, 2)
	if m[`owmon_identity_lookups_total{result="cache_hit"}`] < 1 {
		t.Errorf("no cache hit counted:\n%s", dump(m))
	}
	if m[`owmon_cost_total{model="gpt-4o"}`] != 72 {
		t.Errorf("cost %v, want 72", m[`owmon_cost_total{model="gpt-4o"}`])
	}
	// A config reload registers the same counters in the new config's
	// registry: they go on counting.
	cfg, err := adapt(t, o.caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("reload: %v", err)
	}
	m = o.scrape(t)
	if m[`owmon_charges_total{path="edge",status="completed"}`] != 2 || m[`owmon_holds_open`] != 0 {
		t.Errorf("after a reload:\n%s", dump(m))
	}
}

// TestChargeAndRefusalLogLines reads Caddy's log: one line per charge and
// per refusal, with the fields an operator needs, and no secret, prompt or
// answer in the whole log. With log_charges off the charge lines go; the
// refusals stay.
func TestChargeAndRefusalLogLines(t *testing.T) {
	t.Run("on", func(t *testing.T) {
		o := startObserved(t, "")
		o.charge(t)
		o.waitSeries(t, `owmon_charges_total{path="edge",status="completed"}`, 1)
		charges, raw := o.logLines(t, "charge")
		if len(charges) != 2 {
			t.Fatalf("%d charge lines, want 2:\n%s", len(charges), raw)
		}
		byPath := map[string]map[string]any{}
		for _, c := range charges {
			byPath[fmt.Sprint(c["path"])] = c
		}
		for path, want := range map[string]map[string]any{
			"edge":     {"user": "alice", "model": "gpt-4o", "status": "completed", "cost": "26", "input_tokens": 12.0, "output_tokens": 7.0, "purpose": "chat"},
			"function": {"user": "carol", "model": "gpt-4o", "status": "completed", "cost": "20", "input_tokens": 10.0, "output_tokens": 5.0, "balance": "80"},
		} {
			got := byPath[path]
			if got == nil {
				t.Fatalf("no charge line for %s:\n%s", path, raw)
			}
			if got["logger"] != "openwebui_monitor" || got["level"] != "info" {
				t.Errorf("%s charge line not Caddy's openwebui_monitor logger at info: %v", path, got)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s charge line %s = %v, want %v (%v)", path, k, got[k], v, got)
				}
			}
		}
		refusals, _ := o.logLines(t, "refused")
		reasons := map[string]map[string]any{}
		for _, r := range refusals {
			reasons[fmt.Sprint(r["path"], "/", r["reason"])] = r
		}
		if r := reasons["edge/insufficient_balance"]; r == nil || r["user"] != "bob" || r["status"] != 402.0 || r["model"] != "gpt-4o" {
			t.Errorf("gate refusal line %v (all: %v)", r, refusals)
		}
		if r := reasons["function/unauthorized"]; r == nil || r["status"] != 401.0 {
			t.Errorf("outlet refusal line %v (all: %v)", r, refusals)
		}
		for _, secret := range []string{testAPIKey, "sk-wrong-function-key", o.key, o.bobKey, o.jwt, "admin-secret-token",
			o.owui.Secret(), "Say hello", "Be brief", "Tell me something", "secret-answer-text", fakeowui.DefaultReply().Text} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("the log holds %q:\n%s", secret, raw)
			}
		}
	})
	t.Run("off", func(t *testing.T) {
		o := startObserved(t, "log_charges off")
		o.charge(t)
		o.waitSeries(t, `owmon_charges_total{path="edge",status="completed"}`, 1)
		o.waitSeries(t, `owmon_charges_total{path="function",status="completed"}`, 1)
		if charges, raw := o.logLines(t, "charge"); len(charges) != 0 {
			t.Fatalf("log_charges off still logs %d charge lines:\n%s", len(charges), raw)
		}
		if refusals, raw := o.logLines(t, "refused"); len(refusals) != 2 {
			t.Fatalf("%d refusal lines with log_charges off, want 2:\n%s", len(refusals), raw)
		}
	})
}

// TestAdminChangesAreLogged changes a balance and a price through the
// admin API and finds who, what, the old and the new value in the log.
func TestAdminChangesAreLogged(t *testing.T) {
	o := startObserved(t, "")
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPut, "/monitor/api/v1/users/bob/balance", `{"balance": 12.5, "reason": "top up"}`},
		{http.MethodPost, "/monitor/api/v1/models/price", `{"updates": [{"id": "gpt-4o", "input_price": 3, "output_price": 4, "per_msg_price": -1}]}`},
	} {
		req, _ := http.NewRequest(c.method, o.url+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer admin-secret-token")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, resp.StatusCode, b)
		}
	}
	lines, raw := o.logLines(t, "admin set a balance", "admin changed a price")
	if len(lines) != 2 {
		t.Fatalf("%d admin lines, want 2:\n%s", len(lines), raw)
	}
	for _, l := range lines {
		var want map[string]any
		switch l["msg"] {
		case "admin set a balance":
			want = map[string]any{"actor": "admin", "user": "bob", "old_balance": "0", "new_balance": "12.5", "reason": "top up"}
		default:
			want = map[string]any{"actor": "admin", "model": "gpt-4o", "old_input_price": "1000000", "input_price": "3",
				"old_output_price": "2000000", "output_price": "4"}
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("%s: %s = %v, want %v (%v)", l["msg"], k, l[k], v, l)
			}
		}
	}
	if bytes.Contains(raw, []byte("admin-secret-token")) {
		t.Errorf("the log holds the access token:\n%s", raw)
	}
}
