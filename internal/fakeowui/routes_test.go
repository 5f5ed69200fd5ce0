package fakeowui

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

func postMultipart(t *testing.T, url, field, name string, data []byte, header ...string) *http.Response {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, _ := mw.CreateFormFile(field, name)
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, url, &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The model-spending routes: authenticated like OpenWebUI, answered 200
// JSON, and the ones that call a model call the provider.
func TestSpendingRoutes(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, key := o.AddUser("u1", "alice@example.com", "Alice", "user")
	_, pending := o.AddUser("u2", "bob@example.com", "Bob", "pending")
	o.SetModels([]Model{{ID: "gpt-4o"}})
	o.SetOptions(OpenWebUIOptions{ForwardUserInfo: true, ProviderKey: "sk-conn",
		ConnectionHeaders: map[string]string{"X-Task": "{{TASK}}", "X-Msg": "{{MESSAGE_ID}}"}})
	auth := []string{"Authorization", "Bearer " + jwt}

	routes := []struct {
		path, body string
		calls      int // provider calls it makes
	}{
		{"/api/v1/chats/c1/compact", ``, 1},
		{"/api/v1/automations/auto1/run", ``, 1},
		{"/api/v1/channels/ch1/messages/post", `{"content":"hey <@M:gpt-4o|GPT-4o> and <@U:u2|Bob>, <@M:gpt-4o>"}`, 1},
		{"/api/v1/channels/ch1/messages/post", `{"content":"no model here"}`, 0},
		{"/api/chat/actions/act1", `{"model":"gpt-4o","messages":[],"chat_id":"c1","id":"a1"}`, 0},
		{"/api/v1/retrieval/process/web/search", `{"queries":["q"]}`, 0},
		{"/api/v1/retrieval/process/file", `{"file_id":"f1"}`, 0},
		{"/api/v1/knowledge/k1/file/add", `{"file_id":"f1"}`, 0},
		{"/api/v1/memories/add", `{"content":"likes tea"}`, 1},
		{"/api/v1/memories/query", `{"content":"tea?"}`, 1},
		{"/openai/audio/translations", `{}`, 1},
	}
	for _, r := range routes {
		// Unauthenticated and pending callers are refused first.
		for _, h := range [][]string{nil, {"Authorization", "Bearer " + pending}} {
			resp := post(t, o.URL()+r.path, r.body, h...)
			if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 401 || !j.Get("detail").Exists() {
				t.Errorf("%s %v: %d %s", r.path, h, resp.StatusCode, j.Raw)
			}
		}
		n := len(p.Requests())
		resp := post(t, o.URL()+r.path, r.body, auth...)
		body := readAll(t, resp)
		o.WaitBackground()
		if resp.StatusCode != 200 || !gjson.Valid(body) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s", r.path, resp.StatusCode, body)
		}
		if got := len(p.Requests()) - n; got != r.calls {
			t.Errorf("%s: %d provider calls, want %d", r.path, got, r.calls)
		}
	}
	// An API key works there as well.
	if resp := post(t, o.URL()+"/api/v1/chats/c1/compact", ``, "X-Api-Key", key); resp.StatusCode != 200 {
		t.Errorf("API key: %d", resp.StatusCode)
	}

	// The file upload is multipart with a required "file".
	resp := postMultipart(t, o.URL()+"/api/v1/files/", "file", "doc.txt", []byte("hello"), auth...)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 200 || j.Get("filename").String() != "doc.txt" || j.Get("meta.size").Int() != 5 {
		t.Errorf("upload %d %s", resp.StatusCode, j.Raw)
	}
	if resp := postMultipart(t, o.URL()+"/api/v1/files/", "other", "doc.txt", []byte("x"), auth...); resp.StatusCode != 422 {
		t.Errorf("upload without file: %d", resp.StatusCode)
	}
	if resp := postMultipart(t, o.URL()+"/api/v1/files/", "file", "doc.txt", []byte("x")); resp.StatusCode != 401 {
		t.Errorf("upload without credential: %d", resp.StatusCode)
	}

	// What the model calls looked like.
	reqs := p.Requests()
	byPath := map[string][]Request{}
	for _, r := range reqs {
		byPath[r.Path] = append(byPath[r.Path], r)
	}
	chats := byPath["/v1/chat/completions"]
	if len(chats) != 4 { // compact, automation, channel, compact with the key
		t.Fatalf("%d chat calls", len(chats))
	}
	compact := chats[0]
	if gjson.GetBytes(compact.Body, "stream").Bool() || !strings.HasPrefix(gjson.GetBytes(compact.Body, "messages.0.content").String(), "### Task:\nSummarize the conversation history that will be compacted") ||
		compact.Header.Get("X-Openwebui-Chat-Id") != "" || compact.Header.Get("X-Task") != "context_compaction" || compact.Header.Get("X-Openwebui-User-Id") != "u1" {
		t.Errorf("compact call %v %s", compact.Header, compact.Body)
	}
	bg := o.Background()
	if len(bg) != 2 || bg[0].SessionID != "automation:auto1" || bg[1].SessionID != "channel:ch1" || bg[1].ChatID != "channel:ch1" {
		t.Fatalf("Background %+v", bg)
	}
	auto, channel := chats[1], chats[2]
	if !gjson.GetBytes(auto.Body, "stream").Bool() || auto.Header.Get("X-Openwebui-Chat-Id") != bg[0].ChatID || !uuidRE.MatchString(bg[0].ChatID) ||
		auto.Header.Get("X-Msg") != bg[0].MessageIDs[0] || gjson.GetBytes(auto.Body, "model").String() != "gpt-4o" {
		t.Errorf("automation call %v %s", auto.Header, auto.Body)
	}
	if !gjson.GetBytes(channel.Body, "stream").Bool() || channel.Header.Get("X-Openwebui-Chat-Id") != "channel:ch1" ||
		gjson.GetBytes(channel.Body, "messages.1.content").String() != "Alice: hey GPT-4o and Bob, gpt-4o" {
		t.Errorf("channel call %v %s", channel.Header, channel.Body)
	}
	for _, e := range o.Events() {
		if e.Payload["chat_id"] == "channel:ch1" {
			t.Errorf("channel event sent to the user's sockets: %v", e.Payload)
		}
	}
	emb := byPath["/v1/embeddings"]
	if len(emb) != 2 || gjson.GetBytes(emb[0].Body, "input.0").String() != "likes tea" || emb[0].Header.Get("Authorization") != "Bearer sk-conn" ||
		emb[0].Header.Get("X-Openwebui-User-Id") != "u1" || emb[0].Header.Get("X-Task") != "" {
		t.Errorf("embedding calls %+v", emb)
	}
	if tr := byPath["/v1/audio/translations"]; len(tr) != 1 || tr[0].Header.Get("Authorization") != "Bearer sk-conn" {
		t.Errorf("passthrough %+v", tr)
	}

	// Compaction waits for a running answer; a memory query without
	// memories is 404 without an embedding call.
	r := DefaultReply()
	r.Hang = true
	p.SetReply(r)
	o.SetOptions(OpenWebUIOptions{RunBackground: true})
	hanging := len(p.Requests())
	readAll(t, post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true,"session_id":"s","chat_id":"busy","id":"a1"}`, auth...))
	// Release lets go only calls already hanging: wait for this one to arrive.
	for deadline := time.Now().Add(5 * time.Second); len(p.Requests()) == hanging; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the background chat never called the provider")
		}
	}
	if resp := post(t, o.URL()+"/api/v1/chats/busy/compact", `{"model":"m"}`, auth...); resp.StatusCode != 409 {
		t.Errorf("compact while busy: %d", resp.StatusCode)
	}
	p.Release()
	o.WaitBackground()
	_, other := o.AddUser("u3", "carol@example.com", "Carol", "user")
	n := len(p.Requests())
	if resp := post(t, o.URL()+"/api/v1/memories/query", `{"content":"x"}`, "Authorization", "Bearer "+other); resp.StatusCode != 404 || len(p.Requests()) != n {
		t.Errorf("query without memories: %d", resp.StatusCode)
	}
}
