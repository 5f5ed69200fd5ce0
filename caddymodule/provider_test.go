package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

const (
	sharedKey       = "meter-shared-key-0123456789"
	realProviderKey = "sk-real-provider-key"
	forwardSecret   = "forward-user-jwt-secret"
)

// stack is the README's front-plus-provider deployment: owmon in front of
// a fake OpenWebUI whose model connection is owmon's openwebui_meter in
// front of a fake provider.
type stack struct {
	front, meter string
	database     string
	provider     *fakeowui.Provider
	owui         *fakeowui.OpenWebUI
	st           store.Store
	jwt, key     string // Alice's credentials
}

// startStack runs the README's front-plus-provider Caddyfile, configured
// through the environment as an operator would. With secret set, OpenWebUI
// signs the forwarded user and owmon checks the signature.
func startStack(t *testing.T, database, secret string, opts fakeowui.OpenWebUIOptions) *stack {
	t.Helper()
	s := &stack{database: database, provider: fakeowui.NewProvider(t)}
	s.owui = fakeowui.NewOpenWebUI(t, s.provider)
	s.jwt, s.key = s.owui.AddUser("alice", "alice@example.com", "Alice", "user")
	frontPort, meterPort := freePort(t), freePort(t)
	s.front = fmt.Sprintf("http://127.0.0.1:%d", frontPort)
	s.meter = fmt.Sprintf("http://127.0.0.1:%d", meterPort)
	for k, v := range map[string]string{
		"OWMON_PORT": fmt.Sprint(frontPort), "OWMON_METER_PORT": fmt.Sprint(meterPort),
		"OPENWEBUI_DOMAIN": s.owui.URL(), "PROVIDER_URL": s.provider.URL(), "PROVIDER_API_KEY": realProviderKey,
		"OWMON_PROVIDER_KEY": sharedKey, "FORWARD_USER_INFO_HEADER_JWT_SECRET": secret,
		"DATABASE_URL": database, "WEBUI_SECRET_KEY": s.owui.Secret(), "API_KEY": testAPIKey, "INIT_BALANCE": "1000",
		"OWMON_HOLD_OUTPUT_TOKENS": "16", // holds of the prompt and a short answer: the balance covers many
	} {
		t.Setenv(k, v)
	}
	cf := readmeCaddyfile(t, "front-and-provider")
	// The test harness's own globals: no admin endpoint, no certificates, quiet.
	cf = strings.Replace(cf, "{\n", "{\n\tadmin off\n\tauto_https off\n\tlog {\n\t\toutput discard\n\t}\n", 1)
	run(t, cf)
	s.st = activeStore(t)
	// 1 per input token, 2 per output token.
	if _, err := s.st.PutModelPrice(context.Background(), store.ModelPrice{ID: "gpt-4o", Input: money.Units(1_000_000), Output: money.Units(2_000_000), PerMessage: -1}); err != nil {
		t.Fatal(err)
	}
	opts.OpenAIURL = s.meter + "/v1"
	opts.OllamaURL = s.meter
	opts.ProviderKey = sharedKey
	opts.ForwardUserInfo = true
	opts.ForwardUserJWTSecret = secret
	s.owui.SetOptions(opts)
	return s
}

// userRecords lists a user's records, oldest first, once none is pending.
func (s *stack) userRecords(t *testing.T, user string, n int) []store.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, _, err := s.st.ListRecords(context.Background(), store.RecordQuery{Users: []string{user}, PageSize: 500, SortField: "created_at"})
		if err != nil {
			t.Fatal(err)
		}
		pending := false
		for _, r := range recs {
			pending = pending || r.Status == ledger.StatusPending
		}
		if len(recs) >= n && !pending && len(edgeRecords(t, s.st, user)) == 0 {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d records (want %d), pending %v", user, len(recs), n, pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *stack) balance(t *testing.T, user string) money.Amount {
	t.Helper()
	u, err := s.st.User(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return u.Balance
}

// checkProviderSawNoSecrets: the provider got the real key, never the
// shared key or OpenWebUI's user headers.
func checkProviderSawNoSecrets(t *testing.T, reqs []fakeowui.Request) {
	t.Helper()
	for _, r := range reqs {
		if got := r.Header.Get("Authorization"); got != "Bearer "+realProviderKey {
			t.Errorf("provider got Authorization %q", got)
		}
		for name := range r.Header {
			if strings.HasPrefix(strings.ToLower(name), "x-openwebui-") {
				t.Errorf("provider got %s", name)
			}
		}
	}
}

// TestProviderMeterChargesEveryCallOnce: a web-UI chat turn through the
// front, run by OpenWebUI in the background with a tool round and a title
// task, is charged once per provider call with the provider's usage, and
// neither the front nor the function's outlet charges it again.
//
// OpenWebUI does not tell providers the message; an operator can add it
// with a connection header ({{MESSAGE_ID}} templating). Either way the
// turn is charged once; with the header the outlet answers with the sum
// of the message's provider calls, without it with the first call's.
func TestProviderMeterChargesEveryCallOnce(t *testing.T) {
	for kind, db := range databases(t) {
		for _, mode := range []string{"plain-headers", "signed-jwt", "message-id-header"} {
			secret := ""
			opts := fakeowui.OpenWebUIOptions{RunBackground: true, ToolRounds: 1, TitleGeneration: true}
			switch mode {
			case "signed-jwt":
				secret = forwardSecret
			case "message-id-header":
				opts.ConnectionHeaders = map[string]string{"X-OpenWebUI-Message-Id": "{{MESSAGE_ID}}"}
			}
			t.Run(kind+"/"+mode, func(t *testing.T) {
				s := startStack(t, db(), secret, opts)
				s.provider.SetReply(fakeowui.Reply{Text: "It is noon.", Chunks: 2,
					Usage: fakeowui.Usage{PromptTokens: 20, CompletionTokens: 5, CachedTokens: 4, ReasoningTokens: 2}})
				e := &edgeEnv{url: s.front}
				// A browser tab on the websocket: the tap sees the answer too, and only observes.
				tabs := openTabs(t, s.front, s.jwt, 1, false)
				resp := e.do(t, context.Background(), "/api/chat/completions", s.jwt, `{"model":"gpt-4o","stream":true,
					"session_id":"sess","chat_id":"c1","id":"a1","messages":[{"role":"user","content":"What time is it?"}]}`)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !gjson.GetBytes(body, "status").Bool() {
					t.Fatalf("front answered %d %s", resp.StatusCode, body)
				}
				s.owui.WaitBackground()
				waitTabs(t, tabs, "a1", isDone)

				recs := s.userRecords(t, "alice", 3)
				if len(recs) != 3 {
					t.Fatalf("%d records, want 3 (chat, tool round, title): %+v", len(recs), recs)
				}
				purposes := map[string]bool{}
				named := 0
				for _, r := range recs {
					purposes[r.Purpose] = true
					if r.MessageID == "a1" {
						named++
					}
					if r.Source != ledger.SourceProvider || r.Status != ledger.StatusCompleted || r.Estimated ||
						r.ChatID != "c1" || (r.MessageID != "a1" && r.MessageID != "") || r.Model != "gpt-4o" ||
						r.InputTokens != 20 || r.OutputTokens != 5 || r.CachedTokens != 4 || r.ReasoningTokens != 2 ||
						r.Cost != money.Units(30) {
						t.Errorf("record %+v", r)
					}
				}
				if !purposes["chat"] || !purposes["tool_round"] || !purposes["title"] {
					t.Errorf("purposes %v", purposes)
				}
				// The first call adopted the front's hold, and with it the
				// message's id; with the header the tool round names it too
				// (the title task runs outside the message: OpenWebUI gives
				// it no message id).
				wantNamed, wantIn, wantOut, wantCost := 1, int64(20), int64(5), "30"
				if mode == "message-id-header" {
					wantNamed, wantIn, wantOut, wantCost = 2, 40, 10, "60"
				}
				if named != wantNamed {
					t.Errorf("%d records name the message, want %d: %+v", named, wantNamed, recs)
				}
				if got := s.balance(t, "alice"); got != money.Units(1000-90) {
					t.Fatalf("balance %s, want 910", got)
				}
				reqs := s.provider.Requests()
				if len(reqs) != 3 {
					t.Fatalf("provider saw %d calls", len(reqs))
				}
				checkProviderSawNoSecrets(t, reqs)

				// The function's outlet for the same message: nothing more.
				code, out, err := post(s.front+"/api/v1/outlet", `{"user":{"id":"alice","email":"alice@example.com","name":"Alice","role":"user"},
					"body":{"model":"gpt-4o","chat_id":"c1","id":"a1","messages":[{"role":"user","content":"What time is it?"},
					{"role":"assistant","content":"It is noon.","usage":{"prompt_tokens":500,"completion_tokens":500}}]}}`)
				if err != nil || code != 200 {
					t.Fatalf("outlet %d %s %v", code, out, err)
				}
				j := gjson.ParseBytes(out)
				if j.Get("inputTokens").Int() != wantIn || j.Get("outputTokens").Int() != wantOut ||
					j.Get("totalCost").String() != wantCost || j.Get("newBalance").String() != "910" {
					t.Fatalf("outlet answered %s", out)
				}
				if recs := s.userRecords(t, "alice", 3); len(recs) != 3 {
					t.Fatalf("the outlet added a record: %+v", recs)
				}
				l, err := s.st.Ledger(context.Background(), "alice")
				if err != nil || l.Charges != money.Units(90) || l.Initial+l.Adjustments-l.Charges != l.Balance {
					t.Fatalf("ledger %+v %v", l, err)
				}
			})
		}
	}
}

// TestProviderMeterAndFrontChargeAPICallOnce: an API-key call passes the
// front (which names its message) and the provider meter; one charge.
func TestProviderMeterAndFrontChargeAPICallOnce(t *testing.T) {
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			s := startStack(t, db(), "", fakeowui.OpenWebUIOptions{})
			e := &edgeEnv{url: s.front}
			for i, stream := range []bool{true, false} {
				resp := e.do(t, context.Background(), "/api/chat/completions", s.key, fmt.Sprintf(chatBody, stream))
				if resp.StatusCode != 200 {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("status %d %s", resp.StatusCode, b)
				}
				if stream {
					data, _ := readSSE(t, resp)
					for _, d := range data {
						if u := gjson.Get(d, "usage"); u.Exists() && u.Type != gjson.Null {
							t.Fatalf("client got a usage chunk it did not ask for: %s", d)
						}
					}
				} else {
					resp.Body.Close()
				}
				recs := s.userRecords(t, "alice", i+1)
				if len(recs) != i+1 {
					t.Fatalf("%d records after %d calls: %+v", len(recs), i+1, recs)
				}
				r := recs[i]
				if r.Source != ledger.SourceProvider || r.MessageID == "" || r.InputTokens != 12 || r.OutputTokens != 7 || r.Cost != money.Units(26) {
					t.Fatalf("record %+v", r)
				}
				if got := s.balance(t, "alice"); got != money.Units(1000-26*int64(i+1)) {
					t.Fatalf("balance %s", got)
				}
			}
			checkProviderSawNoSecrets(t, s.provider.Requests())

			// The call is held once, not by each hop: a balance of one and a
			// half holds passes both.
			ctx := context.Background()
			if _, err := s.st.SetBalance(ctx, "alice", 0, "test", ""); err != nil {
				t.Fatal(err)
			}
			resp := e.do(t, ctx, "/api/chat/completions", s.key, fmt.Sprintf(chatBody, false))
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			m := regexp.MustCompile(`needs ([0-9.]+)\.`).FindStringSubmatch(gjson.GetBytes(b, "detail").Str)
			if resp.StatusCode != http.StatusPaymentRequired || m == nil {
				t.Fatalf("with no balance: %d %s", resp.StatusCode, b)
			}
			hold, err := money.Parse(m[1])
			if err != nil || hold <= 0 {
				t.Fatalf("hold %q: %v", m[1], err)
			}
			if _, err := s.st.SetBalance(ctx, "alice", hold+hold/2, "test", ""); err != nil {
				t.Fatal(err)
			}
			resp = e.do(t, ctx, "/api/chat/completions", s.key, fmt.Sprintf(chatBody, false))
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("a balance of 1.5 holds (%s) refused: %d %s", hold+hold/2, resp.StatusCode, b)
			}
		})
	}
}

// meterCall sends a request to the meter the way OpenWebUI would.
func meterCall(t *testing.T, url, key, body string, header ...string) (int, string) {
	t.Helper()
	method := http.MethodPost
	if body == "" {
		method = http.MethodGet
	}
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProviderMeterTrust(t *testing.T) {
	s := startStack(t, sqliteDB(t), forwardSecret, fakeowui.OpenWebUIOptions{})
	chat := fmt.Sprintf(chatBody, false)
	ollama := `{"model":"gpt-4o","stream":false,"messages":[{"role":"user","content":"hi"}]}`
	signed := func(id, secret string) string {
		now := time.Now().Unix()
		return fakeowui.SignJWT(secret, map[string]any{"sub": id, "email": id + "@example.com", "name": id, "role": "user",
			"iss": "open-webui", "iat": now, "exp": now + 60})
	}

	// Wrong or missing shared key: 401 in the provider's format, nothing forwarded.
	for _, tc := range []struct{ path, key, body, format string }{
		{"/v1/chat/completions", "", chat, "openai"},
		{"/v1/chat/completions", "sk-wrong", chat, "openai"},
		{"/v1/chat/completions", realProviderKey, chat, "openai"},
		{"/v1/models", "", "", "openai"},
		{"/api/chat", "wrong", ollama, "ollama"},
	} {
		code, body := meterCall(t, s.meter+tc.path, tc.key, tc.body, "X-OpenWebUI-User-Jwt", signed("alice", forwardSecret))
		j := gjson.Parse(body)
		ok := code == 401 && (tc.format == "openai" && j.Get("error.code").Str == "invalid_api_key" ||
			tc.format == "ollama" && j.Get("error").Type == gjson.String)
		if !ok {
			t.Errorf("%s with key %q: %d %s", tc.path, tc.key, code, body)
		}
	}
	// Forged identities while a secret is set: refused.
	for name, h := range map[string][]string{
		"plain headers":  {"X-OpenWebUI-User-Id", "alice", "X-OpenWebUI-User-Role", "admin"},
		"wrong secret":   {"X-OpenWebUI-User-Jwt", signed("alice", "not-the-secret")},
		"garbage JWT":    {"X-OpenWebUI-User-Jwt", "a.b.c"},
		"JWT plus plain": {"X-OpenWebUI-User-Jwt", signed("mallory", "guess"), "X-OpenWebUI-User-Id", "alice"},
	} {
		if code, body := meterCall(t, s.meter+"/v1/chat/completions", sharedKey, chat, h...); code != 403 || gjson.Get(body, "error.message").Str == "" {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	if n := len(s.provider.Requests()); n != 0 {
		t.Fatalf("%d refused requests reached the provider", n)
	}

	// A signed user is charged; a call naming nobody goes to the system account.
	if code, body := meterCall(t, s.meter+"/v1/chat/completions", sharedKey, chat, "X-OpenWebUI-User-Jwt", signed("bob", forwardSecret)); code != 200 {
		t.Fatalf("signed call %d %s", code, body)
	}
	if code, body := meterCall(t, s.meter+"/v1/chat/completions", sharedKey, chat); code != 200 {
		t.Fatalf("anonymous call %d %s", code, body)
	}
	if code, _ := meterCall(t, s.meter+"/v1/models", sharedKey, ""); code != 404 { // the fake provider has no model list
		t.Fatalf("GET /v1/models with the key: %d", code)
	}
	for _, user := range []string{"bob", "system"} {
		recs := s.userRecords(t, user, 1)
		if len(recs) != 1 || recs[0].Source != ledger.SourceProvider || recs[0].Cost != money.Units(26) {
			t.Fatalf("%s records %+v", user, recs)
		}
	}
	checkProviderSawNoSecrets(t, s.provider.Requests())

	// An exhausted balance: 402 in the provider's format, not forwarded. The
	// system account is metered but never refused.
	before := len(s.provider.Requests())
	for _, user := range []string{"bob", "system"} {
		if _, err := s.st.SetBalance(context.Background(), user, 0, "test", ""); err != nil {
			t.Fatal(err)
		}
	}
	code, body := meterCall(t, s.meter+"/v1/chat/completions", sharedKey, chat, "X-OpenWebUI-User-Jwt", signed("bob", forwardSecret))
	if code != 402 || gjson.Get(body, "error.type").Str != "insufficient_balance" || !strings.Contains(gjson.Get(body, "error.message").Str, "Insufficient balance") {
		t.Fatalf("broke user: %d %s", code, body)
	}
	code, body = meterCall(t, s.meter+"/api/chat", sharedKey, ollama, "X-OpenWebUI-User-Jwt", signed("bob", forwardSecret))
	if code != 402 || !strings.Contains(gjson.Get(body, "error").Str, "Insufficient balance") {
		t.Fatalf("broke user on Ollama: %d %s", code, body)
	}
	if n := len(s.provider.Requests()) - before; n != 0 {
		t.Fatalf("%d refused calls reached the provider", n)
	}
	if code, body := meterCall(t, s.meter+"/v1/chat/completions", sharedKey, chat); code != 200 {
		t.Fatalf("system call refused: %d %s", code, body)
	}
}

// TestREADMECaddyfilesAdapt: every Caddyfile the README shows adapts.
func TestREADMECaddyfilesAdapt(t *testing.T) {
	var blocks []string
	for _, b := range readmeBlocks(t, "../README.md") {
		if b.Lang == "caddyfile" {
			blocks = append(blocks, b.Content)
		}
	}
	if len(blocks) < 3 {
		t.Fatalf("README shows %d Caddyfiles, want the three deployments", len(blocks))
	}
	t.Setenv("OWMON_PROVIDER_KEY", sharedKey)
	for _, cf := range blocks {
		if _, err := adapt(t, cf); err != nil {
			t.Errorf("README Caddyfile does not adapt: %v\n%s", err, cf)
		}
	}
	cfg, err := adapt(t, readmeCaddyfile(t, "front-and-provider"))
	if err != nil {
		t.Fatal(err)
	}
	var meters int
	for _, h := range gjson.GetBytes(cfg, "apps.http.servers.@values.#.routes.0.handle.#.handler").Array() {
		if strings.Join(strings.Fields(strings.Trim(h.Raw, "[]")), "") == `"openwebui_meter","reverse_proxy"` {
			meters++
		}
	}
	if meters != 1 {
		t.Fatalf("want one site with openwebui_meter before reverse_proxy: %s", cfg)
	}
}
