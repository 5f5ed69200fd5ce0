package openwebui

import (
	"bytes"
	"strings"

	"github.com/openwebui-monitor/owmon/internal/tokens"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// ModelRequest is what metering needs from a model-call request body.
type ModelRequest struct {
	Model        string
	Stream       bool
	IncludeUsage bool // the client asked for stream_options.include_usage

	// OpenWebUI web UI fields: top-level chat_id, id and session_id.
	ChatID, MessageID, SessionID string
	// NewChat: "parent_id" is null and there is no chat id, so OpenWebUI
	// creates a chat for the call (main.py chat_completion, is_new_chat).
	NewChat bool

	Messages gjson.Result // "messages": chat, Anthropic, Ollama chat
	// Prompt is "prompt" (completions, Ollama generate) or "input" when it is
	// a string (embeddings, Responses, speech).
	Prompt string
	// MaxOutputTokens is the most output the call asks for (max_tokens,
	// max_completion_tokens, max_output_tokens, Ollama's
	// options.num_predict; the largest when several are set); 0: unset.
	MaxOutputTokens int64
	// System is the prompt outside Messages: Anthropic's and Ollama's
	// "system", the Responses API's "instructions".
	System string

	list        gjson.Result // "prompt" or "input" when it is a list
	userMessage gjson.Result // OpenWebUI's user_message: the new turn
}

// outputLimit reads an output-token limit; anything but a positive number
// (Ollama's -1 and -2 mean "no limit") is no limit. The upstream judges the
// field; a hold only needs a bound when there is one.
func outputLimit(v gjson.Result) int64 {
	if v.Type != gjson.Number || v.Num < 1 {
		return 0
	}
	return int64(min(v.Num, 1e15))
}

// fallbackCounter serves callers that pass a nil *tokens.Counter.
var fallbackCounter = tokens.New()

// InspectRequest reads a model-call body. Like OpenWebUI's Python parser, the
// last of duplicate keys wins. A missing model is allowed.
func InspectRequest(route RouteKind, body []byte) (ModelRequest, error) {
	var r ModelRequest
	root, err := parseObject(body)
	if err != nil {
		return r, err
	}
	var model, stream, opts, chatID, id, sessionID, parentID, messages, prompt, input, system, instructions gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "max_tokens", "max_completion_tokens", "max_output_tokens":
			r.MaxOutputTokens = max(r.MaxOutputTokens, outputLimit(v))
		case "options":
			if v.IsObject() {
				r.MaxOutputTokens = max(r.MaxOutputTokens, outputLimit(lastMember(v, "num_predict")))
			}
		case "model":
			model = v
		case "stream":
			stream = v
		case "stream_options":
			opts = v
		case "chat_id":
			chatID = v
		case "id":
			id = v
		case "session_id":
			sessionID = v
		case "parent_id":
			parentID = v
		case "messages":
			messages = v
		case "prompt":
			prompt = v
		case "input":
			input = v
		case "system":
			system = v
		case "instructions":
			instructions = v
		case "user_message":
			r.userMessage = v
		}
		return true
	})
	if r.Model, err = optString(model, "model"); err != nil {
		return r, err
	}
	if r.ChatID, err = optString(chatID, "chat_id"); err != nil {
		return r, err
	}
	if r.MessageID, err = optString(id, "id"); err != nil {
		return r, err
	}
	if r.SessionID, err = optString(sessionID, "session_id"); err != nil {
		return r, err
	}
	r.NewChat = parentID.Exists() && parentID.Type == gjson.Null && r.ChatID == ""
	switch {
	case isNull(stream):
		r.Stream = route == RouteOllama // Ollama streams unless told otherwise
	case stream.Type == gjson.True, stream.Type == gjson.False:
		r.Stream = stream.Type == gjson.True
	default:
		return r, fieldErr("stream", "must be a boolean, got %s", kind(stream))
	}
	if !isNull(opts) {
		if !opts.IsObject() {
			return r, fieldErr("stream_options", "must be an object, got %s", kind(opts))
		}
		switch iu := lastMember(opts, "include_usage"); {
		case iu.Type == gjson.True:
			r.IncludeUsage = true
		case isNull(iu), iu.Type == gjson.False:
		default:
			return r, fieldErr("stream_options.include_usage", "must be a boolean, got %s", kind(iu))
		}
	}
	if !isNull(messages) {
		if !messages.IsArray() {
			return r, fieldErr("messages", "must be a list, got %s", kind(messages))
		}
		r.Messages = messages
	}
	for _, f := range [...]struct {
		v    gjson.Result
		name string
	}{{prompt, "prompt"}, {input, "input"}} {
		switch {
		case isNull(f.v):
		case f.v.Type == gjson.String:
			if r.Prompt == "" {
				r.Prompt = f.v.Str
			}
		case f.v.IsArray():
			if !r.list.Exists() {
				r.list = f.v
			}
		default:
			return r, fieldErr(f.name, "must be a string or a list, got %s", kind(f.v))
		}
	}
	switch route {
	case RouteAnthropic, RouteOllama:
		if r.System, err = systemText(system, "system", route == RouteAnthropic); err != nil {
			return r, err
		}
	case RouteResponses:
		if r.System, err = systemText(instructions, "instructions", false); err != nil {
			return r, err
		}
	}
	return r, nil
}

// PromptTokens estimates the prompt of r: its messages, system prompt and
// prompt or input texts. For OpenWebUI's web UI, whose saved chats send only
// the new turn in user_message, that turn is added unless the messages
// already end with it.
func (r ModelRequest) PromptTokens(c *tokens.Counter) int64 {
	if c == nil {
		c = fallbackCounter
	}
	var n int64
	if r.Messages.IsArray() {
		n += c.Messages(r.Model, r.Messages)
	}
	n += c.Text(r.Model, r.System)
	n += c.Text(r.Model, r.Prompt)
	r.list.ForEach(func(_, v gjson.Result) bool {
		n += listItemTokens(c, r.Model, v)
		return true
	})
	if r.userMessage.IsObject() && !endsWithUser(r.Messages) {
		n += c.Text(r.Model, ContentText(r.userMessage))
	}
	return n
}

// listItemTokens counts one element of a "prompt" or "input" list: a text, a
// token id, a list of token ids, or a Responses API input item.
func listItemTokens(c *tokens.Counter, model string, v gjson.Result) int64 {
	switch {
	case v.Type == gjson.String:
		return c.Text(model, v.Str)
	case v.Type == gjson.Number:
		return 1
	case v.IsArray():
		var n int64
		v.ForEach(func(_, t gjson.Result) bool {
			if t.Type == gjson.String {
				n += c.Text(model, t.Str)
			} else if t.Type == gjson.Number {
				n++
			}
			return true
		})
		return n
	case v.IsObject():
		var n int64
		v.ForEach(func(k, f gjson.Result) bool {
			switch k.Str {
			case "content":
				if f.Type == gjson.String {
					n += c.Text(model, f.Str)
				} else {
					f.ForEach(func(_, part gjson.Result) bool {
						n += c.Text(model, part.Get("text").String())
						return true
					})
				}
			case "text", "output", "arguments", "name":
				if f.Type == gjson.String {
					n += c.Text(model, f.Str)
				}
			}
			return true
		})
		return n
	}
	return 0
}

func endsWithUser(messages gjson.Result) bool {
	if !messages.IsArray() {
		return false
	}
	var last gjson.Result
	messages.ForEach(func(_, m gjson.Result) bool {
		last = m
		return true
	})
	return last.Get("role").Str == "user"
}

// systemText reads a system prompt: a string or, with blocks, a list of
// Anthropic text blocks.
func systemText(v gjson.Result, name string, blocks bool) (string, error) {
	switch {
	case isNull(v):
		return "", nil
	case v.Type == gjson.String:
		return v.Str, nil
	case blocks && v.IsArray():
		var b strings.Builder
		v.ForEach(func(_, block gjson.Result) bool {
			if t := block.Get("text"); t.Type == gjson.String {
				if b.Len() > 0 {
					b.WriteByte('\n')
				}
				b.WriteString(t.Str)
			}
			return true
		})
		return b.String(), nil
	}
	if blocks {
		return "", fieldErr(name, "must be a string or a list of text blocks, got %s", kind(v))
	}
	return "", fieldErr(name, "must be a string, got %s", kind(v))
}

// InjectIncludeUsage asks a streaming OpenAI-style request for a final usage
// chunk: when "stream" is true and stream_options.include_usage is not, it
// sets that to true, keeping the other stream_options. It reports whether
// the body changed; an unchanged body is returned as is.
func InjectIncludeUsage(body []byte) ([]byte, bool) {
	root, err := parseObject(body)
	if err != nil || lastMember(root, "stream").Type != gjson.True {
		return body, false
	}
	var opts []gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		if k.Str == "stream_options" {
			opts = append(opts, v)
		}
		return true
	})
	if len(opts) == 0 {
		out, err := sjson.SetRawBytes(body, "stream_options", []byte(`{"include_usage":true}`))
		if err != nil {
			return body, false
		}
		return out, true
	}
	last := opts[len(opts)-1]
	if last.IsObject() && lastMember(last, "include_usage").Type == gjson.True {
		return body, false
	}
	newOpts := []byte(`{"include_usage":true}`)
	if last.IsObject() {
		// Drop every include_usage first, so no duplicate can override ours.
		inner := []byte(last.Raw)
		inner, _ = deleteMembers(inner, gjson.Parse(last.Raw), func(k string) bool { return k == "include_usage" })
		set, err := sjson.SetBytes(inner, "include_usage", true)
		if err != nil {
			return body, false
		}
		newOpts = set
	}
	if len(opts) == 1 {
		out := make([]byte, 0, len(body)+len(newOpts)-len(last.Raw))
		out = append(out, body[:last.Index]...)
		out = append(out, newOpts...)
		out = append(out, body[last.Index+len(last.Raw):]...)
		return out, true
	}
	// Duplicate keys: keep one, where sjson puts a new key.
	stripped, _ := deleteMembers(body, root, func(k string) bool { return k == "stream_options" })
	out, err := sjson.SetRawBytes(stripped, "stream_options", newOpts)
	if err != nil {
		return body, false
	}
	return out, true
}

// backgroundFields make OpenWebUI (0.5 to 0.11) manage a chat for
// /api/chat/completions: run it as a background task whose answer goes over
// the websocket (session_id with chat_id), or save it and consume the stream
// on the server, answering null over HTTP ("parent_id": null without
// chat_id creates a chat, and a chat id with a message id gets an event
// emitter: main.py chat_completion, utils/middleware.py). parent_message is
// the old name of user_message; new_chat a legacy flag.
var backgroundFields = map[string]bool{
	"session_id":       true,
	"chat_id":          true,
	"id":               true,
	"message_ids":      true,
	"parent_id":        true,
	"user_message":     true,
	"parent_message":   true,
	"background_tasks": true,
	"new_chat":         true,
}

// StripBackgroundFields removes the top-level fields that would turn an API
// call into a background task, so that its answer (and usage) comes back in
// the HTTP response. It reports whether anything was removed; an unchanged
// body is returned as is.
func StripBackgroundFields(body []byte) ([]byte, bool) {
	root, err := parseObject(body)
	if err != nil {
		return body, false
	}
	return deleteMembers(body, root, func(k string) bool { return backgroundFields[k] })
}

// deleteMembers removes every member of the object root (parsed from body)
// whose unescaped key matches drop, duplicates included, keeping the rest of
// body byte for byte.
func deleteMembers(body []byte, root gjson.Result, drop func(key string) bool) ([]byte, bool) {
	type span struct {
		start, end int
		drop       bool
	}
	var spans []span
	any := false
	root.ForEach(func(k, v gjson.Result) bool {
		d := drop(k.Str)
		any = any || d
		spans = append(spans, span{k.Index, v.Index + len(v.Raw), d})
		return true
	})
	if !any {
		return body, false
	}
	out := make([]byte, 0, len(body))
	out = append(out, body[:spans[0].start]...)
	kept := false
	for i, s := range spans {
		if s.drop {
			continue
		}
		if kept {
			// The separator before s in the original holds its comma.
			out = append(out, body[spans[i-1].end:s.start]...)
		}
		out = append(out, body[s.start:s.end]...)
		kept = true
	}
	out = append(out, body[spans[len(spans)-1].end:]...)
	return out, true
}

// parseObject validates body as a JSON object. Offsets of its members
// (Result.Index) are offsets into body.
func parseObject(body []byte) (gjson.Result, error) {
	if !gjson.ValidBytes(body) {
		if bytes.Contains(body, []byte("NaN")) || bytes.Contains(body, []byte("Infinity")) {
			// Python's json (OpenWebUI's parser) takes these; a gate that
			// could not price such a call must not let it through.
			return gjson.Result{}, fieldErr("body", "is not valid JSON (NaN and Infinity are not JSON numbers)")
		}
		return gjson.Result{}, fieldErr("body", "is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return gjson.Result{}, fieldErr("body", "must be a JSON object")
	}
	// Parse drops leading whitespace from Raw without setting Index.
	root.Index = len(body) - len(root.Raw)
	return root, nil
}

// lastMember is obj's member key, the last one if repeated.
func lastMember(obj gjson.Result, key string) gjson.Result {
	var out gjson.Result
	obj.ForEach(func(k, v gjson.Result) bool {
		if k.Str == key {
			out = v
		}
		return true
	})
	return out
}

func optString(v gjson.Result, name string) (string, error) {
	if isNull(v) {
		return "", nil
	}
	if v.Type != gjson.String {
		return "", fieldErr(name, "must be a string, got %s", kind(v))
	}
	return v.Str, nil
}

func isNull(v gjson.Result) bool { return !v.Exists() || v.Type == gjson.Null }
