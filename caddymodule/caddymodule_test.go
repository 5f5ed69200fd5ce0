package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/testpg"
)

func TestMain(m *testing.M) {
	// Keep Caddy's autosave and data files out of the home directory.
	dir, err := os.MkdirTemp("", "owmon-caddy-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	os.Setenv("XDG_DATA_HOME", dir)
	code := testpg.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

const testAPIKey = "sk-function-key"

// adapt turns a Caddyfile into JSON config, as `caddy adapt` does.
func adapt(t testing.TB, caddyfile string) ([]byte, error) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return cfg, err
}

// run loads a Caddyfile into this process's Caddy, as `caddy run` does.
func run(t testing.TB, caddyfile string) {
	t.Helper()
	cfg, err := adapt(t, caddyfile)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}

func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// The kernel may hand the same free port out twice in a row: two
		// sites of one config on one port are an "ambiguous site definition".
		if !portsGiven[port] {
			portsGiven[port] = true
			return port
		}
	}
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// site is a monitor in front of a fake OpenWebUI, on a free port.
type site struct {
	url      string
	upstream *httptest.Server
	hits     atomic.Int64 // requests that reached OpenWebUI
}

func caddyfileFor(database string, port int, upstream, extra string) string {
	return fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		output discard
	}
	openwebui_monitor {
		database %s
		api_key %s
		init_balance 100
		%s
	}
}

:%d {
	openwebui_monitor
	reverse_proxy %s
}
`, database, testAPIKey, extra, port, upstream)
}

func startSite(t testing.TB, database, extra string) *site {
	t.Helper()
	s := &site{}
	s.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
	}))
	t.Cleanup(s.upstream.Close)
	port := freePort(t)
	run(t, caddyfileFor(database, port, s.upstream.URL, extra))
	s.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	return s
}

// databases names a fresh database of each kind.
func databases(t testing.TB) map[string]func() string {
	return map[string]func() string{
		"sqlite":   func() string { return "sqlite://" + filepath.Join(t.TempDir(), "monitor.db") },
		"postgres": func() string { return testpg.DSN(t) },
	}
}

// activeStore returns the one store the running config holds.
func activeStore(t testing.TB) store.Store {
	t.Helper()
	var found []store.Store
	stores.Range(func(_, v any) bool {
		found = append(found, v.(storeCloser).Store)
		return true
	})
	if len(found) != 1 {
		t.Fatalf("%d stores open, want 1", len(found))
	}
	return found[0]
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 0}}

func post(url, body string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	// Outlet calls are idempotent by message id; saying so lets the client
	// retry on a connection that a config reload closed.
	req.Header.Set("Idempotency-Key", "x")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func outletBody(user, msgID, reply string) string {
	return fmt.Sprintf(`{"user":{"id":%q,"email":"%s@example.com","name":"%s","role":"user"},
	"body":{"model":"gpt-4o","chat_id":"chat-%s","id":%q,"messages":[
	{"role":"user","content":"Tell me something."},%s]}}`, user, user, user, user, msgID, reply)
}

func TestRootCaddyfileAdapts(t *testing.T) {
	b, err := os.ReadFile("../Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := adapt(t, string(b))
	if err != nil {
		t.Fatalf("the root Caddyfile does not adapt: %v", err)
	}
	handlers := gjson.GetBytes(cfg, "apps.http.servers.srv0.routes.0.handle.#.handler").Array()
	var order []string
	for _, h := range handlers {
		order = append(order, h.Str)
	}
	if strings.Join(order, ",") != "openwebui_monitor,reverse_proxy" {
		t.Fatalf("handler order %v, want the monitor before reverse_proxy (config %s)", order, cfg)
	}
	if !gjson.GetBytes(cfg, "apps.openwebui_monitor").Exists() {
		t.Fatalf("no openwebui_monitor app in %s", cfg)
	}
	if got := gjson.GetBytes(cfg, "apps.http.servers.srv0.listen.0").Str; got != ":7878" {
		t.Fatalf("listens on %q, want :7878", got)
	}
}

func TestAdaptNamesTheBadOption(t *testing.T) {
	cases := map[string][]string{
		"cost_on_inlet gpt-4o:much": {"cost_on_inlet", "gpt-4o:much"},
		"default_input_price -1":    {"default_input_price", "-1"},
		"openwebui not-a-url":       {"openwebui", "not-a-url"},
		"database mysql://db/x":     {"database", "mysql://db/x"},
		"init_balance ten":          {"init_balance", "ten"},
		"no_such_option 1":          {"no_such_option"},
		"api_key":                   {"api_key"},
		"max_body_size lots":        {"max_body_size", "lots"},
	}
	for line, want := range cases {
		_, err := adapt(t, "{\n\topenwebui_monitor {\n\t\t"+line+"\n\t}\n}\n:8080 {\n\topenwebui_monitor\n}\n")
		if err == nil {
			t.Errorf("%q adapted", line)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not name %q", line, err, w)
			}
		}
	}
	// The global block is optional.
	if _, err := adapt(t, ":8080 {\n\topenwebui_monitor\n\treverse_proxy localhost:9\n}\n"); err != nil {
		t.Fatalf("a site without the global block: %v", err)
	}
}

func TestInletOutletThroughCaddy(t *testing.T) {
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			s := startSite(t, db(), "cost_on_inlet 0.5")
			status, b, err := post(s.url+"/api/v1/inlet", `{"user":{"id":"alice","name":"Alice"},"body":{"model":"gpt-4o","messages":[],"metadata":{"chat_id":"c","message_id":"m"}}}`)
			if err != nil || status != 200 {
				t.Fatalf("inlet: %d %s %v", status, b, err)
			}
			if gjson.GetBytes(b, "balance").Raw != "99.5" || gjson.GetBytes(b, "inlet_cost").Raw != "0.5" {
				t.Fatalf("inlet answer %s", b)
			}
			reply := `{"role":"assistant","content":"ok","usage":{"prompt_tokens":10000,"completion_tokens":5000}}`
			status, b, err = post(s.url+"/api/v1/outlet", strings.Replace(outletBody("alice", "m", reply), `"chat-alice"`, `"c"`, 1))
			if err != nil || status != 200 {
				t.Fatalf("outlet: %d %s %v", status, b, err)
			}
			// 15,000 tokens at the default 60 per 1M = 0.9; the 0.5 pre-charge is netted.
			if gjson.GetBytes(b, "totalCost").Raw != "0.9" || gjson.GetBytes(b, "newBalance").Raw != "99.1" {
				t.Fatalf("outlet answer %s", b)
			}
			if s.hits.Load() != 0 {
				t.Fatal("inlet/outlet reached OpenWebUI")
			}
			// Everything else goes to OpenWebUI untouched.
			resp, err := client.Get(s.url + "/api/v1/users")
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if s.hits.Load() != 1 || gjson.GetBytes(b, "path").Str != "/api/v1/users" {
				t.Fatalf("not proxied: %s", b)
			}
			u, err := activeStore(t).User(context.Background(), "alice")
			if err != nil || u.Balance != money.Amount(99_100_000_000) {
				t.Fatalf("stored %+v %v", u, err)
			}
		})
	}
}

// TestConcurrentOutlets drives 64 workers through 10,000 outlet calls over
// 100 users and then checks the books to the nano-unit.
func TestConcurrentOutlets(t *testing.T) {
	const workers, calls, users = 64, 10_000, 100
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			s := startSite(t, db(), "")
			var (
				next, failures, successes atomic.Int64
				firstFailure              atomic.Value
				mu                        sync.Mutex
				spent                     = make([]money.Amount, users)
				wg                        sync.WaitGroup
			)
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= calls {
							return
						}
						u := int(i % users)
						// Half the answers report usage, half are counted here.
						reply := fmt.Sprintf(`{"role":"assistant","content":"answer number %d"}`, i)
						if i%2 == 0 {
							reply = fmt.Sprintf(`{"role":"assistant","content":"x","usage":{"prompt_tokens":%d,"completion_tokens":%d}}`, 100+i, i%997)
						}
						status, b, err := post(s.url+"/api/v1/outlet", outletBody(fmt.Sprintf("user-%03d", u), fmt.Sprint("msg-", i), reply))
						if err != nil || status != 200 {
							failures.Add(1)
							firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s %v", status, b, err))
							continue
						}
						cost, err := money.Parse(gjson.GetBytes(b, "totalCost").Raw)
						if err != nil || cost <= 0 {
							failures.Add(1)
							firstFailure.CompareAndSwap(nil, fmt.Sprintf("totalCost in %s", b))
							continue
						}
						mu.Lock()
						spent[u] += cost
						mu.Unlock()
						successes.Add(1)
					}
				}()
			}
			wg.Wait()
			if n := failures.Load(); n != 0 {
				t.Fatalf("%d of %d calls failed; first: %v", n, calls, firstFailure.Load())
			}
			st := activeStore(t)
			var records int64
			for u := range users {
				l, err := st.Ledger(context.Background(), fmt.Sprintf("user-%03d", u))
				if err != nil {
					t.Fatal(err)
				}
				records += l.Records
				if want := money.Units(100) - spent[u]; l.Balance != want {
					t.Errorf("user-%03d: balance %s, want 100 − %s = %s", u, l.Balance, spent[u], want)
				}
				if l.Initial+l.Adjustments-l.Charges != l.Balance {
					t.Errorf("user-%03d: ledger does not add up: %+v", u, l)
				}
			}
			if records != successes.Load() {
				t.Fatalf("%d records for %d successful calls", records, successes.Load())
			}
		})
	}
}

func TestReplayedOutletChargesOnce(t *testing.T) {
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			s := startSite(t, db(), "")
			body := outletBody("bob", "the-one", `{"role":"assistant","content":"x","usage":{"prompt_tokens":1000,"completion_tokens":2000}}`)
			answers := make([]string, 100)
			var wg sync.WaitGroup
			for i := range answers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					status, b, err := post(s.url+"/api/v1/outlet", body)
					answers[i] = fmt.Sprintf("%d %s %v", status, gjson.GetBytes(b, "@this|{totalCost,newBalance,inputTokens}").Raw, err)
				}()
			}
			wg.Wait()
			for _, a := range answers {
				if a != answers[0] {
					t.Fatalf("answers differ: %q vs %q", a, answers[0])
				}
			}
			if answers[0] != `200 {"totalCost":0.18,"newBalance":99.82,"inputTokens":1000} <nil>` {
				t.Fatalf("answer %q", answers[0])
			}
			l, err := activeStore(t).Ledger(context.Background(), "bob")
			if err != nil || l.Records != 1 || l.Balance != money.Amount(99_820_000_000) {
				t.Fatalf("ledger %+v %v", l, err)
			}
		})
	}
}

// TestReloadSharesTheStore reloads the config while outlets are in flight:
// no call may fail, no charge may be lost, and only one store stays open.
func TestReloadSharesTheStore(t *testing.T) {
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			database := db()
			upstream := httptest.NewServer(http.NotFoundHandler())
			defer upstream.Close()
			port := freePort(t)
			run(t, caddyfileFor(database, port, upstream.URL, ""))
			url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/outlet", port)
			var (
				stop                      atomic.Bool
				next, successes, failures atomic.Int64
				firstFailure              atomic.Value
				wg                        sync.WaitGroup
			)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						body := outletBody("carol", fmt.Sprint("r-", next.Add(1)), `{"role":"assistant","content":"x","usage":{"prompt_tokens":5,"completion_tokens":5}}`)
						// A reload can reset connections the old listener had
						// queued; the function retries then, and the outlet,
						// keyed by message id, must not charge twice.
						status, b, err := post(url, body)
						for try := 0; err != nil && try < 20; try++ {
							time.Sleep(10 * time.Millisecond)
							status, b, err = post(url, body)
						}
						if err != nil || status != 200 {
							failures.Add(1)
							firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s %v", status, b, err))
							continue
						}
						successes.Add(1)
					}
				}()
			}
			for i := range 4 {
				time.Sleep(50 * time.Millisecond) // let calls be in flight
				cfg, err := adapt(t, caddyfileFor(database, port, upstream.URL, fmt.Sprintf("init_balance %d", 200+i)))
				if err != nil {
					t.Fatal(err)
				}
				if err := caddy.Load(cfg, true); err != nil {
					t.Fatalf("reload %d: %v", i, err)
				}
				activeStore(t) // exactly one store open
			}
			stop.Store(true)
			wg.Wait()
			if failures.Load() != 0 {
				t.Fatalf("%d calls failed during reloads; first: %v", failures.Load(), firstFailure.Load())
			}
			l, err := activeStore(t).Ledger(context.Background(), "carol")
			if err != nil || l.Records != successes.Load() || successes.Load() == 0 {
				t.Fatalf("ledger %+v for %d successes: %v", l, successes.Load(), err)
			}
			var refs int
			stores.Range(func(k, _ any) bool { refs, _ = stores.References(k); return true })
			if refs != 1 {
				t.Fatalf("store has %d references after the reloads, want 1", refs)
			}
		})
	}
}

func TestDashboardAPIMounts(t *testing.T) {
	s := startSite(t, "sqlite://"+filepath.Join(t.TempDir(), "d.db"), "access_token admin-secret")
	get := func(url, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, b := get(s.url+"/monitor/api/v1/users", "admin-secret"); status != 200 || !strings.Contains(b, `"users":[]`) {
		t.Fatalf("dashboard API: %d %s", status, b)
	}
	// A user id with an escaped slash stays one path segment under the prefix.
	if status, b := get(s.url+"/monitor/api/v1/users/a%2Fb/balance-history", "admin-secret"); status != 200 {
		t.Fatalf("user id with %%2F: %d %s", status, b)
	}
	if status, b := get(s.url+"/monitor/api/v1/users", "wrong"); status != 401 || b != `{"error":"Unauthorized"}` {
		t.Fatalf("wrong token: %d %s", status, b)
	}
	// OpenWebUI keeps its own /api/v1/users.
	before := s.hits.Load()
	if status, b := get(s.url+"/api/v1/users", "admin-secret"); status != 200 || !strings.Contains(b, `"path":"/api/v1/users"`) || s.hits.Load() != before+1 {
		t.Fatalf("OpenWebUI's route: %d %s", status, b)
	}
	// Mounted at / on a site of its own, the paths are the old monitor's.
	port := freePort(t)
	run(t, fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n\topenwebui_monitor {\n\t\tdatabase sqlite://%s\n\t\taccess_token admin-secret\n\t\tdashboard_path /\n\t}\n}\n:%d {\n\topenwebui_monitor\n}\n",
		filepath.Join(t.TempDir(), "root.db"), port))
	if status, b := get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/panel/usage", port), "admin-secret"); status != 200 || !strings.Contains(b, `"stats"`) {
		t.Fatalf("root-mounted API: %d %s", status, b)
	}
}
