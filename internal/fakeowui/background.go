package fakeowui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// turn names the chat turn a provider call belongs to.
type turn struct {
	chatID, messageID string
}

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

// providerHeaders sets what OpenWebUI sends a provider: the connection's
// key and, with ENABLE_FORWARD_USER_INFO_HEADERS, who the call is for
// (utils/headers.py, §9).
func providerHeaders(h http.Header, u fakeUser, t turn, opts OpenWebUIOptions) {
	h.Set("Content-Type", "application/json")
	if opts.ProviderKey != "" {
		h.Set("Authorization", "Bearer "+opts.ProviderKey)
	}
	if !opts.ForwardUserInfo {
		return
	}
	if opts.ForwardUserJWTSecret != "" {
		now := time.Now().Unix()
		h.Set("X-OpenWebUI-User-Jwt", SignJWT(opts.ForwardUserJWTSecret, map[string]any{
			"sub": u.id, "email": u.email, "name": u.name, "role": u.role,
			"iss": "open-webui", "iat": now, "exp": now + 300,
		}))
	} else {
		h.Set("X-OpenWebUI-User-Id", u.id)
		h.Set("X-OpenWebUI-User-Email", u.email)
		h.Set("X-OpenWebUI-User-Name", u.name)
		h.Set("X-OpenWebUI-User-Role", u.role)
	}
	if t.chatID != "" {
		h.Set("X-OpenWebUI-Chat-Id", t.chatID)
	}
	if t.messageID != "" {
		h.Set("X-OpenWebUI-Message-Id", t.messageID)
	}
}

// startBackground runs a background-mode chat the way OpenWebUI 0.10+
// does (§3b, §3c, §5): chat:active, then the provider call (plus
// opts.ToolRounds tool-calling rounds for the same message), each content
// piece as chat:completion {"output"}, usage as chat:completion {"usage"}
// summed over the calls (merge_usage), and at the end chat:completion
// {"done": true, "output", "title", "usage"}; then, with TitleGeneration,
// the title task. POST /api/tasks/chat/{chat_id}/stop cancels it: the
// user's sockets get chat:tasks:cancel and no done event.
func (o *OpenWebUI) startBackground(u fakeUser, chatID, messageID string, body map[string]json.RawMessage, opts OpenWebUIOptions) {
	ctx, cancel := context.WithCancel(o.ctx)
	o.mu.Lock()
	o.tasks[chatID] = cancel
	o.mu.Unlock()
	o.running.Add(1)
	go func() {
		defer o.running.Done()
		defer cancel()
		o.runBackground(ctx, u, turn{chatID, messageID}, body, opts)
		o.mu.Lock()
		delete(o.tasks, chatID)
		o.mu.Unlock()
	}()
}

func (o *OpenWebUI) runBackground(ctx context.Context, u fakeUser, t turn, body map[string]json.RawMessage, opts OpenWebUIOptions) {
	send := func(typ string, data map[string]any) {
		o.send(u.id, t, typ, data)
	}
	send("chat:active", map[string]any{"active": true})
	defer send("chat:active", map[string]any{"active": false})

	req := map[string]json.RawMessage{"model": body["model"], "messages": body["messages"], "stream": json.RawMessage("true")}
	if s, ok := body["stream"]; ok {
		req["stream"] = s
	}
	if so, ok := body["stream_options"]; ok {
		req["stream_options"] = so
	}
	var messages []json.RawMessage
	_ = json.Unmarshal(body["messages"], &messages)

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
			content += "\n"
		}
		prefix := content
		ok := o.callProvider(ctx, u, t, opts, mustJSON(req), func(text string, callUsage map[string]int64) {
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
			return
		}
		if !ok {
			return
		}
	}
	title := "New Chat"
	done := map[string]any{"done": true, "output": output(content, "completed"), "title": title}
	if usage.calls > 0 {
		done["usage"] = usage.wire()
	}
	send("chat:completion", done)

	if opts.TitleGeneration {
		prompt := "### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n### Chat History:\n" + content
		treq := mustJSON(map[string]any{
			"model":    json.RawMessage(body["model"]),
			"messages": []any{map[string]string{"role": "user", "content": prompt}},
			"stream":   false,
		})
		o.callProvider(ctx, u, t, opts, treq, func(text string, _ map[string]int64) {
			if text != "" {
				send("chat:title", map[string]any{"title": text})
			}
		})
	}
}

// callProvider posts one chat completion and reports the answer's text so
// far and each usage report as they arrive; false when the call failed
// (the user's sockets got chat:message:error).
func (o *OpenWebUI) callProvider(ctx context.Context, u fakeUser, t turn, opts OpenWebUIOptions, body []byte, seen func(text string, usage map[string]int64)) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, opts.OpenAIURL+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return false
	}
	providerHeaders(req.Header, u, t, opts)
	resp, err := o.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			o.send(u.id, t, "chat:message:error", map[string]any{"error": map[string]any{"content": "Open WebUI: Server Connection Error"}})
		}
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		msg := gjson.GetBytes(raw, "error.message").String()
		if msg == "" {
			msg = strings.TrimSpace(string(raw))
		}
		o.send(u.id, t, "chat:message:error", map[string]any{"error": map[string]any{"content": msg}})
		return false
	}
	var text strings.Builder
	report := func(chunk gjson.Result) {
		piece := chunk.Get("choices.0.delta.content").String() + chunk.Get("choices.0.message.content").String()
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
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, _ := io.ReadAll(resp.Body)
		report(gjson.ParseBytes(raw))
		return ctx.Err() == nil
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		report(gjson.Parse(data))
	}
	return ctx.Err() == nil
}

// messageUsage is a message's usage over its calls as OpenWebUI 0.10+
// reports it (utils/response.py): normalize_usage adds input_tokens,
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

// output is the message's output items, OpenResponses style (0.10+).
func output(text, status string) []any {
	return []any{map[string]any{
		"type": "message", "role": "assistant", "status": status,
		"content": []any{map[string]any{"type": "output_text", "text": text}},
	}}
}

// send records an event and emits it to the user's sockets.
func (o *OpenWebUI) send(userID string, t turn, typ string, data map[string]any) {
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

// stop is POST /api/tasks/chat/{chat_id}/stop: it cancels the chat's task.
func (o *OpenWebUI) stop(w http.ResponseWriter, r *http.Request, u fakeUser) {
	o.mu.Lock()
	cancel, ok := o.tasks[r.PathValue("chat_id")]
	o.mu.Unlock()
	if ok {
		cancel()
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": ok})
}
