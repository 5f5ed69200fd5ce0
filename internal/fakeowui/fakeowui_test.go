package fakeowui

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

type event struct {
	name string
	data string
	at   time.Time
}

func post(t *testing.T, url, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func get(t *testing.T, url string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sse reads a whole event stream, noting when each event arrived.
func sse(t *testing.T, resp *http.Response) []event {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	var out []event
	var cur event
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		case line == "":
			cur.at = time.Now()
			out = append(out, cur)
			cur = event{}
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	return out
}

func ndjson(t *testing.T, resp *http.Response) []gjson.Result {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("Content-Type %q", ct)
	}
	var out []gjson.Result
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if !gjson.Valid(sc.Text()) {
			t.Fatalf("bad NDJSON line %q", sc.Text())
		}
		out = append(out, gjson.Parse(sc.Text()))
	}
	return out
}

func wantInt(t *testing.T, j gjson.Result, path string, want int64) {
	t.Helper()
	if got := j.Get(path); !got.Exists() || got.Int() != want {
		t.Errorf("%s = %v, want %d in %s", path, got, want, j.Raw)
	}
}

func TestProviderChatJSON(t *testing.T) {
	p := NewProvider(t)
	r := DefaultReply()
	r.Usage = Usage{PromptTokens: 10, CompletionTokens: 5, CachedTokens: 4, ReasoningTokens: 2}
	p.SetReply(r)
	resp := post(t, p.URL()+"/v1/chat/completions", `{"model":"gpt-x","messages":[{"role":"user","content":"hi"}]}`)
	j := gjson.Parse(readAll(t, resp))
	if resp.StatusCode != 200 || j.Get("object").String() != "chat.completion" || j.Get("model").String() != "gpt-x" {
		t.Fatalf("%d %s", resp.StatusCode, j.Raw)
	}
	if j.Get("choices.0.message.content").String() != r.Text || j.Get("choices.0.finish_reason").String() != "stop" {
		t.Errorf("choices: %s", j.Get("choices").Raw)
	}
	wantInt(t, j, "usage.prompt_tokens", 10)
	wantInt(t, j, "usage.completion_tokens", 5)
	wantInt(t, j, "usage.total_tokens", 15)
	wantInt(t, j, "usage.prompt_tokens_details.cached_tokens", 4)
	wantInt(t, j, "usage.completion_tokens_details.reasoning_tokens", 2)

	// No details when zero; no usage at all with OmitUsage.
	p.SetReply(DefaultReply())
	j = gjson.Parse(readAll(t, post(t, p.URL()+"/chat/completions", `{"model":"m"}`)))
	if j.Get("usage.prompt_tokens_details").Exists() || !j.Get("usage").Exists() {
		t.Errorf("usage %s", j.Get("usage").Raw)
	}
	r = DefaultReply()
	r.OmitUsage = true
	p.SetReply(r)
	if j = gjson.Parse(readAll(t, post(t, p.URL()+"/v1/chat/completions", `{"model":"m"}`))); j.Get("usage").Exists() {
		t.Errorf("usage reported despite OmitUsage: %s", j.Raw)
	}
	if reqs := p.Requests(); len(reqs) != 3 || reqs[0].Path != "/v1/chat/completions" || !strings.Contains(string(reqs[0].Body), `"gpt-x"`) {
		t.Errorf("requests %+v", reqs)
	}
}

func TestProviderChatStream(t *testing.T) {
	p := NewProvider(t)
	r := DefaultReply()
	r.Text, r.Chunks, r.Delay = "abcdefghij", 4, 40*time.Millisecond
	p.SetReply(r)

	for _, include := range []bool{false, true} {
		body := `{"model":"m","stream":true}`
		if include {
			body = `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`
		}
		start := time.Now()
		evs := sse(t, post(t, p.URL()+"/v1/chat/completions", body))
		if evs[len(evs)-1].data != "[DONE]" {
			t.Fatalf("last event %q", evs[len(evs)-1].data)
		}
		var text strings.Builder
		var arrivals []time.Time
		for _, e := range evs[:len(evs)-1] {
			j := gjson.Parse(e.data)
			if j.Get("object").String() != "chat.completion.chunk" {
				t.Fatalf("chunk %s", e.data)
			}
			if c := j.Get("choices.0.delta.content"); c.Exists() {
				text.WriteString(c.String())
				arrivals = append(arrivals, e.at)
			}
			hasUsage := j.Get("usage").Exists()
			if hasUsage != include {
				t.Errorf("include_usage=%v, chunk %s", include, e.data)
			}
		}
		if text.String() != r.Text || len(arrivals) != r.Chunks {
			t.Fatalf("content %q in %d chunks", text.String(), len(arrivals))
		}
		// Flushed one by one, not buffered: the first piece arrives well
		// before the last (lenient, a busy machine may delay the reader).
		if spread := arrivals[len(arrivals)-1].Sub(arrivals[0]); spread < r.Delay {
			t.Errorf("content chunks arrived within %v", spread)
		}
		if time.Since(start) < 3*r.Delay {
			t.Errorf("stream took %v", time.Since(start))
		}
		last := gjson.Parse(evs[len(evs)-2].data)
		if include {
			if len(last.Get("choices").Array()) != 0 || !last.Get("choices").IsArray() {
				t.Errorf("usage chunk %s", last.Raw)
			}
			wantInt(t, last, "usage.prompt_tokens", 12)
			wantInt(t, last, "usage.completion_tokens", 7)
			if !gjson.Parse(evs[0].data).Get("usage").Exists() || gjson.Parse(evs[0].data).Get("usage").Type != gjson.Null {
				t.Errorf("first chunk usage should be null: %s", evs[0].data)
			}
		} else if last.Get("choices.0.finish_reason").String() != "stop" {
			t.Errorf("last chunk %s", last.Raw)
		}
	}
}

func TestProviderErrorAndHang(t *testing.T) {
	p := NewProvider(t)
	r := DefaultReply()
	r.Status, r.Message = 500, "upstream exploded"
	p.SetReply(r)
	resp := post(t, p.URL()+"/v1/chat/completions", `{"model":"m","stream":true}`)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 500 || j.Get("error.message").String() != "upstream exploded" {
		t.Errorf("%d %s", resp.StatusCode, j.Raw)
	}

	r = DefaultReply()
	r.Hang = true
	p.SetReply(r)
	done := make(chan string)
	go func() {
		resp, err := http.Post(p.URL()+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m"}`))
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	select {
	case b := <-done:
		t.Fatalf("hanging request answered: %s", b)
	case <-time.After(100 * time.Millisecond):
	}
	p.Release()
	if b := <-done; gjson.Get(b, "object").String() != "chat.completion" {
		t.Errorf("after Release: %s", b)
	}

	// A client that gives up ends the hang.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.URL()+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err) // headers come before the hang
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("stream completed while hanging")
	}
	resp.Body.Close()
}

func TestProviderEmbeddings(t *testing.T) {
	p := NewProvider(t)
	j := gjson.Parse(readAll(t, post(t, p.URL()+"/v1/embeddings", `{"model":"e","input":["a","b"]}`)))
	if len(j.Get("data").Array()) != 2 || j.Get("data.1.object").String() != "embedding" {
		t.Errorf("%s", j.Raw)
	}
	wantInt(t, j, "usage.prompt_tokens", 12)
	wantInt(t, j, "usage.total_tokens", 12)
}

func TestProviderOllama(t *testing.T) {
	p := NewProvider(t)
	lines := ndjson(t, post(t, p.URL()+"/api/chat", `{"model":"llama3.2","messages":[]}`))
	if len(lines) != 4 {
		t.Fatalf("%d lines", len(lines))
	}
	var text string
	for _, l := range lines[:3] {
		if l.Get("done").Bool() || l.Get("message.role").String() != "assistant" || l.Get("model").String() != "llama3.2" || !l.Get("created_at").Exists() {
			t.Errorf("line %s", l.Raw)
		}
		text += l.Get("message.content").String()
	}
	if text != DefaultReply().Text {
		t.Errorf("text %q", text)
	}
	last := lines[3]
	if !last.Get("done").Bool() || last.Get("done_reason").String() != "stop" {
		t.Errorf("last %s", last.Raw)
	}
	wantInt(t, last, "prompt_eval_count", 12)
	wantInt(t, last, "eval_count", 7)

	lines = ndjson(t, post(t, p.URL()+"/api/generate", `{"model":"llama3.2","prompt":"hi"}`))
	if lines[0].Get("response").String() == "" || !lines[len(lines)-1].Get("context").Exists() {
		t.Errorf("generate %v", lines)
	}

	resp := post(t, p.URL()+"/api/chat", `{"model":"llama3.2","stream":false}`)
	j := gjson.Parse(readAll(t, resp))
	if resp.Header.Get("Content-Type") != "application/json" || !j.Get("done").Bool() || j.Get("message.content").String() != DefaultReply().Text {
		t.Errorf("non-stream %s", j.Raw)
	}
	wantInt(t, j, "eval_count", 7)
}

func TestProviderAnthropic(t *testing.T) {
	p := NewProvider(t)
	evs := sse(t, post(t, p.URL()+"/v1/messages", `{"model":"claude","max_tokens":10,"stream":true,"messages":[]}`))
	var names []string
	var text string
	for _, e := range evs {
		names = append(names, e.name)
		j := gjson.Parse(e.data)
		if j.Get("type").String() != e.name {
			t.Errorf("event %s with data %s", e.name, e.data)
		}
		switch e.name {
		case "message_start":
			wantInt(t, j, "message.usage.input_tokens", 12)
		case "content_block_delta":
			text += j.Get("delta.text").String()
		case "message_delta":
			wantInt(t, j, "usage.output_tokens", 7)
		}
	}
	want := "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if strings.Join(names, " ") != want || text != DefaultReply().Text {
		t.Errorf("events %v, text %q", names, text)
	}

	j := gjson.Parse(readAll(t, post(t, p.URL()+"/v1/messages", `{"model":"claude","max_tokens":10,"messages":[]}`)))
	if j.Get("type").String() != "message" || j.Get("content.0.text").String() != DefaultReply().Text {
		t.Errorf("%s", j.Raw)
	}
	wantInt(t, j, "usage.input_tokens", 12)
	wantInt(t, j, "usage.output_tokens", 7)
}

func TestOpenWebUIAuths(t *testing.T) {
	o := NewOpenWebUI(t, nil)
	jwt, key := o.AddUser("u1", "alice@example.com", "Alice", "user")
	jwt2, key2 := o.AddUser("u2", "bob@example.com", "Bob", "pending")
	url := o.URL() + "/api/v1/auths/"

	resp := get(t, url, "Authorization", "Bearer "+jwt)
	j := gjson.Parse(readAll(t, resp))
	if resp.StatusCode != 200 || j.Get("id").String() != "u1" || j.Get("email").String() != "alice@example.com" ||
		j.Get("name").String() != "Alice" || j.Get("role").String() != "user" || j.Get("token_type").String() != "Bearer" ||
		j.Get("token").String() != jwt || j.Get("expires_at").Int() < time.Now().Unix() || !j.Get("permissions").IsObject() {
		t.Errorf("%d %s", resp.StatusCode, j.Raw)
	}
	if c := resp.Cookies(); len(c) != 1 || c[0].Name != "token" || c[0].Value != jwt || !c[0].HttpOnly {
		t.Errorf("Set-Cookie %v", resp.Header.Values("Set-Cookie"))
	}

	resp = get(t, url, "Authorization", "Bearer "+key2)
	j = gjson.Parse(readAll(t, resp))
	if j.Get("id").String() != "u2" || j.Get("role").String() != "pending" || j.Get("expires_at").Type != gjson.Null || j.Get("token").String() != key2 {
		t.Errorf("API key: %s", j.Raw)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("Set-Cookie for an API key")
	}

	whoami := func(header ...string) string {
		resp := get(t, url, header...)
		j := gjson.Parse(readAll(t, resp))
		if resp.StatusCode != 200 {
			return j.Get("detail").String()
		}
		return j.Get("id").String()
	}
	cases := []struct {
		name   string
		header []string
		want   string
	}{
		{"none", nil, DetailNotAuthenticated},
		{"garbage", []string{"Authorization", "Bearer nope"}, DetailUnauthorized},
		{"unknown key", []string{"Authorization", "Bearer sk-nope"}, DetailSessionExpired},
		{"unknown user", []string{"Authorization", "Bearer " + o.IssueToken("nobody", time.Time{})}, DetailSessionExpired},
		{"no id", []string{"Authorization", "Bearer " + SignJWT(o.Secret(), map[string]any{"sub": "u1"})}, DetailUnauthorized},
		{"cookie", []string{"Cookie", "token=" + jwt2}, "u2"},
		{"x-api-key", []string{"X-Api-Key", key}, "u1"},
		{"bearer over cookie", []string{"Authorization", "Bearer " + jwt, "Cookie", "token=" + jwt2}, "u1"},
		{"cookie over x-api-key", []string{"Cookie", "a=b; token=" + jwt2, "X-Api-Key", key}, "u2"},
		{"last token cookie", []string{"Cookie", "token=" + jwt + "; token=" + jwt2}, "u2"},
		{"empty cookie blocks x-api-key", []string{"Cookie", "token=", "X-Api-Key", key}, DetailUnauthorized},
		{"other scheme over x-api-key", []string{"Authorization", "Basic " + key2, "X-Api-Key", key}, "u2"},
		{"no exp", []string{"Authorization", "Bearer " + o.IssueToken("u1", time.Time{})}, "u1"},
		{"expired", []string{"Authorization", "Bearer " + o.IssueToken("u1", time.Now().Add(-time.Second))}, DetailUnauthorized},
		{"wrong secret", []string{"Authorization", "Bearer " + SignJWT("other", map[string]any{"id": "u1"})}, DetailUnauthorized},
		{"PyJWT ignores junk after the signature", []string{"Authorization", "Bearer " + jwt + "!!!!"}, "u1"},
	}
	for _, c := range cases {
		if got := whoami(c.header...); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}

	o.SetRole("u1", "admin")
	if j := gjson.Parse(readAll(t, get(t, url, "Authorization", "Bearer "+jwt))); j.Get("role").String() != "admin" {
		t.Errorf("after SetRole: %s", j.Raw)
	}
	o.Revoke("u1")
	if got := whoami("Authorization", "Bearer "+key); got != DetailSessionExpired {
		t.Errorf("revoked key: %q", got)
	}
	if got := whoami("Authorization", "Bearer "+jwt); got != DetailInvalidToken {
		t.Errorf("revoked JWT: %q", got)
	}
	o.SetOptions(OpenWebUIOptions{AuthStatus: 503})
	if resp := get(t, url, "Authorization", "Bearer "+jwt2); resp.StatusCode != 503 || !gjson.Get(readAll(t, resp), "detail").Exists() {
		t.Errorf("AuthStatus: %d", resp.StatusCode)
	}
	if n := o.Lookups(); n != 2+len(cases)+4 {
		t.Errorf("Lookups = %d", n)
	}
}

func TestOpenWebUIChat(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, key := o.AddUser("u1", "alice@example.com", "Alice", "user")
	_, pendingKey := o.AddUser("u2", "bob@example.com", "Bob", "pending")
	url := o.URL() + "/api/chat/completions"

	// Background mode: answered at once, no provider call.
	resp := post(t, url, `{"model":"m","stream":true,"session_id":"sid","chat_id":"c1","id":"a1",
		"message_ids":[{"model_id":"m","message_id":"a1"},{"model_id":"n","message_id":"a2"}]}`, "Authorization", "Bearer "+jwt)
	j := gjson.Parse(readAll(t, resp))
	if resp.StatusCode != 200 || !j.Get("status").Bool() || len(j.Get("task_ids").Array()) != 2 || j.Get("chat_id").String() != "c1" {
		t.Errorf("background: %d %s", resp.StatusCode, j.Raw)
	}
	if bg := o.Background(); len(bg) != 1 || bg[0].UserID != "u1" || bg[0].ChatID != "c1" || len(bg[0].TaskIDs) != 2 {
		t.Errorf("Background %+v", bg)
	}
	if n := len(p.Requests()); n != 0 {
		t.Errorf("background mode called the provider %d times", n)
	}

	// Synchronous stream with OpenWebUI's extra lines, relayed chunk by chunk.
	r := DefaultReply()
	r.Delay = 50 * time.Millisecond
	p.SetReply(r)
	o.SetOptions(OpenWebUIOptions{ProviderKey: "sk-provider", ForwardUserInfo: true,
		Sources: json.RawMessage(`[{"source":{"name":"doc"}}]`), SelectedModelID: "m"})
	evs := sse(t, post(t, o.URL()+"/api/v1/chat/completions",
		`{"model":"m","stream":true,"stream_options":{"include_usage":true},"chat_id":"c2","params":{},"features":{}}`, "X-Api-Key", key))
	if !gjson.Get(evs[0].data, "sources").IsArray() || gjson.Get(evs[1].data, "selected_model_id").String() != "m" {
		t.Errorf("prelude %q %q", evs[0].data, evs[1].data)
	}
	if evs[len(evs)-1].data != "[DONE]" || gjson.Get(evs[len(evs)-2].data, "usage.total_tokens").Int() != 19 {
		t.Errorf("tail %v", evs[len(evs)-2:])
	}
	// Content chunks are events 2..4; relayed one by one, not buffered.
	if spread := evs[4].at.Sub(evs[2].at); spread < r.Delay {
		t.Errorf("relayed content chunks arrived within %v", spread)
	}
	reqs := p.Requests()
	sent := gjson.ParseBytes(reqs[0].Body)
	if reqs[0].Path != "/v1/chat/completions" || sent.Get("chat_id").Exists() || sent.Get("params").Exists() ||
		!sent.Get("stream_options.include_usage").Bool() || sent.Get("model").String() != "m" {
		t.Errorf("forwarded %s %s", reqs[0].Path, reqs[0].Body)
	}
	h := reqs[0].Header
	if h.Get("Authorization") != "Bearer sk-provider" || h.Get("X-Api-Key") != "" || h.Get("X-OpenWebUI-User-Id") != "u1" ||
		h.Get("X-OpenWebUI-User-Email") != "alice@example.com" || h.Get("X-OpenWebUI-Chat-Id") != "c2" {
		t.Errorf("forwarded headers %v", h)
	}

	// Synchronous JSON; a provider error becomes 400 {"detail": message}
	// (process_chat without an event emitter).
	o.SetOptions(OpenWebUIOptions{})
	j = gjson.Parse(readAll(t, post(t, url, `{"model":"m"}`, "Authorization", "Bearer "+jwt)))
	if j.Get("object").String() != "chat.completion" || j.Get("usage.prompt_tokens").Int() != 12 {
		t.Errorf("sync JSON %s", j.Raw)
	}
	r.Status = 500
	p.SetReply(r)
	resp = post(t, url, `{"model":"m","stream":true}`, "Authorization", "Bearer "+jwt)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 400 || j.Get("detail").String() != "Internal Server Error" {
		t.Errorf("error relay %d %s", resp.StatusCode, j.Raw)
	}
	r.Message = "upstream exploded"
	p.SetReply(r)
	resp = post(t, url, `{"model":"m"}`, "Authorization", "Bearer "+jwt)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 400 || j.Get("detail").String() != "upstream exploded" {
		t.Errorf("error relay %d %s", resp.StatusCode, j.Raw)
	}

	// Authentication.
	for _, c := range []struct {
		header []string
		detail string
	}{
		{nil, DetailNotAuthenticated},
		{[]string{"Authorization", "Bearer bad"}, DetailUnauthorized},
		{[]string{"Authorization", "Bearer " + pendingKey}, DetailAccessProhibited},
	} {
		resp := post(t, url, `{"model":"m"}`, c.header...)
		if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 401 || j.Get("detail").String() != c.detail {
			t.Errorf("%v: %d %s", c.header, resp.StatusCode, j.Raw)
		}
	}
}

func TestOpenWebUIOtherModelRoutes(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "admin")
	auth := []string{"Authorization", "Bearer " + jwt}

	lines := ndjson(t, post(t, o.URL()+"/ollama/api/chat", `{"model":"llama3.2","messages":[]}`, auth...))
	if last := lines[len(lines)-1]; !last.Get("done").Bool() || last.Get("eval_count").Int() != 7 {
		t.Errorf("ollama %s", last.Raw)
	}
	lines = ndjson(t, post(t, o.URL()+"/ollama/api/generate", `{"model":"llama3.2","prompt":"x"}`, auth...))
	if last := lines[len(lines)-1]; last.Get("prompt_eval_count").Int() != 12 {
		t.Errorf("generate %s", last.Raw)
	}

	evs := sse(t, post(t, o.URL()+"/api/v1/messages", `{"model":"claude","max_tokens":5,"stream":true,"messages":[]}`, auth...))
	if evs[0].name != "message_start" || evs[len(evs)-1].name != "message_stop" {
		t.Errorf("messages %v", evs)
	}
	j := gjson.Parse(readAll(t, post(t, o.URL()+"/api/message", `{"model":"claude","max_tokens":5,"messages":[]}`, auth...)))
	if j.Get("usage.output_tokens").Int() != 7 {
		t.Errorf("message JSON %s", j.Raw)
	}

	j = gjson.Parse(readAll(t, post(t, o.URL()+"/api/v1/tasks/title/completions", `{"model":"task","messages":[{"role":"user","content":"hi"}],"chat_id":"c"}`, auth...)))
	if j.Get("object").String() != "chat.completion" || j.Get("usage.total_tokens").Int() != 19 {
		t.Errorf("title %s", j.Raw)
	}

	var paths []string
	for _, r := range p.Requests() {
		paths = append(paths, r.Path)
	}
	if got := strings.Join(paths, " "); got != "/api/chat /api/generate /v1/messages /v1/messages /v1/chat/completions" {
		t.Errorf("provider paths %s", got)
	}
	if title := p.Requests()[4]; gjson.GetBytes(title.Body, "stream").Bool() || gjson.GetBytes(title.Body, "model").String() != "task" {
		t.Errorf("title request %s", title.Body)
	}

	// Catch-all.
	resp := post(t, o.URL()+"/api/v1/chats/new?x=1", `{"chat":{}}`, "X-Forwarded-For", "1.2.3.4")
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 200 || j.Get("path").String() != "/api/v1/chats/new" {
		t.Errorf("catch-all %s", j.Raw)
	}
	get(t, o.URL()+"/api/config")
	pt := o.Passthrough()
	if len(pt) != 2 || pt[0].Method != "POST" || pt[0].Query != "x=1" || string(pt[0].Body) != `{"chat":{}}` ||
		pt[0].Header.Get("X-Forwarded-For") != "1.2.3.4" || pt[1].Path != "/api/config" {
		t.Errorf("Passthrough %+v", pt)
	}
	if n := len(o.Requests()); n != 7 {
		t.Errorf("Requests: %d", n)
	}
}

// Close must not wait forever for a relay stuck on a hanging provider.
func TestCloseWithHangingRelay(t *testing.T) {
	p := NewProvider(nil)
	o := NewOpenWebUI(nil, p)
	jwt, _ := o.AddUser("u", "e", "n", "user")
	r := DefaultReply()
	r.Hang = true
	p.SetReply(r)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, o.URL()+"/api/chat/completions", strings.NewReader(`{"model":"m","stream":true}`))
		req.Header.Set("Authorization", "Bearer "+jwt)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	for len(p.Requests()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { o.Close(); p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
}
