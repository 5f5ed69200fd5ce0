package fakeowui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// Event is one socket.io event the fake sent to a user's sockets: the
// payload of 42["events", <Payload>] (§5).
type Event struct {
	UserID  string
	Payload map[string]any // {"chat_id", "message_id", "data": {"type", "data"}}
}

// Type is the event's data.type, e.g. "chat:completion".
func (e Event) Type() string {
	d, _ := e.Payload["data"].(map[string]any)
	t, _ := d["type"].(string)
	return t
}

// Events returns the socket.io events sent so far, oldest first.
func (o *OpenWebUI) Events() []Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Event(nil), o.events...)
}

// WaitBackground waits until every background chat started so far ended.
func (o *OpenWebUI) WaitBackground() { o.running.Wait() }

// startBackground runs one background task of a chat (main.py
// chat_completion's fan-out, process_chat) the way OpenWebUI 0.11 does
// (§3b, §3c, §5): runChat for the task's message, then, when it was the
// chat's last running task, chat:active false (process_chat's finally).
// POST /api/tasks/chat/{chat_id}/stop cancels it: the user's sockets get
// chat:tasks:cancel and no done event.
func (o *OpenWebUI) startBackground(u fakeUser, t turn, taskID string, req pyBody, opts OpenWebUIOptions, title bool) {
	ctx, cancel := context.WithCancel(o.ctx)
	o.mu.Lock()
	if o.tasks[t.chatID] == nil {
		o.tasks[t.chatID] = map[string]context.CancelFunc{}
	}
	o.tasks[t.chatID][taskID] = cancel
	o.mu.Unlock()
	o.running.Add(1)
	go func() {
		defer o.running.Done()
		defer cancel()
		// Background title generation sees request.state.metadata, the
		// chat's metadata without the per-model message id.
		titleTurn := t
		titleTurn.messageID, titleTurn.task = "", "title_generation"
		o.runChat(ctx, u, t, req, opts, title, titleTurn)
		o.mu.Lock()
		delete(o.tasks[t.chatID], taskID)
		last := len(o.tasks[t.chatID]) == 0
		if last {
			delete(o.tasks, t.chatID)
		}
		o.mu.Unlock()
		if last {
			o.send(u.id, t, "chat:active", map[string]any{"active": false, "folder_id": nil})
		}
	}()
}

// startInitialTitle is main.py chat_completion's run_initial_title_generation
// for a new chat: the title task runs at once, beside the answer, on the
// user message and the empty assistant placeholder.
func (o *OpenWebUI) startInitialTitle(u fakeUser, c chatCall, body pyBody, opts OpenWebUIOptions) {
	var messages []json.RawMessage
	json.Unmarshal(body["messages"], &messages)
	var last []json.RawMessage
	for i := len(messages) - 1; i >= 0; i-- {
		if gjson.GetBytes(messages[i], "role").String() == "user" {
			last = []json.RawMessage{messages[i]}
			break
		}
	}
	last = append(last, mustJSON(map[string]string{"role": "assistant", "content": ""}))
	t := c.t
	t.messageID, t.task = "", "title_generation"
	model := body["model"]
	if len(c.entries) > 0 {
		model = mustJSON(c.entries[0].model)
	}
	o.running.Add(1)
	go func() {
		defer o.running.Done()
		o.generateTitle(o.ctx, u, c.t, t, model, last, opts)
	}()
}

// chatResult is what runChat saw of the provider.
type chatResult struct {
	json []byte // a non-streaming answer's body, nil otherwise
}

// runChat handles one chat answer as OpenWebUI 0.11 does with an event
// emitter (utils/middleware.py process_chat_response):
//
//   - a stream (streaming_chat_response_handler): each content piece as
//     chat:completion {"output"}, each usage report as chat:completion
//     {"usage"} merged over the calls (merge_usage), opts.ToolRounds
//     native tool-calling rounds (each a new streaming provider call with
//     the tool call and its result appended), and at the end
//     chat:completion {"done": true, "output", "title", "usage"};
//   - a JSON answer (non_streaming_chat_response_handler): when it has
//     content, first chat:completion with the provider's response as it is
//     (its usage included), then chat:completion {"done": true, "output",
//     "title"} without usage; an "error" in it as chat:message:error;
//   - a provider error (process_chat's except): chat:message:error and
//     chat:tasks:cancel.
//
// Then, with title, the title task (background_tasks_handler). A
// cancelled ctx sends chat:tasks:cancel and stops.
func (o *OpenWebUI) runChat(ctx context.Context, u fakeUser, t turn, req pyBody, opts OpenWebUIOptions, title bool, titleTurn turn) chatResult {
	send := func(typ string, data any) {
		o.send(u.id, t, typ, data)
	}
	fail := func(msg string) {
		send("chat:message:error", map[string]any{"error": map[string]any{"content": msg}})
		send("chat:tasks:cancel", map[string]any{})
	}
	req = maps.Clone(req)
	var messages []json.RawMessage
	_ = json.Unmarshal(req["messages"], &messages)
	// The chat's history for the title: the tool rounds live in the
	// assistant message's output, not as messages of their own.
	history := append([]json.RawMessage(nil), messages...)
	chatTitle := ""
	if isSavedChatID(t.chatID) {
		chatTitle = "New Chat"
	}

	var content string
	var usage messageUsage
	for round := 0; round <= opts.ToolRounds; round++ {
		if round > 0 {
			// A native tool call and its result, then the model again.
			id := "call_" + randomHex(6)
			messages = append(messages,
				mustJSON(map[string]any{"role": "assistant", "content": "", "tool_calls": []any{map[string]any{
					"id": id, "type": "function", "function": map[string]any{"name": "get_time", "arguments": "{}"}}}}),
				mustJSON(map[string]any{"role": "tool", "tool_call_id": id, "content": "12:00"}))
			req["messages"] = mustJSON(messages)
			req["stream"] = json.RawMessage("true")
			content += "\n"
		}
		prefix := content
		res := o.callProvider(ctx, u, t, opts, encodeBody(req), func(text string, callUsage map[string]int64) {
			if text != "" {
				content = prefix + text
				send("chat:completion", map[string]any{"output": output(content, "in_progress")})
			}
			if callUsage != nil {
				usage.merge(callUsage)
				send("chat:completion", map[string]any{"usage": usage.wire()})
			}
		})
		if ctx.Err() != nil {
			send("chat:tasks:cancel", map[string]any{})
			return chatResult{}
		}
		if res.err != "" {
			fail(res.err)
			return chatResult{}
		}
		if !res.streamed {
			if round > 0 {
				break // a continuation that did not stream ends the loop
			}
			var data map[string]any
			if json.Unmarshal(res.raw, &data) != nil {
				return chatResult{json: res.raw}
			}
			if e, ok := data["error"]; ok && e != nil {
				if m, ok := e.(map[string]any); ok {
					if d, ok := m["detail"]; ok {
						e = d
					}
				}
				send("chat:message:error", map[string]any{"error": map[string]any{"content": e}})
			}
			text := gjson.GetBytes(res.raw, "choices.0.message.content").String()
			if gjson.GetBytes(res.raw, "choices.0").Exists() && text != "" {
				send("chat:completion", data)
				send("chat:completion", map[string]any{"done": true, "output": output(text, "completed"), "title": chatTitle})
				if title {
					o.generateTitle(ctx, u, t, titleTurn, req["model"], append(history, mustJSON(map[string]string{"role": "assistant", "content": text})), opts)
				}
			}
			return chatResult{json: res.raw}
		}
	}
	done := map[string]any{"done": true, "output": output(content, "completed"), "title": chatTitle}
	if usage.calls > 0 {
		done["usage"] = usage.wire()
	}
	send("chat:completion", done)
	if title {
		o.generateTitle(ctx, u, t, titleTurn, req["model"], append(history, mustJSON(map[string]string{"role": "assistant", "content": content})), opts)
	}
	return chatResult{}
}

// generateTitle is background_tasks_handler's title generation
// (routers/tasks.py generate_title, non-streaming): the title is the
// "title" of the JSON object in the answer, else the first message's
// content, sent as chat:title with the title as its data. The call's
// headers come from t (no message id: request.state.metadata).
func (o *OpenWebUI) generateTitle(ctx context.Context, u fakeUser, ev, t turn, model json.RawMessage, messages []json.RawMessage, opts OpenWebUIOptions) {
	if model == nil {
		model = json.RawMessage("null")
	}
	res := o.callProvider(ctx, u, t, opts, titleRequest(model, messages), func(string, map[string]int64) {})
	if res.err != "" || ctx.Err() != nil {
		return
	}
	answer := gjson.GetBytes(res.raw, "choices.0.message.content").String()
	title := ""
	if i, j := strings.Index(answer, "{"), strings.LastIndex(answer, "}"); i >= 0 && j > i {
		title = gjson.Get(answer[i:j+1], "title").String()
	}
	if title == "" && len(messages) > 0 {
		title = str(json.RawMessage(gjson.GetBytes(messages[0], "content").Raw))
	}
	o.send(u.id, ev, "chat:title", title)
}

// isSavedChatID is utils/chat_id.py is_saved_chat_id: temporary
// ("temporary:", "local:") and channel chats are not saved.
func isSavedChatID(id string) bool {
	return id != "" && !strings.HasPrefix(id, "temporary:") && !strings.HasPrefix(id, "local:") && !strings.HasPrefix(id, "channel:")
}

// providerResult is one provider call's outcome.
type providerResult struct {
	streamed bool
	raw      []byte // a non-streaming answer's body
	err      string // the error message, when the call failed
}

// callProvider posts one chat completion. A stream is reported piece by
// piece through seen (the answer's text so far and each usage report); a
// JSON answer comes back in raw. A failed call has err: the message
// process_chat takes from routers/openai.py's error answer (providerError),
// or SERVER_CONNECTION_ERROR when the provider could not be reached.
func (o *OpenWebUI) callProvider(ctx context.Context, u fakeUser, t turn, opts OpenWebUIOptions, body []byte, seen func(text string, usage map[string]int64)) providerResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, opts.OpenAIURL+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return providerResult{err: err.Error()}
	}
	providerHeaders(req.Header, u, t, opts)
	resp, err := o.client.Do(req)
	if err != nil {
		return providerResult{err: "Open WebUI: Server Connection Error"}
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	if resp.StatusCode >= 400 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		msg, ok := providerError(raw, ct)
		if !ok {
			msg = strings.TrimSpace(string(raw))
		}
		return providerResult{err: msg}
	}
	if !strings.HasPrefix(ct, "text/event-stream") {
		raw, _ := io.ReadAll(resp.Body)
		return providerResult{raw: raw}
	}
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		chunk := gjson.Parse(data)
		piece := chunk.Get("choices.0.delta.content").String()
		text.WriteString(piece)
		var usage map[string]int64
		if us := chunk.Get("usage"); us.IsObject() {
			usage = map[string]int64{
				"prompt_tokens":     us.Get("prompt_tokens").Int(),
				"completion_tokens": us.Get("completion_tokens").Int(),
			}
			if c := us.Get("prompt_tokens_details.cached_tokens"); c.Exists() {
				usage["cached_tokens"] = c.Int()
			}
			if r := us.Get("completion_tokens_details.reasoning_tokens"); r.Exists() {
				usage["reasoning_tokens"] = r.Int()
			}
		}
		if piece != "" || usage != nil {
			t := ""
			if piece != "" {
				t = text.String()
			}
			seen(t, usage)
		}
	}
	return providerResult{streamed: true}
}

// messageUsage is a message's usage over its calls as OpenWebUI 0.10+
// reports it (utils/response.py normalize_usage and merge_usage, called
// from utils/middleware.py's response handlers): normalize_usage adds input_tokens,
// output_tokens and total_tokens to each call's report, and merge_usage
// sums those and the *_details maps over the calls but keeps only the
// last call's prompt_tokens and completion_tokens.
type messageUsage struct {
	calls                            int
	prompt, completion               int64 // the last call's
	input, output, cached, reasoning int64 // summed
	hasCached, hasReasoning          bool
}

func (u *messageUsage) merge(call map[string]int64) {
	u.calls++
	u.prompt, u.completion = call["prompt_tokens"], call["completion_tokens"]
	u.input += call["prompt_tokens"]
	u.output += call["completion_tokens"]
	if c, ok := call["cached_tokens"]; ok {
		u.cached, u.hasCached = u.cached+c, true
	}
	if r, ok := call["reasoning_tokens"]; ok {
		u.reasoning, u.hasReasoning = u.reasoning+r, true
	}
}

func (u *messageUsage) wire() map[string]any {
	m := map[string]any{
		"prompt_tokens": u.prompt, "completion_tokens": u.completion,
		"input_tokens": u.input, "output_tokens": u.output, "total_tokens": u.input + u.output,
	}
	if u.hasCached {
		m["prompt_tokens_details"] = map[string]any{"cached_tokens": u.cached}
	}
	if u.hasReasoning {
		m["completion_tokens_details"] = map[string]any{"reasoning_tokens": u.reasoning}
	}
	return m
}

// output is the message's output items, OpenResponses style, as
// utils/middleware.py's streaming_chat_response_handler emits them (0.10+).
func output(text, status string) []any {
	return []any{map[string]any{
		"type": "message", "role": "assistant", "status": status,
		"content": []any{map[string]any{"type": "output_text", "text": text}},
	}}
}

// send records an event and emits it to the user's sockets
// (socket/main.py get_event_emitter). A channel chat ("channel:<id>") has
// the channel emitter instead, which updates the channel's messages: the
// fake neither sends nor records those.
func (o *OpenWebUI) send(userID string, t turn, typ string, data any) {
	if strings.HasPrefix(t.chatID, "channel:") {
		return
	}
	ev := Event{UserID: userID, Payload: map[string]any{
		"chat_id": t.chatID, "message_id": t.messageID,
		"data": map[string]any{"type": typ, "data": data},
	}}
	// Freeze the payload: later merges must not change what was sent.
	var frozen map[string]any
	_ = json.Unmarshal(mustJSON(ev.Payload), &frozen)
	ev.Payload = frozen
	o.mu.Lock()
	o.events = append(o.events, ev)
	o.mu.Unlock()
	o.emit(userID, ev.Payload)
}

// stopPath is POST /api/tasks/chat/{chat_id:path}/stop: the chat id may
// hold slashes, as Starlette's :path converter allows.
//
// stop is that route (main.py
// stop_tasks_by_chat_id_endpoint): a chat that is not the caller's (an
// admin may stop any) is 404; otherwise its tasks are cancelled and the
// answer is tasks.py stop_item_tasks': {"status": true, "message": …},
// tasks or none.
func (o *OpenWebUI) stopPath(w http.ResponseWriter, r *http.Request, u fakeUser) {
	chatID, ok := strings.CutSuffix(r.PathValue("chat_id"), "/stop")
	if !ok || chatID == "" {
		detail(w, http.StatusNotFound, "Not Found")
		return
	}
	o.stop(w, chatID, u)
}

func (o *OpenWebUI) stop(w http.ResponseWriter, chatID string, u fakeUser) {
	o.mu.Lock()
	owner := ""
	for _, b := range o.background {
		if b.ChatID == chatID {
			owner = b.UserID
		}
	}
	tasks := o.tasks[chatID]
	cancels := make([]context.CancelFunc, 0, len(tasks))
	for _, c := range tasks {
		cancels = append(cancels, c)
	}
	if owner == "" || (owner != u.id && u.role != "admin") {
		o.mu.Unlock()
		detail(w, http.StatusNotFound, "We could not find what you're looking for :/")
		return
	}
	o.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	msg := "No tasks found for item " + chatID + "."
	if len(cancels) > 0 {
		msg = "All tasks for item " + chatID + " stopped."
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": true, "message": msg})
}
