package wstap

import (
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/openwebui"
)

// OpenWebUI's socket.io event names for chat events (§5): "events" since
// 0.6.33, "chat-events" up to 0.6.32.
const (
	EventName       = "events"
	LegacyEventName = "chat-events"
)

// Chat event types (data.type) the tracker acts on (§5, §3c).
const (
	TypeCompletion   = "chat:completion"    // content/output, usage, done
	TypeMessageError = "chat:message:error" // {error: {content}}
	TypeTasksCancel  = "chat:tasks:cancel"  // the generation was stopped (or failed)
	TypeActive       = "chat:active"        // {active, folder_id}
)

// ChatEvent is one OpenWebUI chat event:
//
//	42["events",{"chat_id":…,"message_id":…,"data":{"type":…,"data":{…}}}]
//
// with what the tracker needs from its data.
type ChatEvent struct {
	Name      string // EventName or LegacyEventName
	ChatID    string
	MessageID string
	Internal  bool   // "internal": true (server-side sub-agent runs)
	Type      string // data.type, e.g. "chat:completion"

	// From data.data of chat:completion.
	Done  bool            // "done": true, the last event of a message
	Usage openwebui.Usage // "usage", when Usage.Reported
	Model string          // "model" (non-streaming answers, 0.5.0 chunks)
	// Content is the raw JSON string of "content" (0.5–0.9: the whole
	// answer so far, serialized); "" when absent. Output is the raw JSON
	// array of "output" (0.8+: the whole answer so far as OpenResponses
	// items); "" when absent. Text and the non-streaming
	// choices[0].message.content fill Content too. See AnswerText.
	Content string
	Output  string

	// Error is the error text of chat:message:error (data.error.content)
	// or of a chat:completion {"error": …}; "" when none.
	Error string
	// Active is data.active of chat:active; HasActive says it was there.
	Active, HasActive bool
}

// ParseChatEvent reads the JSON payload of a Socket.IO EVENT packet (the
// array after "42") as an OpenWebUI chat event. False when it is another
// event or not an event at all. The strings are copies: the event may be
// kept.
func ParseChatEvent(data []byte) (ChatEvent, bool) {
	ev, ok := parseChatEvent(string(data))
	return ev, ok
}

// parseChatEvent is ParseChatEvent on a string; the event's strings alias
// s (except JSON strings with escapes).
func parseChatEvent(s string) (ev ChatEvent, ok bool) {
	name, ok := eventName(s)
	if !ok {
		return ev, false
	}
	ev.Name = name
	payload := gjson.Get(s, "1")
	if !payload.IsObject() {
		return ev, false
	}
	var data gjson.Result
	payload.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "chat_id":
			ev.ChatID = v.Str
		case "message_id":
			ev.MessageID = v.Str
		case "internal":
			ev.Internal = v.Type == gjson.True
		case "data":
			data = v
		}
		return true
	})
	if !data.IsObject() {
		return ev, true
	}
	var inner gjson.Result
	data.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "type":
			ev.Type = v.Str
		case "data":
			inner = v
		}
		return true
	})
	if !inner.IsObject() {
		return ev, true
	}
	switch ev.Type {
	case TypeCompletion:
		inner.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "done":
				ev.Done = v.Type == gjson.True
			case "usage":
				ev.Usage = ParseUsage(v)
			case "model":
				ev.Model = v.Str
			case "content":
				if v.Type == gjson.String {
					ev.Content = v.Raw
				}
			case "output":
				if v.IsArray() {
					ev.Output = v.Raw
				}
			case "choices":
				// A non-streaming answer: the whole chat.completion.
				if c := v.Get("0.message.content"); c.Type == gjson.String && ev.Content == "" {
					ev.Content = c.Raw
				}
			case "error":
				ev.Error = errorText(v)
			}
			return true
		})
	case TypeMessageError:
		ev.Error = errorText(inner.Get("error"))
		if ev.Error == "" {
			ev.Error = "error"
		}
	case TypeActive:
		a := inner.Get("active")
		ev.Active, ev.HasActive = a.Type == gjson.True, a.Type == gjson.True || a.Type == gjson.False
	}
	return ev, true
}

// eventName checks that s is a JSON array whose first element is a chat
// event name followed by another element, and returns the name. It reads
// nothing else, so that other events cost little.
func eventName(s string) (name string, ok bool) {
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '[' {
		return "", false
	}
	i = skipSpace(s, i+1)
	switch {
	case strings.HasPrefix(s[i:], `"events"`):
		name, i = EventName, i+len(`"events"`)
	case strings.HasPrefix(s[i:], `"chat-events"`):
		name, i = LegacyEventName, i+len(`"chat-events"`)
	default:
		return "", false
	}
	i = skipSpace(s, i)
	if i >= len(s) || s[i] != ',' {
		return "", false
	}
	return name, true
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// errorText is the text of an error value: a string, or an object's
// "content", "message" or "detail" (nested one level, as in
// {"error": {"message": …}}), else its JSON.
func errorText(v gjson.Result) string {
	switch {
	case !v.Exists() || v.Type == gjson.Null:
		return ""
	case v.Type == gjson.String:
		return v.Str
	case v.IsObject():
		for _, k := range [...]string{"content", "message", "detail", "error"} {
			if t := errorText(v.Get(k)); t != "" {
				return t
			}
		}
	}
	return v.Raw
}

// ParseUsage reads a usage object from a chat event with
// openwebui.ReadUsage, leniently: values that are not whole numbers ≥ 0 are
// skipped for the next name, and it never fails. Reported is set when it
// names input or output tokens. The normalized input_tokens/output_tokens
// come first: OpenWebUI's merge_usage (0.10+) sums them over the calls of a
// message but keeps only the latest call's prompt_tokens/completion_tokens;
// 0.5–0.7 sent the provider's dict as is (OpenAI, Ollama, llama.cpp names).
func ParseUsage(v gjson.Result) openwebui.Usage {
	u, _ := openwebui.ReadUsage(v, "usage", openwebui.UsageOptions{Lenient: true})
	return u
}

// AnswerText is the answer's text: for Output, the text of its "message"
// items (joined by newlines, as OpenWebUI's get_output_text does) and,
// separately, of its "reasoning" items; otherwise Content unquoted.
func (e ChatEvent) AnswerText() (content, reasoning string) {
	return answerText(e.Content, e.Output)
}

func answerText(contentJSON, outputJSON string) (content, reasoning string) {
	if outputJSON != "" {
		var text, think strings.Builder
		gjson.Parse(outputJSON).ForEach(func(_, item gjson.Result) bool {
			switch item.Get("type").Str {
			case "message":
				var t strings.Builder
				item.Get("content").ForEach(func(_, part gjson.Result) bool {
					if s := part.Get("text"); s.Type == gjson.String {
						t.WriteString(s.Str)
					}
					return true
				})
				if strings.TrimSpace(t.String()) != "" {
					if text.Len() > 0 {
						text.WriteByte('\n')
					}
					text.WriteString(t.String())
				}
			case "reasoning":
				for _, key := range [...]string{"content", "summary"} {
					item.Get(key).ForEach(func(_, part gjson.Result) bool {
						if s := part.Get("text"); s.Type == gjson.String && s.Str != "" {
							if think.Len() > 0 {
								think.WriteByte('\n')
							}
							think.WriteString(s.Str)
						}
						return true
					})
				}
			}
			return true
		})
		return text.String(), think.String()
	}
	if contentJSON != "" {
		return gjson.Parse(contentJSON).String(), ""
	}
	return "", ""
}

// unsafeString views b as a string without copying; the string must not
// outlive b's contents.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
