package fakeowui

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// eventData returns an event's data.data as parsed JSON.
func eventData(e Event) gjson.Result {
	return gjson.Parse(string(mustJSON(e.Payload))).Get("data.data")
}

// A new chat from the web UI (Chat.svelte: no chat_id, parent_id null,
// session_id) gets its chat id from the server, which runs it in the
// background and answers the id (main.py chat_completion).
func TestNewChatCreatedByServer(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "user")
	o.SetOptions(OpenWebUIOptions{RunBackground: true, TitleGeneration: true, ForwardUserInfo: true})
	resp := post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},
		"messages":[{"role":"user","content":"hi"}],"session_id":"sid","id":"a1","parent_id":null,
		"user_message":{"id":"q1","parentId":null,"role":"user","content":"hi"},
		"background_tasks":{"title_generation":true,"tags_generation":true,"follow_up_generation":true}}`, "Authorization", "Bearer "+jwt)
	j := gjson.Parse(readAll(t, resp))
	chatID := j.Get("chat_id").String()
	if resp.StatusCode != 200 || !j.Get("status").Bool() || len(j.Get("task_ids").Array()) != 1 || !uuidRE.MatchString(chatID) {
		t.Fatalf("%d %s", resp.StatusCode, j.Raw)
	}
	bg := o.Background()
	if len(bg) != 1 || bg[0].ChatID != chatID || !bg[0].NewChat || bg[0].Sync || bg[0].SessionID != "sid" ||
		strings.Join(bg[0].MessageIDs, ",") != "a1" || bg[0].TaskIDs[0] != j.Get("task_ids.0").String() {
		t.Errorf("Background %+v", bg)
	}
	o.WaitBackground()

	// The answer, and the title generated at once from the user message
	// (run_initial_title_generation), both for the new chat.
	reqs := p.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d provider calls", len(reqs))
	}
	var chat, title Request
	for _, r := range reqs {
		if gjson.GetBytes(r.Body, "stream").Bool() {
			chat = r
		} else {
			title = r
		}
		if r.Header.Get("X-Openwebui-Chat-Id") != chatID {
			t.Errorf("call without the new chat id: %v", r.Header)
		}
	}
	if gjson.GetBytes(chat.Body, "parent_id").Exists() || gjson.GetBytes(chat.Body, "session_id").Exists() || gjson.GetBytes(chat.Body, "messages.0.content").String() != "hi" {
		t.Errorf("chat call %s", chat.Body)
	}
	if prompt := gjson.GetBytes(title.Body, "messages.0.content").String(); !strings.HasPrefix(prompt, "### Task:\nGenerate a concise title summarizing the chat history.") ||
		!strings.Contains(prompt, "USER: hi\nASSISTANT: \n") || strings.Contains(prompt, "3-5 word") {
		t.Errorf("title prompt %q", prompt)
	}

	evs := o.Events()
	types := map[string]int{}
	for _, e := range evs {
		types[e.Type()]++
		if e.Payload["chat_id"] != chatID || e.Payload["message_id"] != "a1" {
			t.Errorf("event %v", e.Payload)
		}
	}
	if evs[0].Type() != "chat:active" || !eventData(evs[0]).Get("active").Bool() || types["chat:active"] != 2 || types["chat:title"] != 1 {
		t.Errorf("events %v", types)
	}
	done := false
	for _, e := range evs {
		if d := eventData(e); d.Get("done").Bool() {
			done = d.Get("usage.total_tokens").Int() == 19 && d.Get("title").String() == "New Chat"
		}
	}
	if !done {
		t.Errorf("no done event with usage")
	}

	// An empty chat_id is no chat id: a new chat too. A parent_id that is
	// set is a follow-up: without a chat id there is no background task.
	readAll(t, post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true,"session_id":"sid","id":"a2","parent_id":null,"chat_id":""}`, "Authorization", "Bearer "+jwt))
	if bg := o.Background(); len(bg) != 2 || !bg[1].NewChat || !uuidRE.MatchString(bg[1].ChatID) || len(bg[1].TaskIDs) != 1 {
		t.Errorf("empty chat_id: %+v", bg)
	}
	o.WaitBackground()
	evs2 := sse(t, post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true,"session_id":"sid","id":"a3","parent_id":"q0"}`, "Authorization", "Bearer "+jwt))
	if evs2[len(evs2)-1].data != "[DONE]" || len(o.Background()) != 2 {
		t.Errorf("follow-up without chat id: %v %+v", evs2, o.Background())
	}
}

// Several models answer at once: one task per message_ids entry with a
// message id, each calling its own model; chat:active false once the
// last one ends; title generation from the first only.
func TestFanOutOneTaskPerModel(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "user")
	o.SetOptions(OpenWebUIOptions{RunBackground: true, TitleGeneration: true})
	resp := post(t, o.URL()+"/api/chat/completions", `{"model":"m1","stream":true,"session_id":"s","chat_id":"c1","id":"ignored",
		"message_ids":[{"model_id":"m1","message_id":"a1"},{"model_id":"m2","message_id":"a2"},{"model_id":"m3","message_id":""}],
		"messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer "+jwt)
	j := gjson.Parse(readAll(t, resp))
	if len(j.Get("task_ids").Array()) != 2 || j.Get("chat_id").String() != "c1" {
		t.Fatalf("%s", j.Raw)
	}
	o.WaitBackground()
	models := map[string]int{}
	for _, r := range p.Requests() {
		models[gjson.GetBytes(r.Body, "model").String()]++
	}
	if models["m1"] != 2 || models["m2"] != 1 || len(models) != 2 {
		t.Errorf("provider calls by model %v (m1 twice: its answer and the title)", models)
	}
	active := []bool{}
	dones := map[string]bool{}
	for _, e := range o.Events() {
		if e.Type() == "chat:active" {
			active = append(active, eventData(e).Get("active").Bool())
		}
		if eventData(e).Get("done").Bool() {
			dones[e.Payload["message_id"].(string)] = true
		}
	}
	// Each task that ends with no other running says false; two ending
	// together may both say it (as in OpenWebUI, whose tasks race the same way).
	if len(active) < 2 || !active[0] || slices.Contains(active[1:], true) || !dones["a1"] || !dones["a2"] {
		t.Errorf("chat:active %v, done %v", active, dones)
	}

	// Without message ids there is no task at all (entries without one are
	// skipped), and nothing runs.
	j = gjson.Parse(readAll(t, post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true,"session_id":"s","chat_id":"c2"}`, "Authorization", "Bearer "+jwt)))
	if !j.Get("task_ids").IsArray() || len(j.Get("task_ids").Array()) != 0 {
		t.Errorf("no message id: %s", j.Raw)
	}
}

// Without session_id but with a chat id and a message id, process_chat
// has an event emitter: a stream is consumed in the server and answered
// null; a JSON answer is emitted and returned; errors go to the sockets.
func TestSyncChatWithEventEmitter(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "user")
	o.SetOptions(OpenWebUIOptions{ForwardUserInfo: true})
	url := o.URL() + "/api/chat/completions"
	auth := []string{"Authorization", "Bearer " + jwt}

	resp := post(t, url, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"chat_id":"c5","id":"a5","messages":[{"role":"user","content":"hi"}]}`, auth...)
	if body := readAll(t, resp); resp.StatusCode != 200 || body != "null" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("stream: %d %q", resp.StatusCode, body)
	}
	var types []string
	for _, e := range o.Events() {
		types = append(types, e.Type())
		if e.Payload["chat_id"] != "c5" || e.Payload["message_id"] != "a5" {
			t.Errorf("event %v", e.Payload)
		}
	}
	last := o.Events()[len(o.Events())-1]
	if strings.Contains(strings.Join(types, " "), "chat:active") || eventData(last).Get("usage.total_tokens").Int() != 19 || !eventData(last).Get("done").Bool() {
		t.Errorf("events %v, last %v", types, last.Payload)
	}
	if bg := o.Background(); len(bg) != 1 || !bg[0].Sync || bg[0].NewChat || bg[0].ChatID != "c5" || len(bg[0].TaskIDs) != 0 {
		t.Errorf("Background %+v", bg)
	}

	// A JSON answer: the provider's response, emitted as it is first.
	n := len(o.Events())
	j := gjson.Parse(readAll(t, post(t, url, `{"model":"m","stream":false,"stream_options":{"include_usage":true},"chat_id":"c6","id":"a6"}`, auth...)))
	if j.Get("object").String() != "chat.completion" || j.Get("usage.prompt_tokens").Int() != 12 {
		t.Errorf("JSON answer %s", j.Raw)
	}
	if sent := p.Requests()[1]; gjson.GetBytes(sent.Body, "stream_options").Exists() {
		t.Errorf("stream_options kept on a non-streaming call: %s", sent.Body)
	}
	evs := o.Events()[n:]
	if len(evs) != 2 || eventData(evs[0]).Get("usage.prompt_tokens").Int() != 12 || !eventData(evs[0]).Get("choices").IsArray() ||
		!eventData(evs[1]).Get("done").Bool() || eventData(evs[1]).Get("usage").Exists() {
		t.Errorf("JSON answer events %v", evs)
	}

	// parent_id null and no chat id: the server makes one, so the call has
	// an emitter too.
	resp = post(t, url, `{"model":"m","stream":true,"id":"a7","parent_id":null}`, auth...)
	if body := readAll(t, resp); body != "null" {
		t.Errorf("new chat without session: %q", body)
	}
	bg := o.Background()
	if b := bg[len(bg)-1]; !b.NewChat || !b.Sync || !uuidRE.MatchString(b.ChatID) ||
		p.Requests()[2].Header.Get("X-Openwebui-Chat-Id") != b.ChatID {
		t.Errorf("new chat %+v, header %q", b, p.Requests()[2].Header.Get("X-Openwebui-Chat-Id"))
	}
	// Without a message id it is relayed, with the new chat's id.
	evs2 := sse(t, post(t, url, `{"model":"m","stream":true,"parent_id":null}`, auth...))
	bg = o.Background()
	if evs2[len(evs2)-1].data != "[DONE]" || !bg[len(bg)-1].NewChat || p.Requests()[3].Header.Get("X-Openwebui-Chat-Id") != bg[len(bg)-1].ChatID {
		t.Errorf("relayed new chat %+v", bg[len(bg)-1])
	}

	// A provider error: null over HTTP, the error to the sockets.
	r := DefaultReply()
	r.Status, r.Message = 429, "slow down"
	p.SetReply(r)
	n = len(o.Events())
	if body := readAll(t, post(t, url, `{"model":"m","stream":true,"chat_id":"c8","id":"a8"}`, auth...)); body != "null" {
		t.Errorf("error answer %q", body)
	}
	evs = o.Events()[n:]
	if len(evs) != 2 || evs[0].Type() != "chat:message:error" || eventData(evs[0]).Get("error.content").String() != "slow down" || evs[1].Type() != "chat:tasks:cancel" {
		t.Errorf("error events %v", evs)
	}
}

// A background chat whose provider answers JSON: the provider's response
// first (with usage), then done without usage (utils/middleware.py
// non_streaming_chat_response_handler).
func TestBackgroundNonStreaming(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "user")
	o.SetOptions(OpenWebUIOptions{RunBackground: true, ToolRounds: 2})
	readAll(t, post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":false,"session_id":"s","chat_id":"c1","id":"a1"}`, "Authorization", "Bearer "+jwt))
	o.WaitBackground()
	var types []string
	var evs []gjson.Result
	for _, e := range o.Events() {
		types = append(types, e.Type())
		evs = append(evs, eventData(e))
	}
	if strings.Join(types, " ") != "chat:active chat:completion chat:completion chat:active" {
		t.Fatalf("events %v", types)
	}
	if evs[1].Get("usage.total_tokens").Int() != 19 || evs[1].Get("choices.0.message.content").String() != DefaultReply().Text || evs[1].Get("done").Exists() {
		t.Errorf("first event %s", evs[1].Raw)
	}
	if !evs[2].Get("done").Bool() || evs[2].Get("usage").Exists() || evs[2].Get("output.0.content.0.text").String() != DefaultReply().Text {
		t.Errorf("done event %s", evs[2].Raw)
	}
	if n := len(p.Requests()); n != 1 {
		t.Errorf("%d provider calls: a JSON answer has no tool rounds", n)
	}
}
