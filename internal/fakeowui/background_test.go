package fakeowui

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

func TestBackgroundChatRuns(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "user")
	p.SetReply(Reply{Text: "It is noon.", Chunks: 2, Usage: Usage{PromptTokens: 20, CompletionTokens: 5, CachedTokens: 4, ReasoningTokens: 2}})
	o.SetOptions(OpenWebUIOptions{RunBackground: true, ToolRounds: 1, TitleGeneration: true,
		ProviderKey: "shared", ForwardUserInfo: true, ForwardUserJWTSecret: "fwd-secret",
		ConnectionHeaders: map[string]string{"X-OpenWebUI-Message-Id": "{{MESSAGE_ID}}", "X-Task": "{{TASK}}"}})

	resp := post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},
		"session_id":"s","chat_id":"c1","id":"a1","messages":[{"role":"user","content":"time?"}]}`, "Authorization", "Bearer "+jwt)
	if resp.StatusCode != 200 || !gjson.Get(readAll(t, resp), "status").Bool() {
		t.Fatalf("background answer %d", resp.StatusCode)
	}
	o.WaitBackground()

	reqs := p.Requests()
	if len(reqs) != 3 {
		t.Fatalf("provider calls = %d, want chat + tool round + title", len(reqs))
	}
	for i, r := range reqs {
		// The message id comes from the connection's custom headers; the
		// title task sees the chat's metadata, which has none.
		wantMsg, wantTask := "a1", ""
		if i == 2 {
			wantMsg, wantTask = "", "title_generation"
		}
		if r.Header.Get("Authorization") != "Bearer shared" || r.Header.Get("X-Openwebui-Chat-Id") != "c1" ||
			r.Header.Get("X-Openwebui-Message-Id") != wantMsg || r.Header.Get("X-Task") != wantTask ||
			len(r.Header.Values("X-Openwebui-Message-Id")) != 1 || r.Header.Get("X-Openwebui-User-Id") != "" {
			t.Errorf("call %d headers %v", i, r.Header)
		}
		claims := decodeClaims(t, r.Header.Get("X-Openwebui-User-Jwt"))
		if claims.Get("sub").String() != "u1" || claims.Get("iss").String() != "open-webui" {
			t.Errorf("call %d JWT claims %s", i, claims.Raw)
		}
	}
	if last := gjson.GetBytes(reqs[1].Body, "messages.@reverse.0.role").String(); last != "tool" {
		t.Errorf("tool round ends in %q", last)
	}
	if gjson.GetBytes(reqs[2].Body, "stream").Bool() || gjson.GetBytes(reqs[2].Body, "max_completion_tokens").Int() != 1000 ||
		!strings.HasPrefix(gjson.GetBytes(reqs[2].Body, "messages.0.content").String(), "### Task:\nGenerate a concise title summarizing the chat history.") ||
		!strings.Contains(gjson.GetBytes(reqs[2].Body, "messages.0.content").String(), "USER: time?\nASSISTANT: It is noon.") {
		t.Errorf("title call %s", reqs[2].Body)
	}

	var done Event
	types := map[string]int{}
	for _, e := range o.Events() {
		types[e.Type()]++
		if d, _ := e.Payload["data"].(map[string]any)["data"].(map[string]any); d["done"] == true {
			done = e
		}
		if e.Type() == "chat:title" && e.Payload["data"].(map[string]any)["data"] != "time?" {
			t.Errorf("chat:title %v: the answer has no JSON title, so the first message's content", e.Payload)
		}
		if e.UserID != "u1" || e.Payload["chat_id"] != "c1" || e.Payload["message_id"] != "a1" {
			t.Errorf("event for %s %v", e.UserID, e.Payload)
		}
	}
	if types["chat:title"] != 1 || types["chat:active"] != 2 || types["chat:completion"] < 4 {
		t.Errorf("event types %v", types)
	}
	d := gjson.Parse(string(mustJSON(done.Payload))).Get("data.data")
	// Two calls' usage summed (merge_usage, 0.10+).
	// merge_usage (0.10+): normalized counts and details summed over the two
	// calls, prompt_tokens/completion_tokens the last call's.
	if d.Get("usage.input_tokens").Int() != 40 || d.Get("usage.output_tokens").Int() != 10 ||
		d.Get("usage.prompt_tokens").Int() != 20 || d.Get("usage.completion_tokens").Int() != 5 ||
		d.Get("usage.prompt_tokens_details.cached_tokens").Int() != 8 ||
		d.Get("usage.completion_tokens_details.reasoning_tokens").Int() != 4 ||
		d.Get("output.0.content.0.text").String() != "It is noon.\nIt is noon." {
		t.Errorf("done event %s", d.Raw)
	}
}

func TestBackgroundChatStop(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "user")
	p.SetReply(Reply{Text: "a b c d e f", Chunks: 6, Delay: 200 * time.Millisecond})
	o.SetOptions(OpenWebUIOptions{RunBackground: true})
	post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true,"session_id":"s","chat_id":"c9","id":"a9"}`, "Authorization", "Bearer "+jwt).Body.Close()
	time.Sleep(300 * time.Millisecond)
	if resp := post(t, o.URL()+"/api/tasks/chat/c9/stop", ``, "Authorization", "Bearer "+jwt); !gjson.Get(readAll(t, resp), "status").Bool() {
		t.Fatal("stop found no task")
	}
	o.WaitBackground()
	var cancelled, done bool
	for _, e := range o.Events() {
		cancelled = cancelled || e.Type() == "chat:tasks:cancel"
		done = done || gjson.Get(string(mustJSON(e.Payload)), "data.data.done").Bool()
	}
	if !cancelled || done {
		t.Errorf("cancelled %v, done %v", cancelled, done)
	}
}

// decodeClaims checks a forwarded-user JWT's signature and returns its claims.
func decodeClaims(t *testing.T, token string) gjson.Result {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 || SignJWT("fwd-secret", nil) == "" {
		t.Fatalf("not a JWT: %q", token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if SignJWT("fwd-secret", claims) != token {
		t.Fatalf("JWT not signed with the forwarding secret")
	}
	return gjson.ParseBytes(payload)
}
