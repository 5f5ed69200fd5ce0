package edge

// Front and ServeProvider without Caddy: a fake OpenWebUI and provider
// behind httputil.ReverseProxy, a real SQLite store.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
	"github.com/openwebui-monitor/owmon/internal/tokens"
)

const chatBody = `{"model":"gpt-4o","stream":%t,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello."}]}`

type frontEnv struct {
	st       store.Store
	gate     *Gate
	owui     *fakeowui.OpenWebUI
	provider *fakeowui.Provider
	url      string // the front
	key, jwt string

	mu       sync.Mutex
	hits     []string // what the function and admin stubs saw
	next     Handler  // the front's next: a reverse proxy to owui
	nextCall func(http.ResponseWriter, *http.Request) error
}

var testCounter = tokens.New()

// proxy is a plain reverse proxy to base, as reverse_proxy is in Caddy.
func proxy(t *testing.T, base string) Handler {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }}
	rp.ErrorLog = nil
	return Wrap(rp)
}

func newFrontEnv(t *testing.T) *frontEnv {
	t.Helper()
	e := &frontEnv{provider: fakeowui.NewProvider(t)}
	e.owui = fakeowui.NewOpenWebUI(t, e.provider)
	e.jwt, e.key = e.owui.AddUser("alice", "alice@example.com", "Alice", "user")
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "edge.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	if _, err := st.PutModelPrice(ctx, store.ModelPrice{ID: "gpt-4o", Input: money.Units(1_000_000), Output: money.Units(2_000_000), PerMessage: -1}); err != nil {
		t.Fatal(err)
	}
	l := ledger.New(st, ledger.Config{
		InitBalance:  money.Units(100),
		DefaultPrice: pricing.Price{Input: money.Units(60), Output: money.Units(60), PerMessage: -1},
		LocalHolds:   ledger.NewLocalHolds(),
		Claims:       ledger.NewClaims(),
	})
	resolver := identity.NewResolver(identity.Config{OpenWebUI: e.owui.URL(), SecretKey: e.owui.Secret()})
	e.gate = New(l, testCounter, resolver, Config{
		Enforce: true, InjectUsage: true, StripBackground: true,
		HoldTTL: 15 * time.Minute, MaxBodyBytes: 32 << 20, BodyTimeout: time.Minute, APIKeyHeader: "x-api-key",
	}, slog.New(slog.DiscardHandler))
	t.Cleanup(e.gate.Wait)
	stub := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.mu.Lock()
			e.hits = append(e.hits, name+" "+r.URL.Path+" "+r.URL.EscapedPath())
			e.mu.Unlock()
			w.WriteHeader(http.StatusTeapot)
		})
	}
	front := &Front{Gate: e.gate, Endpoints: stub("function"), Admin: stub("admin"), AdminPrefix: "/monitor"}
	e.next = proxy(t, e.owui.URL())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next := e.next
		if e.nextCall != nil {
			next = HandlerFunc(e.nextCall)
		}
		if err := front.ServeHTTP(w, r, next); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func (e *frontEnv) do(t *testing.T, method, path, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// settled waits for the user's records once no hold is pending.
func settled(t *testing.T, st store.Store, user string, n int) []store.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, _, err := st.ListRecords(context.Background(), store.RecordQuery{Users: []string{user}, PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		pending := 0
		for _, r := range recs {
			if r.Status == ledger.StatusPending {
				pending++
			}
		}
		if len(recs) >= n && pending == 0 {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d records (%d pending), want %d settled", user, len(recs), pending, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *frontEnv) balance(t *testing.T, user string) money.Amount {
	t.Helper()
	u, err := e.st.User(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return u.Balance
}

func (e *frontEnv) upstreamCalls(path string) int {
	n := 0
	for _, r := range e.owui.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

// readSSE reads a stream's data lines and the time each arrived.
func readSSE(t *testing.T, resp *http.Response) (data []string, at []time.Time) {
	t.Helper()
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, line)
			at = append(at, time.Now())
		}
	}
	return data, at
}

// TestFrontMetersStreamingChat: a streaming chat through the reverse proxy
// is charged with the provider's usage (asked for, and kept from the
// client), and its chunks arrive as the provider sends them.
func TestFrontMetersStreamingChat(t *testing.T) {
	e := newFrontEnv(t)
	reply := fakeowui.DefaultReply()
	reply.Chunks, reply.Delay = 4, 100*time.Millisecond
	e.provider.SetReply(reply)
	resp := e.do(t, http.MethodPost, "/api/chat/completions", e.key, fmt.Sprintf(chatBody, true))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, readBody(t, resp))
	}
	data, at := readSSE(t, resp)
	var text strings.Builder
	var contentAt []time.Time
	for i, d := range data {
		if u := gjson.Get(d, "usage"); u.Exists() && u.Type != gjson.Null {
			t.Fatalf("the client got the usage chunk it did not ask for: %s", d)
		}
		if c := gjson.Get(d, "choices.0.delta.content").Str; c != "" {
			text.WriteString(c)
			contentAt = append(contentAt, at[i])
		}
	}
	if text.String() != reply.Text || len(data) == 0 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("client got %q, data %q", text.String(), data)
	}
	if spread := contentAt[len(contentAt)-1].Sub(contentAt[0]); spread < 200*time.Millisecond {
		t.Fatalf("4 chunks 100ms apart arrived within %v", spread)
	}
	for _, r := range e.provider.Requests() {
		if !gjson.GetBytes(r.Body, "stream_options.include_usage").Bool() {
			t.Fatalf("provider request without include_usage: %s", r.Body)
		}
	}
	recs := settled(t, e.st, "alice", 1)
	r := recs[0]
	// 12 input tokens at 1 + 7 output tokens at 2 = 26.
	if len(recs) != 1 || r.Model != "gpt-4o" || r.InputTokens != 12 || r.OutputTokens != 7 || r.Cost != money.Units(26) ||
		r.Status != ledger.StatusCompleted || r.Source != ledger.SourceEdge {
		t.Fatalf("records %+v", recs)
	}
	if got := e.balance(t, "alice"); got != money.Units(74) {
		t.Fatalf("balance %s, want 74", got)
	}
}

// TestFrontFlushesEachChunk: the metering writer flushes every write, even
// behind a next handler that never flushes.
func TestFrontFlushesEachChunk(t *testing.T) {
	e := newFrontEnv(t)
	e.nextCall = func(w http.ResponseWriter, r *http.Request) error {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i := range 3 {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c%d\"}}]}\n\n", i)
			time.Sleep(150 * time.Millisecond)
		}
		fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n")
		return nil
	}
	resp := e.do(t, http.MethodPost, "/api/chat/completions", e.key, fmt.Sprintf(chatBody, true))
	data, at := readSSE(t, resp)
	if len(data) != 4 || data[3] != "[DONE]" {
		t.Fatalf("data %q", data)
	}
	if gap := at[1].Sub(at[0]); gap < 100*time.Millisecond {
		t.Fatalf("chunks 150ms apart arrived %v apart: buffered", gap)
	}
	if recs := settled(t, e.st, "alice", 1); recs[0].Cost != money.Units(26) {
		t.Fatalf("records %+v", recs)
	}
}

// TestFrontRefusesExhaustedBalance: no balance, a 402 in the shape
// OpenWebUI shows, and nothing reaches upstream.
func TestFrontRefusesExhaustedBalance(t *testing.T) {
	e := newFrontEnv(t)
	ctx := context.Background()
	if _, err := e.st.UpsertUser(ctx, store.UserInfo{ID: "alice", Email: "alice@example.com", Name: "Alice", Role: "user"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.SetBalance(ctx, "alice", 0, "test", "broke"); err != nil {
		t.Fatal(err)
	}
	for _, stream := range []bool{true, false} {
		resp := e.do(t, http.MethodPost, "/api/chat/completions", e.key, fmt.Sprintf(chatBody, stream))
		b := readBody(t, resp)
		if resp.StatusCode != http.StatusPaymentRequired || gjson.Get(b, "error.type").Str != "insufficient_balance" ||
			!strings.Contains(gjson.Get(b, "detail").Str, "Insufficient balance") {
			t.Fatalf("broke: %d %s", resp.StatusCode, b)
		}
	}
	if n := e.upstreamCalls("/api/chat/completions"); n != 0 {
		t.Fatalf("%d refused calls reached OpenWebUI", n)
	}
	if n := len(e.provider.Requests()); n != 0 {
		t.Fatalf("%d refused calls reached the provider", n)
	}
}

type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestFrontRefusesUnreadableBodies: a body that breaks off, or that is not
// JSON OpenWebUI would read as we do, is a 400 and never passes on.
func TestFrontRefusesUnreadableBodies(t *testing.T) {
	e := newFrontEnv(t)
	resp := e.do(t, http.MethodPost, "/api/chat/completions", e.key,
		`{"model":"gpt-4o","temperature":NaN,"messages":[{"role":"user","content":"hi"}]}`)
	if b := readBody(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(gjson.Get(b, "detail").Str, "not valid JSON") {
		t.Fatalf("NaN: %d %s", resp.StatusCode, b)
	}

	// A body whose read fails, served directly.
	var front = &Front{Gate: e.gate, Endpoints: http.NotFoundHandler()}
	r := httptest.NewRequest(http.MethodPost, "/api/chat/completions", io.NopCloser(failingBody{}))
	r.Header.Set("Authorization", "Bearer "+e.key)
	w := httptest.NewRecorder()
	passed := false
	err := front.ServeHTTP(w, r, HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil }))
	if err != nil || passed || w.Code != http.StatusBadRequest || gjson.Get(w.Body.String(), "error.type").Str != "invalid_request" {
		t.Fatalf("failing body: err %v, passed %v, %d %s", err, passed, w.Code, w.Body)
	}
	if n := e.upstreamCalls("/api/chat/completions"); n != 0 {
		t.Fatalf("%d unreadable calls reached OpenWebUI", n)
	}
}

// TestFrontDispatches: the function's endpoints and the dashboard under
// its prefix are answered here (an escaped "/" in a user id stays one
// segment); everything else passes on untouched.
func TestFrontDispatches(t *testing.T) {
	e := newFrontEnv(t)
	for _, c := range []struct{ method, path, want string }{
		{http.MethodPost, "/api/v1/outlet", "function /api/v1/outlet /api/v1/outlet"},
		{http.MethodPost, "/api/v1/inlet", "function /api/v1/inlet /api/v1/inlet"},
		{http.MethodGet, "/monitor", "admin / /"},
		{http.MethodGet, "/monitor/api/users/a%2Fb", "admin /api/users/a/b /api/users/a%2Fb"},
	} {
		e.mu.Lock()
		e.hits = nil
		e.mu.Unlock()
		resp := e.do(t, c.method, c.path, "", `{}`)
		readBody(t, resp)
		e.mu.Lock()
		hits := e.hits
		e.mu.Unlock()
		if resp.StatusCode != http.StatusTeapot || len(hits) != 1 || hits[0] != c.want {
			t.Errorf("%s %s: %d %q, want %q", c.method, c.path, resp.StatusCode, hits, c.want)
		}
	}
	resp := e.do(t, http.MethodGet, "/monitoring", "", "")
	if b := readBody(t, resp); resp.StatusCode != 200 || gjson.Get(b, "path").Str != "/monitoring" {
		t.Fatalf("/monitoring did not pass on: %d %s", resp.StatusCode, b)
	}
	if len(e.owui.Requests()) != 1 {
		t.Fatalf("OpenWebUI got %d requests, want only /monitoring", len(e.owui.Requests()))
	}
}

// TestFrontStop: "stop generating" of a known user passes on and its
// answer comes back; the front asks who the user is (to tell the tap).
func TestFrontStop(t *testing.T) {
	e := newFrontEnv(t)
	before := e.owui.Lookups()
	// OpenWebUI answers a stop of a chat it does not know with 404
	// (main.py stop_tasks_by_chat_id_endpoint): the gate passes it on.
	resp := e.do(t, http.MethodPost, "/api/tasks/chat/c9/stop", e.key, "")
	if b := readBody(t, resp); resp.StatusCode != http.StatusNotFound || !gjson.Get(b, "detail").Exists() {
		t.Fatalf("stop: %d %s", resp.StatusCode, b)
	}
	if e.upstreamCalls("/api/tasks/chat/c9/stop") != 1 {
		t.Fatal("the stop did not reach OpenWebUI")
	}
	if e.owui.Lookups() == before {
		t.Fatal("the stop's user was not identified")
	}
	for _, c := range []struct {
		method, path, chat string
		ok                 bool
	}{
		{http.MethodPost, "/api/tasks/chat/c9/stop", "c9", true},
		{http.MethodGet, "/api/tasks/chat/c9/stop", "", false},
		{http.MethodPost, "/api/tasks/chat/a/b/stop", "", false},
		{http.MethodPost, "/api/tasks/chat//stop", "", false},
	} {
		chat, ok := stopPath(httptest.NewRequest(c.method, c.path, nil))
		if ok != c.ok || (ok && chat != c.chat) {
			t.Errorf("%s %s: %q %v", c.method, c.path, chat, ok)
		}
	}
}

// TestProviderMeter: a provider call with the shared key is charged to the
// user OpenWebUI forwards; a wrong key is refused before the provider.
func TestProviderMeter(t *testing.T) {
	e := newFrontEnv(t)
	pc := ProviderConfig{
		SharedKey:  identity.NewSecret("shared-key-0123456789"),
		SystemUser: identity.User{ID: "system", Name: "System", Role: "system"},
	}
	next := proxy(t, e.provider.URL())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := e.gate.ServeProvider(w, r, pc, next); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(srv.Close)
	call := func(key string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(fmt.Sprintf(chatBody, true)))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set(identity.HeaderUserID, "alice")
		req.Header.Set(identity.HeaderUserName, "Alice")
		req.Header.Set(identity.HeaderUserEmail, "alice@example.com")
		req.Header.Set(identity.HeaderUserRole, "user")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := call("wrong-key-0123456789")
	if b := readBody(t, resp); resp.StatusCode != http.StatusUnauthorized || gjson.Get(b, "error.type").Str != "invalid_api_key" {
		t.Fatalf("wrong key: %d %s", resp.StatusCode, b)
	}
	if n := len(e.provider.Requests()); n != 0 {
		t.Fatalf("the provider got %d calls with a wrong key", n)
	}
	resp = call("shared-key-0123456789")
	if b := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(b, "[DONE]") {
		t.Fatalf("provider call: %d %s", resp.StatusCode, b)
	}
	reqs := e.provider.Requests()
	if len(reqs) != 1 || reqs[0].Header.Get(identity.HeaderUserID) != "" || strings.Contains(reqs[0].Header.Get("Authorization"), "shared-key") {
		t.Fatalf("the provider saw identity or the shared key: %+v", reqs)
	}
	recs := settled(t, e.st, "alice", 1)
	if r := recs[0]; r.Source != ledger.SourceProvider || r.Cost != money.Units(26) || r.InputTokens != 12 || r.OutputTokens != 7 {
		t.Fatalf("records %+v", recs)
	}
}
