package fakeowui

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// The user-name header is quote(name.strip(), safe=' ') and the template
// values name.strip(): checked against Python's urllib and str.strip.
func TestQuoteAndStripLikePython(t *testing.T) {
	py := pythonWith(t, "urllib.parse")
	names := []string{"Alice", " Zoë / O'Brien ", "a+b=c&d?e#f%", "\x1cname\x1f", "\u3000全角\u3000", "tab\there", "~_.-", "emoji 🙂", "\u00a0nbsp\u2028"}
	const script = `
import sys, json
from urllib.parse import quote
print(json.dumps([[quote(n.strip(), safe=' '), n.strip()] for n in json.load(sys.stdin)]))
`
	var want [][2]string
	runPython(t, py, script, names, &want)
	for i, n := range names {
		if q, s := pyQuote(pyStrip(n)), pyStrip(n); q != want[i][0] || s != want[i][1] {
			t.Errorf("%q: quote %q strip %q, Python %q %q", n, q, s, want[i][0], want[i][1])
		}
	}
}

// Every provider call carries the user-info headers OpenWebUI sends
// (routers/openai.py get_headers_and_cookies) and no message id, then the
// connection's custom headers, templated and applied last.
func TestProviderHeadersAndConnectionHeaders(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", " alice@example.com ", " Zoë / O'Brien ", "user")
	auth := []string{"Authorization", "Bearer " + jwt, "User-Agent", "tester/1"}

	// Without custom headers: no message id, even when the call has one.
	o.SetOptions(OpenWebUIOptions{ForwardUserInfo: true, ProviderKey: "sk-conn", RunBackground: true})
	readAll(t, post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true,"session_id":"s","chat_id":"c1","id":"a1"}`, auth...))
	readAll(t, post(t, o.URL()+"/api/chat/completions", `{"model":"m","chat_id":"c2"}`, auth...))
	o.WaitBackground()
	// The calls reach the provider in either order (the first runs in
	// the background).
	chats := map[string]bool{}
	for i, r := range p.Requests() {
		h := r.Header
		if _, ok := h["X-Openwebui-Message-Id"]; ok {
			t.Errorf("call %d sent a message id: %v", i, h)
		}
		chats[h.Get("X-Openwebui-Chat-Id")] = true
		if h.Get("X-Openwebui-User-Name") != "Zo%C3%AB %2F O%27Brien" || h.Get("X-Openwebui-User-Email") != "alice@example.com" ||
			h.Get("X-Openwebui-User-Id") != "u1" || h.Get("X-Openwebui-User-Role") != "user" ||
			h.Get("Authorization") != "Bearer sk-conn" {
			t.Errorf("call %d headers %v", i, h)
		}
	}
	if len(p.Requests()) != 2 || !chats["c1"] || !chats["c2"] {
		t.Errorf("the provider saw chats %v, want c1 and c2", chats)
	}

	// Custom headers: templated, after the others, replacing the same name.
	o.SetOptions(OpenWebUIOptions{ForwardUserInfo: true, ProviderKey: "sk-conn", RunBackground: true, ToolRounds: 1, TitleGeneration: true,
		ConnectionHeaders: map[string]string{
			"X-OpenWebUI-Message-Id": "{{MESSAGE_ID}}",
			"X-Who":                  "{{USER_ID}}|{{USER_NAME}}|{{USER_EMAIL}}|{{USER_ROLE}}|{{CHAT_ID}}|{{TASK}}|{{USER_GROUPS}}|{{USER_AGENT}}|{{USER_MESSAGE_ID}}",
			"Authorization":          "Bearer per-connection",
			"x-openwebui-user-role":  "another spelling",
		}})
	n := len(p.Requests())
	readAll(t, post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true,"session_id":"s","chat_id":"c3","id":"a3",
		"user_message":{"id":"q3","parentId":"a2"},"messages":[{"role":"user","content":"hi"}]}`, auth...))
	o.WaitBackground()
	readAll(t, post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true}`, auth...))
	readAll(t, post(t, o.URL()+"/api/v1/tasks/title/completions", `{"model":"m","messages":[],"chat_id":"c4"}`, auth...))
	readAll(t, post(t, o.URL()+"/ollama/api/chat", `{"model":"llama"}`, auth...))
	readAll(t, post(t, o.URL()+"/api/v1/messages", `{"model":"claude","max_tokens":1,"messages":[]}`, auth...))
	readAll(t, post(t, o.URL()+"/openai/chat/completions", `{"model":"m"}`, auth...))
	want := []struct{ path, msg, who string }{
		{"/v1/chat/completions", "a3", "u1|Zoë / O'Brien|alice@example.com|user|c3|||tester/1|q3"},               // background
		{"/v1/chat/completions", "a3", "u1|Zoë / O'Brien|alice@example.com|user|c3|||tester/1|q3"},               // tool round
		{"/v1/chat/completions", "", "u1|Zoë / O'Brien|alice@example.com|user|c3|title_generation||tester/1|q3"}, // title
		{"/v1/chat/completions", "", "u1|Zoë / O'Brien|alice@example.com|user||||tester/1|"},                     // relay
		{"/v1/chat/completions", "", "u1|Zoë / O'Brien|alice@example.com|user|c4|title_generation||tester/1|"},   // title task
		{"/api/chat", "", "u1|Zoë / O'Brien|alice@example.com|user||||tester/1|"},                                // ollama
		{"/v1/messages", "", "u1|Zoë / O'Brien|alice@example.com|user||||tester/1|"},                             // anthropic
		{"/v1/chat/completions", "", "u1|Zoë / O'Brien|alice@example.com|user||||tester/1|"},                     // /openai passthrough
	}
	reqs := p.Requests()[n:]
	if len(reqs) != len(want) {
		t.Fatalf("%d provider calls, want %d", len(reqs), len(want))
	}
	for i, r := range reqs {
		h := r.Header
		if r.Path != want[i].path || h.Get("X-Openwebui-Message-Id") != want[i].msg || len(h.Values("X-Openwebui-Message-Id")) != 1 ||
			h.Get("X-Who") != want[i].who || h.Get("Authorization") != "Bearer per-connection" ||
			strings.Join(h.Values("X-Openwebui-User-Role"), ",") != "user,another spelling" {
			t.Errorf("call %d (%s): %v", i, r.Path, h)
		}
	}
	if gjson.GetBytes(reqs[3].Body, "stream").Bool() != true {
		t.Errorf("relay body %s", reqs[3].Body)
	}
}

// CUSTOM_API_KEY_HEADER and the API-key endpoint allow-list.
func TestAPIKeyHeaderAndAllowList(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, key := o.AddUser("u1", "alice@example.com", "Alice", "user")
	_, pendingKey := o.AddUser("u2", "bob@example.com", "Bob", "pending")
	status := func(method, path string, header ...string) (int, string) {
		req, _ := http.NewRequest(method, o.URL()+path, strings.NewReader(`{"model":"m"}`))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, gjson.Get(readAll(t, resp), "detail").String()
	}

	o.SetOptions(OpenWebUIOptions{APIKeyHeader: "X-OpenWebUI-Key"})
	if s, _ := status("GET", "/api/v1/auths/", "X-OpenWebUI-Key", key); s != 200 {
		t.Errorf("custom key header: %d", s)
	}
	if s, d := status("GET", "/api/v1/auths/", "X-Api-Key", key); s != 401 || d != DetailNotAuthenticated {
		t.Errorf("x-api-key with a custom header set: %d %s", s, d)
	}
	o.SetOptions(OpenWebUIOptions{})
	if s, _ := status("GET", "/api/v1/auths/", "X-Api-Key", key); s != 200 {
		t.Errorf("default x-api-key: %d", s)
	}

	o.SetOptions(OpenWebUIOptions{APIKeyAllowedEndpoints: []string{" /api/chat/completions ", "/api/v1/models", ""}})
	for _, c := range []struct {
		method, path string
		header       []string
		status       int
		detail       string
	}{
		{"POST", "/api/chat/completions", []string{"Authorization", "Bearer " + key}, 200, ""},
		{"GET", "/api/v1/models", []string{"Authorization", "Bearer " + key}, 200, ""},
		{"POST", "/api/chat/completionsx", []string{"Authorization", "Bearer " + key}, 0, ""}, // not below the entry (and no route)
		{"GET", "/api/v1/auths/", []string{"Authorization", "Bearer " + key}, 403, DetailAccessProhibited},
		{"GET", "/api/models", []string{"X-Api-Key", key}, 403, DetailAccessProhibited},
		{"POST", "/api/v1/chat/completions", []string{"Authorization", "Bearer " + key}, 403, DetailAccessProhibited},
		{"GET", "/api/v1/auths/", []string{"Authorization", "Bearer " + jwt}, 200, ""}, // JWTs are not restricted
		{"POST", "/api/chat/completions", []string{"Authorization", "Bearer " + pendingKey}, 401, DetailAccessProhibited},
		{"GET", "/api/v1/auths/", []string{"Authorization", "Bearer " + pendingKey}, 403, DetailAccessProhibited},
		{"GET", "/api/v1/auths/", []string{"Authorization", "Bearer sk-unknown"}, 401, DetailSessionExpired},
	} {
		if c.status == 0 {
			if !endpointAllowed(c.path, o.options().APIKeyAllowedEndpoints) {
				continue
			}
			t.Errorf("%s is allowed", c.path)
		}
		if s, d := status(c.method, c.path, c.header...); s != c.status || d != c.detail {
			t.Errorf("%s %s %v: %d %q, want %d %q", c.method, c.path, c.header[0], s, d, c.status, c.detail)
		}
	}
}
