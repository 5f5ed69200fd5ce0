package caddymodule

// The gate's fail-closed rule (issue 11): in enforce mode a model call goes
// to OpenWebUI only once its user is known and its cost held. Whatever the
// gate cannot read or identify is refused with a JSON error; only a call
// with no credential, or one OpenWebUI itself refuses, passes to
// OpenWebUI's own 401.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// broke gives alice a balance of zero, so any call that reaches OpenWebUI
// is one the gate let through unmetered.
func (e *edgeEnv) broke(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.st.UpsertUser(ctx, store.UserInfo{ID: "alice", Email: "alice@example.com", Name: "Alice", Role: "user"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.SetBalance(ctx, "alice", 0, "test", "broke"); err != nil {
		t.Fatal(err)
	}
}

// modelCalls counts the requests OpenWebUI got on path.
func (e *edgeEnv) modelCalls(path string) int {
	n := 0
	for _, r := range e.owui.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

// call sends body to path with the given headers and returns the status and body.
func (e *edgeEnv) call(t *testing.T, path, body string, header ...string) (int, []byte) {
	t.Helper()
	status, b := meterCall(t, e.url+path, "", body, header...)
	return status, []byte(b)
}

// TestGateRefusesBodiesItCannotRead: Python's json (OpenWebUI's) takes NaN
// and Infinity and keeps the last of duplicate keys. A body the gate cannot
// parse is a 400 naming the problem; duplicates are read as OpenWebUI
// reads them.
func TestGateRefusesBodiesItCannotRead(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	e.broke(t)
	for _, body := range []string{
		`{"model":"gpt-4o","temperature":NaN,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4o","temperature":Infinity,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4o","max_tokens":-Infinity,"messages":[{"role":"user","content":"hi"}]}`,
		"\xef\xbb\xbf" + `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
	} {
		status, b := e.call(t, "/api/chat/completions", body, "Authorization", "Bearer "+e.key)
		if status != http.StatusBadRequest || !strings.Contains(gjson.GetBytes(b, "detail").Str, "body: is not valid JSON") {
			t.Errorf("%q: %d %s", body, status, b)
		}
	}
	if n := e.modelCalls("/api/chat/completions"); n != 0 {
		t.Fatalf("%d unreadable calls reached OpenWebUI", n)
	}

	// The last "model" is the one OpenWebUI calls, and the one charged.
	if _, err := e.st.SetBalance(context.Background(), "alice", money.Units(100), "test", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.PutModelPrice(context.Background(), store.ModelPrice{ID: "cheap", PerMessage: 0}); err != nil {
		t.Fatal(err)
	}
	status, b := e.call(t, "/api/chat/completions", `{"model":"cheap","stream":false,"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}`,
		"Authorization", "Bearer "+e.key)
	if status != 200 {
		t.Fatalf("duplicate model: %d %s", status, b)
	}
	recs := e.waitRecords(t, "alice", 1)
	if recs[0].Model != "gpt-4o" || recs[0].Cost != money.Units(26) {
		t.Fatalf("charged %+v, want gpt-4o's 26", recs[0])
	}
}

// TestGateRefusesWhenOpenWebUICannotSayWho: a credential OpenWebUI cannot
// resolve for us (it answers 5xx, or is unreachable) is refused with 503;
// only OpenWebUI's 401 passes the call on (OpenWebUI refuses it too).
func TestGateRefusesWhenOpenWebUICannotSayWho(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	e.broke(t)
	e.owui.SetOptions(fakeowui.OpenWebUIOptions{AuthStatus: http.StatusBadGateway})
	status, b := e.call(t, "/api/chat/completions", fmt.Sprintf(chatBody, false), "Authorization", "Bearer "+e.key)
	if status != http.StatusServiceUnavailable || gjson.GetBytes(b, "error.type").Str != "identity_unavailable" ||
		!strings.Contains(gjson.GetBytes(b, "detail").Str, "cannot reach OpenWebUI") {
		t.Fatalf("auths 502: %d %s", status, b)
	}
	e.owui.SetOptions(fakeowui.OpenWebUIOptions{})
	// An unknown key: OpenWebUI's own 401.
	status, b = e.call(t, "/api/chat/completions", fmt.Sprintf(chatBody, false), "Authorization", "Bearer sk-unknown")
	if status != http.StatusUnauthorized || gjson.GetBytes(b, "detail").Str == "" {
		t.Fatalf("unknown key: %d %s", status, b)
	}
	if n := e.modelCalls("/api/chat/completions"); n != 1 {
		t.Fatalf("OpenWebUI got %d chat calls, want only the unknown key's", n)
	}
}

// TestGateOpenWebUIDown: with the OpenWebUI the gate asks unreachable, an
// API-key call is refused with 503 even in front of an upstream that would
// answer it.
func TestGateOpenWebUIDown(t *testing.T) {
	dead := fakeowui.NewOpenWebUI(t, nil)
	dead.Close()
	// The later openwebui option wins: identities are asked of the dead one.
	e := startEdge(t, sqliteDB(t), "openwebui "+dead.URL())
	status, b := e.call(t, "/api/chat/completions", fmt.Sprintf(chatBody, false), "Authorization", "Bearer "+e.key)
	if status != http.StatusServiceUnavailable || gjson.GetBytes(b, "detail").Str == "" {
		t.Fatalf("OpenWebUI down: %d %s", status, b)
	}
	if n := e.modelCalls("/api/chat/completions"); n != 0 {
		t.Fatalf("%d calls passed unidentified", n)
	}
}

// TestGateStripsEveryChatField: an API-key call that says "parent_id":
// null (a new chat) makes OpenWebUI save a chat and, with a message id,
// consume the stream itself and answer null. Every such field is removed,
// so the answer comes back over HTTP and is metered.
func TestGateStripsEveryChatField(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	for i, extra := range []string{
		`"parent_id":null`,
		`"parent_id":null,"session_id":"s1"`,
		`"new_chat":true,"user_message":{"id":"u1","role":"user","content":"hi"}`,
	} {
		body := `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello."}],` + extra + `}`
		status, b := e.call(t, "/api/chat/completions", body, "Authorization", "Bearer "+e.key)
		if status != 200 || !strings.Contains(string(b), "[DONE]") {
			t.Fatalf("%s: %d %s", extra, status, b)
		}
		sent := e.owui.Requests()
		got := gjson.ParseBytes(sent[len(sent)-1].Body)
		for _, f := range []string{"parent_id", "session_id", "chat_id", "new_chat", "user_message", "message_ids"} {
			if got.Get(f).Exists() {
				t.Fatalf("%s: OpenWebUI got %s", extra, got.Raw)
			}
		}
		if recs := e.waitRecords(t, "alice", i+1); recs[i].Cost != money.Units(26) || recs[i].Source != ledger.SourceEdge {
			t.Fatalf("%s: record %+v", extra, recs[i])
		}
	}
}

// TestGateRoutesOpenWebUISpendsOn: routes on which OpenWebUI spends tokens
// without an answer the gate can read are gated: a blocked user, or one
// with nothing left, is refused; a funded user passes (their tokens are
// the provider meter's to count).
func TestGateRoutesOpenWebUISpendsOn(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	routes := []string{
		"/api/v1/chats/c1/compact",
		"/api/v1/automations/a1/run",
		"/api/v1/channels/ch1/messages/post",
		"/api/chat/actions/summarize",
		"/api/v1/retrieval/process/web",
		"/api/v1/retrieval/process/file",
		"/api/v1/files/",
		"/api/v1/knowledge/k1/file/add",
		"/api/v1/memories/add",
		"/api/v1/memories/query",
		"/openai/audio/translations",
		"/openai/moderations",
	}
	ctx := context.Background()
	if _, err := e.st.UpsertUser(ctx, store.UserInfo{ID: "alice", Email: "alice@example.com", Name: "Alice", Role: "user"}, money.Units(100)); err != nil {
		t.Fatal(err)
	}
	for _, state := range []string{"funded", "blocked", "broke"} {
		switch state {
		case "blocked":
			e.st.SetBlocked(ctx, "alice", true)
		case "broke":
			e.st.SetBlocked(ctx, "alice", false)
			e.st.SetBalance(ctx, "alice", 0, "test", "")
		}
		for _, path := range routes {
			before := e.modelCalls(path)
			status, b := e.call(t, path, `{"content":"@gpt-4o summarise this"}`, "Authorization", "Bearer "+e.key)
			reached := e.modelCalls(path) - before
			if state == "funded" {
				// OpenWebUI's answer, whatever it is (a form it wants, a
				// path its provider lacks): the gate let it through.
				if status == http.StatusPaymentRequired || status >= 500 || reached != 1 {
					t.Errorf("%s %s: %d %s (reached OpenWebUI %d times)", state, path, status, b, reached)
				}
				continue
			}
			if status != http.StatusPaymentRequired || reached != 0 || gjson.GetBytes(b, "detail").Str == "" {
				t.Errorf("%s %s: %d %s (reached OpenWebUI %d times)", state, path, status, b, reached)
			}
		}
	}
	if recs := e.records(t, "alice"); len(recs) != 0 {
		t.Fatalf("gated routes wrote records: %+v", recs)
	}
	// Not spending: passed untouched whatever the balance.
	for _, path := range []string{"/api/v1/chats/c1/pin", "/openai/config/update", "/api/v1/knowledge/create"} {
		before := e.modelCalls(path)
		if status, b := e.call(t, path, `{}`, "Authorization", "Bearer "+e.key); status == http.StatusPaymentRequired || e.modelCalls(path) != before+1 {
			t.Errorf("%s: %d %s", path, status, b)
		}
	}
}

// TestGateRefusalsEveryClientReads: a refusal speaks the error shape of the
// API the client called, and keeps "detail" for OpenWebUI's web UI.
func TestGateRefusalsEveryClientReads(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	e.broke(t)
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	for _, c := range []struct{ path, body, shape string }{
		{"/ollama/api/chat", `{"model":"gpt-4o",` + msgs + `}`, "ollama"},
		{"/ollama/api/generate/0", `{"model":"gpt-4o","prompt":"hi"}`, "ollama"},
		{"/api/v1/messages", `{"model":"gpt-4o","max_tokens":10,` + msgs + `}`, "anthropic"},
		{"/ollama/v1/messages", `{"model":"gpt-4o","max_tokens":10,` + msgs + `}`, "anthropic"},
		{"/api/chat/completions", `{"model":"gpt-4o",` + msgs + `}`, "openai"},
		{"/ollama/v1/chat/completions", `{"model":"gpt-4o",` + msgs + `}`, "openai"},
	} {
		status, b := e.call(t, c.path, c.body, "Authorization", "Bearer "+e.key)
		j := gjson.ParseBytes(b)
		detail := j.Get("detail").Str
		var msg string
		switch c.shape {
		case "ollama":
			if j.Get("error").Type == gjson.String {
				msg = j.Get("error").Str
			}
		case "anthropic":
			if j.Get("type").Str == "error" && j.Get("error.type").Str == "insufficient_balance" {
				msg = j.Get("error.message").Str
			}
		case "openai":
			if j.Get("error.type").Str == "insufficient_balance" {
				msg = j.Get("error.message").Str
			}
		}
		if status != http.StatusPaymentRequired || !strings.HasPrefix(msg, "Insufficient balance") || detail != msg {
			t.Errorf("%s: %d %s", c.path, status, b)
		}
	}
}

// waitCond polls cond for up to 5 s.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGateAsksOpenWebUIAboutTokensItCannotVerify: PyJWT decodes base64
// leniently, so OpenWebUI accepts "<valid JWT>!!!!". Such a token fails
// the local check and is asked of OpenWebUI: the call is held and, with no
// balance, refused.
func TestGateAsksOpenWebUIAboutTokensItCannotVerify(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	e.broke(t)
	status, b := e.call(t, "/api/chat/completions", fmt.Sprintf(chatBody, false), "Authorization", "Bearer "+e.jwt+"!!!!")
	if status != http.StatusPaymentRequired {
		t.Fatalf("lenient JWT: %d %s", status, b)
	}
	if n := e.modelCalls("/api/chat/completions"); n != 0 {
		t.Fatalf("%d calls reached OpenWebUI", n)
	}
	// Funded, the same token is served and charged to its user.
	if _, err := e.st.SetBalance(context.Background(), "alice", money.Units(100), "test", ""); err != nil {
		t.Fatal(err)
	}
	if status, b := e.call(t, "/api/chat/completions", fmt.Sprintf(chatBody, false), "Authorization", "Bearer "+e.jwt+"!!!!"); status != 200 {
		t.Fatalf("funded: %d %s", status, b)
	}
	if recs := e.waitRecords(t, "alice", 1); recs[0].Cost != money.Units(26) {
		t.Fatalf("records %+v", recs)
	}
}

// TestGateReadsTheCustomAPIKeyHeader: OpenWebUI reads API keys from the
// header CUSTOM_API_KEY_HEADER names; so does the gate (api_key_header,
// falling back to the same variable).
func TestGateReadsTheCustomAPIKeyHeader(t *testing.T) {
	t.Setenv("CUSTOM_API_KEY_HEADER", "X-OpenWebUI-Key")
	e := startEdge(t, sqliteDB(t), "")
	e.owui.SetOptions(fakeowui.OpenWebUIOptions{APIKeyHeader: "X-OpenWebUI-Key"})
	e.broke(t)
	status, b := e.call(t, "/api/chat/completions", fmt.Sprintf(chatBody, false), "X-OpenWebUI-Key", e.key)
	if status != http.StatusPaymentRequired || !strings.Contains(gjson.GetBytes(b, "detail").Str, "Insufficient balance") {
		t.Fatalf("key in the custom header: %d %s", status, b)
	}
	if n := e.modelCalls("/api/chat/completions"); n != 0 {
		t.Fatalf("%d calls reached OpenWebUI", n)
	}
}

// TestGateExplainsTheAPIKeyAllowList: OpenWebUI's API-key endpoint
// allow-list (0.10+) may allow /api/chat/completions but not
// /api/v1/auths. The gate cannot tell whose key it is: 403 with what to
// allow, never a pass.
func TestGateExplainsTheAPIKeyAllowList(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	e.broke(t)
	e.owui.SetOptions(fakeowui.OpenWebUIOptions{APIKeyAllowedEndpoints: []string{"/api/chat/completions"}})
	status, b := e.call(t, "/api/chat/completions", fmt.Sprintf(chatBody, false), "Authorization", "Bearer "+e.key)
	if status != http.StatusForbidden || !strings.Contains(gjson.GetBytes(b, "detail").Str, "/api/v1/auths") {
		t.Fatalf("allow-list: %d %s", status, b)
	}
	if n := e.modelCalls("/api/chat/completions"); n != 0 {
		t.Fatalf("%d calls reached OpenWebUI", n)
	}
	// With /api/v1/auths allowed, keys are known and charged.
	e.owui.SetOptions(fakeowui.OpenWebUIOptions{APIKeyAllowedEndpoints: []string{"/api/chat/completions", "/api/v1/auths"}})
	_, bobKey := e.owui.AddUser("bob", "bob@example.com", "Bob", "user")
	if status, b := e.call(t, "/api/chat/completions", fmt.Sprintf(chatBody, false), "Authorization", "Bearer "+bobKey); status != 200 {
		t.Fatalf("allowed: %d %s", status, b)
	}
	if recs := e.waitRecords(t, "bob", 1); recs[0].Cost != money.Units(26) {
		t.Fatalf("bob's records %+v", recs)
	}
}

// TestGateChargesTheFirstTurnOfANewChat: the browser starts a chat with
// session_id, id and "parent_id": null, and no chat_id; OpenWebUI creates
// the chat, runs it in the background and names the chat in its answer.
// The turn is charged once, with the usage OpenWebUI reports, in the
// front-only deployment.
func TestGateChargesTheFirstTurnOfANewChat(t *testing.T) {
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			e := startEdge(t, db(), "")
			e.owui.SetOptions(fakeowui.OpenWebUIOptions{RunBackground: true})
			e.provider.SetReply(fakeowui.Reply{Text: "Hi there.", Chunks: 2, Usage: fakeowui.Usage{PromptTokens: 30, CompletionTokens: 10}})
			tabs := openTabs(t, e.url, e.jwt, 1, false)
			status, b := e.call(t, "/api/chat/completions", `{"model":"gpt-4o","stream":true,"session_id":"sess","id":"m-new","parent_id":null,
				"user_message":{"id":"u1","parentId":null,"role":"user","content":"Hello!"},
				"message_ids":[{"model_id":"gpt-4o","message_id":"m-new","modelIdx":0}],
				"messages":[{"role":"system","content":"Be brief."}]}`, "Authorization", "Bearer "+e.jwt)
			chatID := gjson.GetBytes(b, "chat_id").Str
			if status != 200 || !gjson.GetBytes(b, "status").Bool() || chatID == "" {
				t.Fatalf("new chat: %d %s", status, b)
			}
			e.owui.WaitBackground()
			waitTabs(t, tabs, "m-new", isDone)
			recs := e.webRecords(t, 1)
			r := recs[0]
			if len(recs) != 1 || r.Source != ledger.SourceWebsocket || r.Status != ledger.StatusCompleted || r.Estimated ||
				r.ChatID != chatID || r.MessageID != "m-new" || r.InputTokens != 30 || r.OutputTokens != 10 || r.Cost != money.Units(50) {
				t.Fatalf("records %+v (chat %s)", recs, chatID)
			}
			if got := e.balance(t, "alice"); got != money.Units(50) {
				t.Fatalf("balance %s, want 50", got)
			}
			// The function's outlet for the same message adds nothing.
			code, out, err := post(e.url+"/api/v1/outlet", `{"user":{"id":"alice"},"body":{"model":"gpt-4o","chat_id":"`+chatID+`","id":"m-new",
				"messages":[{"role":"user","content":"Hello!"},{"role":"assistant","content":"Hi there.","usage":{"prompt_tokens":30,"completion_tokens":10}}]}}`)
			if err != nil || code != 200 || gjson.GetBytes(out, "totalCost").Raw != "50" {
				t.Fatalf("outlet %d %s %v", code, out, err)
			}
			if recs := e.webRecords(t, 1); len(recs) != 1 {
				t.Fatalf("the outlet charged again: %+v", recs)
			}
		})
	}
}

// TestGateClientErrorsAreNever5xx walks the gate's model routes with
// malformed, trailing-data, oversized, overflowing and mistyped bodies:
// each is a 4xx naming the problem, and none reaches OpenWebUI.
func TestGateClientErrorsAreNever5xx(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "max_body_size 4KiB")
	paths := []string{"/api/chat/completions", "/api/v1/chat/completions", "/openai/chat/completions", "/openai/responses",
		"/ollama/api/chat", "/ollama/api/generate", "/ollama/v1/chat/completions", "/api/v1/messages",
		"/api/v1/tasks/title/completions", "/api/embeddings", "/api/v1/images/generations", "/api/v1/audio/speech"}
	bodies := map[string]string{
		"malformed":     `{"model": "gpt-4o", "messages": [`,
		"trailing data": `{"model":"gpt-4o","messages":[]}{"model":"gpt-4o"}`,
		"not an object": `["gpt-4o"]`,
		"NaN":           `{"model":"gpt-4o","temperature":NaN}`,
		"mistyped":      `{"model":42,"messages":[]}`,
		"stream string": `{"model":"gpt-4o","stream":"yes"}`,
		"oversized":     `{"model":"gpt-4o","prompt":"` + strings.Repeat("x", 8<<10) + `"}`,
		"blank":         " ",
	}
	for _, path := range paths {
		for name, body := range bodies {
			status, b := e.call(t, path, body, "Authorization", "Bearer "+e.key)
			if status < 400 || status >= 500 || gjson.GetBytes(b, "detail").Str == "" {
				t.Errorf("%s, %s: %d %s", path, name, status, b)
			}
		}
		if n := e.modelCalls(path); n != 0 {
			t.Errorf("%d refused calls reached OpenWebUI's %s", n, path)
		}
	}
}

// TestGateRefusesAReusedMessageID: a message id that was answered (and
// charged) already may not be sent again: its charge would be a
// duplicate, and the second answer free. Sent by the web UI (background)
// or on a synchronous call, on both backends.
func TestGateRefusesAReusedMessageID(t *testing.T) {
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			e := startEdge(t, db(), "")
			// A synchronous call naming its message, answered and charged.
			sync := `{"model":"gpt-4o","stream":false,"id":"m-sync","messages":[{"role":"user","content":"hi"}]}`
			if status, b := e.call(t, "/api/chat/completions", sync, "Authorization", "Bearer "+e.jwt); status != 200 {
				t.Fatalf("first call: %d %s", status, b)
			}
			e.waitRecords(t, "alice", 1)
			// A web-UI turn, settled by the function's outlet.
			web := `{"model":"gpt-4o","stream":true,"session_id":"s","chat_id":"c1","id":"m-web","messages":[{"role":"user","content":"hi"}]}`
			if status, b := e.call(t, "/api/chat/completions", web, "Authorization", "Bearer "+e.jwt); status != 200 {
				t.Fatalf("web turn: %d %s", status, b)
			}
			if code, out, err := post(e.url+"/api/v1/outlet", `{"user":{"id":"alice"},"body":{"model":"gpt-4o","chat_id":"c1","id":"m-web",
				"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Hello","usage":{"prompt_tokens":3,"completion_tokens":2}}]}}`); err != nil || code != 200 {
				t.Fatalf("outlet %d %s %v", code, out, err)
			}
			waitSettled(t, e.st, "alice")
			calls := e.modelCalls("/api/chat/completions")
			for name, body := range map[string]string{"sync": sync, "web": web} {
				status, b := e.call(t, "/api/chat/completions", body, "Authorization", "Bearer "+e.jwt)
				if status != http.StatusConflict || gjson.GetBytes(b, "error.type").Str != "message_id_reused" {
					t.Errorf("%s again: %d %s", name, status, b)
				}
			}
			if n := e.modelCalls("/api/chat/completions"); n != calls {
				t.Fatalf("%d reused calls reached OpenWebUI", n-calls)
			}
		})
	}
}
