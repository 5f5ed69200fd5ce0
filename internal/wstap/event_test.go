package wstap

import (
	"errors"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/openwebui"
)

// sioData returns the Socket.IO JSON payload of a websocket text "42…".
func sioData(t *testing.T, text string) []byte {
	t.Helper()
	p, ok := ParseEngineIO([]byte(text))
	if !ok || p.Type != EIOMessage {
		t.Fatalf("not a message: %q", text)
	}
	s, ok := ParseSocketIO(p.Data)
	if !ok || s.Type != SIOEvent {
		t.Fatalf("not an event: %q", text)
	}
	return s.Data
}

func TestParseChatEventVersions(t *testing.T) {
	usage := openwebui.Usage{Input: 30, Output: 12, Reported: true}
	cases := []struct {
		name string
		text string
		want ChatEvent
	}{
		{"0.11 output", `42["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:completion","data":{"output":[{"type":"message","id":"msg_1","status":"in_progress","role":"assistant","content":[{"type":"output_text","text":"He"}]}]}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeCompletion,
				Output: `[{"type":"message","id":"msg_1","status":"in_progress","role":"assistant","content":[{"type":"output_text","text":"He"}]}]`}},
		{"0.11 usage (merge_usage)", `42["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:completion","data":{"usage":{"prompt_tokens":20,"completion_tokens":7,"input_tokens":30,"output_tokens":12,"total_tokens":42}}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeCompletion, Usage: usage}},
		{"0.11 done", `42["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:completion","data":{"done":true,"output":[],"title":"Hi","usage":{"input_tokens":30,"output_tokens":12}}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeCompletion, Done: true, Output: `[]`, Usage: usage}},
		{"0.9 both forms", `42["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:completion","data":{"content":"He\nllo","output":[]}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeCompletion, Content: `"He\nllo"`, Output: `[]`}},
		{"0.6 legacy name, raw usage", `42["chat-events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:completion","data":{"usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}}}}]`,
			ChatEvent{Name: "chat-events", ChatID: "c1", MessageID: "m1", Type: TypeCompletion, Usage: usage}},
		{"0.6 done", `42["chat-events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:completion","data":{"done":true,"content":"Hello","title":"Greeting"}}}]`,
			ChatEvent{Name: "chat-events", ChatID: "c1", MessageID: "m1", Type: TypeCompletion, Done: true, Content: `"Hello"`}},
		{"namespace", `42/ws,["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:completion","data":{"done":true}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeCompletion, Done: true}},
		{"non-streaming answer", `42["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:completion","data":{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeCompletion, Model: "gpt-4o-mini", Content: `"Hi!"`, Usage: usage}},
		{"stream error", `42["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:completion","data":{"error":{"message":"Rate limit","type":"rate_limit"}}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeCompletion, Error: "Rate limit"}},
		{"message error", `42["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:message:error","data":{"error":{"content":"Insufficient balance"}}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeMessageError, Error: "Insufficient balance"}},
		{"message error object", `42["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:message:error","data":{"error":{"content":{"detail":"nope"}}}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeMessageError, Error: "nope"}},
		{"cancel", `42["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:tasks:cancel"}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeTasksCancel}},
		{"active", `42["events",{"chat_id":"c1","message_id":"m1","data":{"type":"chat:active","data":{"active":false,"folder_id":null}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeActive, HasActive: true}},
		{"internal", `42["events",{"chat_id":"c1","message_id":"m1","internal":true,"data":{"type":"status","data":{"description":"Searching"}}}]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Internal: true, Type: "status"}},
		{"spaces", `42[ "events" , {"chat_id": "c1", "message_id": "m1", "data": {"type": "chat:completion", "data": {"done": true}}} ]`,
			ChatEvent{Name: "events", ChatID: "c1", MessageID: "m1", Type: TypeCompletion, Done: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, ok := ParseChatEvent(sioData(t, c.text))
			if !ok || ev != c.want {
				t.Errorf("got %+v, %v\nwant %+v", ev, ok, c.want)
			}
		})
	}
	for _, other := range []string{
		`42["heartbeat",{}]`, `42["events:channel",{"channel_id":"x"}]`, `42["events"]`, `42"events"`,
		`42["eventsx",{}]`, `42[]`, `42[1,2]`, `42["events",[]]`, `42["events","x"]`,
	} {
		if ev, ok := ParseChatEvent(sioData(t, other)); ok {
			t.Errorf("%s parsed as %+v", other, ev)
		}
	}
}

func TestParseUsageShapes(t *testing.T) {
	cases := map[string]openwebui.Usage{
		// OpenAI, with details.
		`{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150,"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":20}}`: {Input: 100, Output: 50, Cached: 64, Reasoning: 20, Reported: true},
		// merge_usage over two calls: the summed names win over the last call's.
		`{"prompt_tokens":60,"completion_tokens":10,"input_tokens":100,"output_tokens":30,"total_tokens":130,"prompt_tokens_details":{"cached_tokens":40}}`: {Input: 100, Output: 30, Cached: 40, Reported: true},
		// Ollama raw, and OpenWebUI's llama.cpp timings.
		`{"prompt_eval_count":11,"eval_count":22,"total_duration":123}`:                                                                  {Input: 11, Output: 22, Reported: true},
		`{"prompt_n":5,"predicted_n":9,"predicted_per_second":40.5}`:                                                                     {Input: 5, Output: 9, Reported: true},
		`{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":2}`:                                                               {Input: 7, Output: 3, Cached: 2, Reported: true},
		`{"input_tokens":7,"output_tokens_details":{"reasoning_tokens":4},"input_tokens_details":{"cached_tokens":1},"total_tokens":19}`: {Input: 7, Output: 12, Cached: 1, Reasoning: 4, Reported: true},
		// Numbers as 12.0 count; fractions, negatives and strings do not.
		`{"prompt_tokens":12.0,"completion_tokens":"3"}`:                {Input: 12, Reported: true},
		`{"input_tokens":-1,"prompt_tokens":4,"completion_tokens":2.5}`: {Input: 4, Reported: true},
		`{"cost":0.01}`: {},
		`{}`:            {},
		`null`:          {},
		`[1,2]`:         {},
		// Zero is a real count.
		`{"prompt_tokens":0,"completion_tokens":0}`: {Reported: true},
	}
	for in, want := range cases {
		if got := ParseUsage(gjson.Parse(in)); got != want {
			t.Errorf("ParseUsage(%s) = %+v, want %+v", in, got, want)
		}
	}
}

func TestAnswerText(t *testing.T) {
	output := `[{"type":"reasoning","id":"r1","content":[{"type":"output_text","text":"think 1"}],"summary":[{"type":"summary_text","text":"sum"}]},` +
		`{"type":"message","content":[{"type":"output_text","text":"Part "},{"type":"output_text","text":"one"}]},` +
		`{"type":"function_call","name":"get_time","arguments":"{}"},` +
		`{"type":"function_call_output","output":[{"type":"input_text","text":"12:00"}]},` +
		`{"type":"message","content":[{"type":"output_text","text":"  "}]},` +
		`{"type":"message","content":[{"type":"output_text","text":"Part two"}]}]`
	ev := ChatEvent{Output: output, Content: `"ignored when output is there"`}
	c, r := ev.AnswerText()
	if c != "Part one\nPart two" || r != "think 1\nsum" {
		t.Errorf("AnswerText = %q, %q", c, r)
	}
	c, r = ChatEvent{Content: `"line\n\"quoted\" \u00e9"`}.AnswerText()
	if c != "line\n\"quoted\" é" || r != "" {
		t.Errorf("AnswerText(content) = %q, %q", c, r)
	}
	if c, r := (ChatEvent{}).AnswerText(); c != "" || r != "" {
		t.Errorf("empty: %q %q", c, r)
	}
}

// The tap and the outlet read usage with the one openwebui.ReadUsage: on
// well-formed reports they agree, llama.cpp's names and the normalized
// names (preferred, as merge_usage sums them over a tool loop) included.
func TestParseUsageAgreesWithOutlet(t *testing.T) {
	cases := []struct {
		name, json string
		want       openwebui.Usage
	}{
		{"llama.cpp", `{"prompt_n":5,"predicted_n":9,"predicted_per_second":40.5}`, openwebui.Usage{Input: 5, Output: 9, Reported: true}},
		{"llama.cpp input only, total", `{"prompt_n":5,"total_tokens":12}`, openwebui.Usage{Input: 5, Output: 7, Reported: true}},
		{"openai over llama.cpp", `{"prompt_n":5,"predicted_n":9,"prompt_tokens":6,"completion_tokens":10}`, openwebui.Usage{Input: 6, Output: 10, Reported: true}},
		{"normalized", `{"input_tokens":30,"output_tokens":9,"input_tokens_details":{"cached_tokens":3},"output_tokens_details":{"reasoning_tokens":4}}`,
			openwebui.Usage{Input: 30, Output: 9, Cached: 3, Reasoning: 4, Reported: true}},
		{"merged tool loop", `{"prompt_tokens":20,"completion_tokens":5,"input_tokens":40,"output_tokens":10,"total_tokens":50,"prompt_tokens_details":{"cached_tokens":8}}`,
			openwebui.Usage{Input: 40, Output: 10, Cached: 8, Reported: true}},
		{"normalized over ollama and llama.cpp", `{"prompt_eval_count":1,"eval_count":2,"prompt_n":3,"predicted_n":4,"output_tokens":7,"input_tokens":6}`,
			openwebui.Usage{Input: 6, Output: 7, Reported: true}},
		{"ollama", `{"prompt_eval_count":26,"eval_count":3}`, openwebui.Usage{Input: 26, Output: 3, Reported: true}},
		{"zero is a count", `{"prompt_n":0,"predicted_n":0}`, openwebui.Usage{Reported: true}},
		{"none", `{"predicted_per_second":40.5}`, openwebui.Usage{}},
	}
	for _, c := range cases {
		tap := ParseUsage(gjson.Parse(c.json))
		outlet, err := openwebui.ParseUsage(gjson.Parse(c.json), "usage")
		if err != nil || tap != c.want || outlet != c.want {
			t.Errorf("%s: tap %+v, outlet %+v (%v); want %+v", c.name, tap, outlet, err, c.want)
		}
	}
}

// Where a report is bad the tap skips the value (and never fails) while the
// outlet refuses it, naming the field.
func TestParseUsageBadValues(t *testing.T) {
	cases := []struct {
		json, field string
		tap         openwebui.Usage
	}{
		{`{"input_tokens":"40","prompt_tokens":20,"completion_tokens":5}`, "usage.input_tokens", openwebui.Usage{Input: 20, Output: 5, Reported: true}},
		{`{"prompt_n":-1,"predicted_n":9}`, "usage.prompt_n", openwebui.Usage{Output: 9, Reported: true}},
		{`{"prompt_n":5,"predicted_n":1.5}`, "usage.predicted_n", openwebui.Usage{Input: 5, Reported: true}},
		{`{"prompt_tokens":5,"total_tokens":"x"}`, "usage.total_tokens", openwebui.Usage{Input: 5, Reported: true}},
		{`{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":null},"input_tokens_details":{"cached_tokens":true}}`,
			"usage.input_tokens_details.cached_tokens", openwebui.Usage{Input: 5, Output: 1, Reported: true}},
	}
	for _, c := range cases {
		if got := ParseUsage(gjson.Parse(c.json)); got != c.tap {
			t.Errorf("tap %s = %+v, want %+v", c.json, got, c.tap)
		}
		_, err := openwebui.ParseUsage(gjson.Parse(c.json), "usage")
		var fe *openwebui.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("outlet %s: error %v, want one naming %s", c.json, err, c.field)
		}
	}
}
