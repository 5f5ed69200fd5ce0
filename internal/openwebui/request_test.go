package openwebui

import (
	"errors"
	"testing"

	"github.com/openwebui-monitor/owmon/internal/tokens"
	"github.com/tidwall/gjson"
)

func TestInspectRequest(t *testing.T) {
	tests := []struct {
		name  string
		route RouteKind
		body  string
		want  ModelRequest // Messages compared by Raw
	}{
		{
			name:  "openai stream with usage",
			route: RouteOpenAI,
			body:  `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
			want:  ModelRequest{Model: "gpt-4o", Stream: true, IncludeUsage: true, Messages: gjson.Parse(`[{"role":"user","content":"hi"}]`)},
		},
		{
			name:  "web ui",
			route: RouteChat,
			body: `{"stream":true,"model":"llama3.2:latest","params":{},"session_id":"sock1","chat_id":"c1","id":"m2",
				"message_ids":[{"model_id":"llama3.2:latest","message_id":"m2"}],"parent_id":"m0",
				"user_message":{"id":"m1","role":"user","content":"hello"},"background_tasks":{"title_generation":true}}`,
			want: ModelRequest{Model: "llama3.2:latest", Stream: true, ChatID: "c1", MessageID: "m2", SessionID: "sock1"},
		},
		{
			name:  "output limits: the largest set, nonsense ignored",
			route: RouteOpenAI,
			body:  `{"model":"o3","max_tokens":100,"max_completion_tokens":2000,"max_output_tokens":"9999","prompt":"x"}`,
			want:  ModelRequest{Model: "o3", Prompt: "x", MaxOutputTokens: 2000},
		},
		{
			name:  "ollama num_predict, -1 is no limit",
			route: RouteOllama,
			body:  `{"model":"llama3","prompt":"x","stream":false,"options":{"num_predict":-1}}`,
			want:  ModelRequest{Model: "llama3", Prompt: "x"},
		},
		{
			name:  "ollama num_predict",
			route: RouteOllama,
			body:  `{"model":"llama3","prompt":"x","stream":false,"options":{"num_predict":64.5}}`,
			want:  ModelRequest{Model: "llama3", Prompt: "x", MaxOutputTokens: 64},
		},
		{
			name:  "ollama streams by default",
			route: RouteOllama,
			body:  `{"model":"llama3","messages":[]}`,
			want:  ModelRequest{Model: "llama3", Stream: true, Messages: gjson.Parse(`[]`)},
		},
		{
			name:  "ollama null stream is the default",
			route: RouteOllama,
			body:  `{"model":"llama3","prompt":"why","stream":null,"system":"be brief"}`,
			want:  ModelRequest{Model: "llama3", Stream: true, Prompt: "why", System: "be brief"},
		},
		{
			name:  "ollama no stream",
			route: RouteOllama,
			body:  `{"model":"llama3","prompt":"why","stream":false}`,
			want:  ModelRequest{Model: "llama3", Prompt: "why"},
		},
		{
			name:  "openai does not stream by default",
			route: RouteOpenAI,
			body:  `{"model":"gpt-4o","prompt":"x"}`,
			want:  ModelRequest{Model: "gpt-4o", Prompt: "x"},
		},
		{
			name:  "anthropic system blocks",
			route: RouteAnthropic,
			body:  `{"model":"claude","max_tokens":10,"system":[{"type":"text","text":"a"},{"type":"text","text":"b","cache_control":{"type":"ephemeral"}}],"messages":[]}`,
			want:  ModelRequest{Model: "claude", System: "a\nb", Messages: gjson.Parse(`[]`), MaxOutputTokens: 10},
		},
		{
			name:  "anthropic system string",
			route: RouteAnthropic,
			body:  `{"model":"claude","system":"sys","stream":true}`,
			want:  ModelRequest{Model: "claude", System: "sys", Stream: true},
		},
		{
			name:  "system ignored on other routes",
			route: RouteOpenAI,
			body:  `{"model":"m","system":42}`,
			want:  ModelRequest{Model: "m"},
		},
		{
			name:  "responses",
			route: RouteResponses,
			body:  `{"model":"gpt-5","input":"tell me","instructions":"be nice","stream":true}`,
			want:  ModelRequest{Model: "gpt-5", Prompt: "tell me", System: "be nice", Stream: true},
		},
		{
			name:  "embeddings list",
			route: RouteEmbeddings,
			body:  `{"model":"text-embedding-3-small","input":["a","b"]}`,
			want:  ModelRequest{Model: "text-embedding-3-small"},
		},
		{
			name:  "speech",
			route: RouteAudio,
			body:  `{"model":"tts-1","input":"say this","voice":"alloy"}`,
			want:  ModelRequest{Model: "tts-1", Prompt: "say this"},
		},
		{
			name:  "missing model and nulls",
			route: RouteChat,
			body:  ` {"model":null,"chat_id":null,"messages":null,"stream_options":null} `,
			want:  ModelRequest{},
		},
		{
			name:  "last duplicate wins",
			route: RouteOpenAI,
			body:  `{"model":"a","stream":false,"model":"b","stream":true,"stream_options":{"include_usage":true,"include_usage":false}}`,
			want:  ModelRequest{Model: "b", Stream: true},
		},
		{
			name:  "escaped keys",
			route: RouteOpenAI,
			body:  `{"\u006dodel":"x","str\u0065am":true}`,
			want:  ModelRequest{Model: "x", Stream: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := InspectRequest(tt.route, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got.Model != tt.want.Model || got.Stream != tt.want.Stream || got.IncludeUsage != tt.want.IncludeUsage ||
				got.ChatID != tt.want.ChatID || got.MessageID != tt.want.MessageID || got.SessionID != tt.want.SessionID ||
				got.Prompt != tt.want.Prompt || got.System != tt.want.System || got.Messages.Raw != tt.want.Messages.Raw {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestInspectRequestErrors(t *testing.T) {
	tests := []struct {
		route RouteKind
		body  string
		field string
	}{
		{RouteChat, ``, "body"},
		{RouteChat, `{"model":"x"`, "body"},
		{RouteChat, `{"model":"x"} {}`, "body"},
		{RouteChat, `[{"model":"x"}]`, "body"},
		{RouteChat, `"x"`, "body"},
		{RouteChat, `{"model":1}`, "model"},
		{RouteChat, `{"model":["a"]}`, "model"},
		{RouteChat, `{"stream":"true"}`, "stream"},
		{RouteChat, `{"stream":1}`, "stream"},
		{RouteChat, `{"stream_options":true}`, "stream_options"},
		{RouteChat, `{"stream_options":{"include_usage":"yes"}}`, "stream_options.include_usage"},
		{RouteChat, `{"chat_id":1}`, "chat_id"},
		{RouteChat, `{"id":{}}`, "id"},
		{RouteChat, `{"session_id":false}`, "session_id"},
		{RouteChat, `{"messages":{}}`, "messages"},
		{RouteChat, `{"messages":"hi"}`, "messages"},
		{RouteOpenAI, `{"prompt":1}`, "prompt"},
		{RouteEmbeddings, `{"input":{"a":1}}`, "input"},
		{RouteAnthropic, `{"system":1}`, "system"},
		{RouteOllama, `{"system":["x"]}`, "system"},
		{RouteResponses, `{"instructions":5}`, "instructions"},
	}
	for _, tt := range tests {
		_, err := InspectRequest(tt.route, []byte(tt.body))
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: error %v, want a *FieldError", tt.body, err)
			continue
		}
		if fe.Field != tt.field {
			t.Errorf("%s: field %q, want %q (%v)", tt.body, fe.Field, tt.field, err)
		}
	}
}

func TestPromptTokens(t *testing.T) {
	c := tokens.New()
	const model = "gpt-4o"
	msgs := gjson.Parse(`[{"role":"system","content":"You are helpful."},{"role":"user","content":"What is the capital of France?"}]`)
	text := func(s string) int64 { return c.Text(model, s) }
	tests := []struct {
		name  string
		route RouteKind
		body  string
		want  int64
	}{
		{"chat", RouteOpenAI, `{"model":"gpt-4o","messages":` + msgs.Raw + `}`, c.Messages(model, msgs)},
		{"anthropic adds system", RouteAnthropic, `{"model":"gpt-4o","system":"Be terse.","messages":` + msgs.Raw + `}`,
			c.Messages(model, msgs) + text("Be terse.")},
		{"completion prompt", RouteOpenAI, `{"model":"gpt-4o","prompt":"Once upon a time"}`, text("Once upon a time")},
		{"completion prompt list", RouteOpenAI, `{"model":"gpt-4o","prompt":["Once upon","a time"]}`, text("Once upon") + text("a time")},
		{"embeddings strings", RouteEmbeddings, `{"model":"gpt-4o","input":["first text","second text here"]}`,
			text("first text") + text("second text here")},
		{"embeddings string", RouteEmbeddings, `{"model":"gpt-4o","input":"one text"}`, text("one text")},
		{"embeddings token ids", RouteEmbeddings, `{"model":"gpt-4o","input":[[1,2,3],[4,5]]}`, 5},
		{"embeddings one token list", RouteEmbeddings, `{"model":"gpt-4o","input":[1,2,3,4]}`, 4},
		{"ollama generate", RouteOllama, `{"model":"gpt-4o","prompt":"Why is the sky blue?","system":"Be brief."}`,
			text("Why is the sky blue?") + text("Be brief.")},
		{"responses items", RouteResponses, `{"model":"gpt-4o","instructions":"Be nice.","input":[{"role":"user","content":[{"type":"input_text","text":"Hello there"}]},{"type":"function_call_output","call_id":"c","output":"42"}]}`,
			text("Be nice.") + text("Hello there") + text("42")},
		{"web ui new turn added", RouteChat, `{"model":"gpt-4o","messages":[{"role":"system","content":"You are helpful."}],"user_message":{"id":"u","role":"user","content":"What is the capital of France?"}}`,
			c.Messages(model, gjson.Parse(`[{"role":"system","content":"You are helpful."}]`)) + text("What is the capital of France?")},
		{"web ui turn already in messages", RouteChat, `{"model":"gpt-4o","messages":` + msgs.Raw + `,"user_message":{"role":"user","content":"What is the capital of France?"}}`,
			c.Messages(model, msgs)},
		{"nothing", RouteChat, `{"model":"gpt-4o"}`, 0},
	}
	for _, tt := range tests {
		r, err := InspectRequest(tt.route, []byte(tt.body))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := r.PromptTokens(c); got != tt.want {
			t.Errorf("%s: PromptTokens = %d, want %d", tt.name, got, tt.want)
		}
		if got := r.PromptTokens(nil); got != tt.want {
			t.Errorf("%s: PromptTokens(nil) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestInjectIncludeUsage(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"model":"m","stream":true}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{`{"stream":true,"stream_options":{"foo":1}}`, `{"stream":true,"stream_options":{"foo":1,"include_usage":true}}`},
		{`{"stream":true,"stream_options":{"include_usage":false,"foo":1}}`, `{"stream":true,"stream_options":{"foo":1,"include_usage":true}}`},
		{`{"stream":true,"stream_options":{"include_usage":null}}`, `{"stream":true,"stream_options":{"include_usage":true}}`},
		{`{"stream":true,"stream_options":null,"n":1}`, `{"stream":true,"stream_options":{"include_usage":true},"n":1}`},
		{`{"stream":true,"stream_options":{}}`, `{"stream":true,"stream_options":{"include_usage":true}}`},
		{"{\n  \"stream\": true,\n  \"stream_options\": {\"x\": 1}\n}", "{\n  \"stream\": true,\n  \"stream_options\": {\"x\": 1,\"include_usage\":true}\n}"},
		// Duplicates: Python reads the last one, so none may survive.
		{`{"stream_options":{"include_usage":true},"stream":true,"stream_options":{"a":1}}`, `{"stream":true,"stream_options":{"a":1,"include_usage":true}}`},
		{`{"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}`, `{"stream":true,"stream_options":{"include_usage":true}}`},
		{`{"stream":false,"stream":true}`, `{"stream":false,"stream":true,"stream_options":{"include_usage":true}}`},
	}
	for _, tt := range tests {
		got, changed := InjectIncludeUsage([]byte(tt.in))
		if !changed || string(got) != tt.want {
			t.Errorf("InjectIncludeUsage(%s) = %s, %v; want %s", tt.in, got, changed, tt.want)
		}
		if !gjson.ValidBytes(got) {
			t.Errorf("invalid JSON %s", got)
		}
	}
	unchanged := []string{
		`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`,
		`{"stream":true,"stream_options":{"include_usage":false,"include_usage":true}}`,
		`{"model":"m","stream":false}`,
		`{"model":"m"}`,
		`{"stream":"true"}`,
		`{"stream":true,"stream":false}`,
		`[{"stream":true}]`,
		`{"stream":true`,
		``,
		`null`,
	}
	for _, in := range unchanged {
		b := []byte(in)
		got, changed := InjectIncludeUsage(b)
		if changed || string(got) != in || (len(b) > 0 && &got[0] != &b[0]) {
			t.Errorf("InjectIncludeUsage(%s) = %s, %v; want it unchanged", in, got, changed)
		}
	}
}

func TestStripBackgroundFields(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"model":"m","chat_id":"c","id":"i","session_id":"s","messages":[]}`, `{"model":"m","messages":[]}`},
		{`{"session_id":"s","model":"m"}`, `{"model":"m"}`},
		{`{"model":"m","session_id":"s"}`, `{"model":"m"}`},
		{`{"chat_id":"c"}`, `{}`},
		{`{"chat_id":"c","id":"x"}`, `{}`},
		{
			`{"stream":true,"model":"gpt-4o","messages":[{"role":"user","content":"hi","id":"keep"}],"session_id":"sock","chat_id":"c","id":"a",` +
				`"message_ids":[{"model_id":"gpt-4o","message_id":"a"}],"parent_id":null,"user_message":{"id":"u","content":"hi"},` +
				`"background_tasks":{"title_generation":true},"parent_message":{},"features":{"web_search":false}}`,
			`{"stream":true,"model":"gpt-4o","messages":[{"role":"user","content":"hi","id":"keep"}],"features":{"web_search":false}}`,
		},
		{"{\n  \"model\": \"m\",\n  \"chat_id\": \"c\",\n  \"stream\": true\n}", "{\n  \"model\": \"m\",\n  \"stream\": true\n}"},
		{"{\n  \"chat_id\": \"c\",\n  \"model\": \"m\"\n}", "{\n  \"model\": \"m\"\n}"},
		{` { "model" : "m" , "id" : 1 } `, ` { "model" : "m" } `},
		{`{"chat\u005fid":"c","model":"m"}`, `{"model":"m"}`},
		{`{"id":"a","model":"m","id":"b"}`, `{"model":"m"}`},
	}
	for _, tt := range tests {
		got, changed := StripBackgroundFields([]byte(tt.in))
		if !changed || string(got) != tt.want {
			t.Errorf("StripBackgroundFields(%s) =\n%s, %v; want\n%s", tt.in, got, changed, tt.want)
		}
		if !gjson.ValidBytes(got) {
			t.Errorf("invalid JSON %s", got)
		}
	}
	unchanged := []string{
		`{"model":"m","messages":[{"id":"x","role":"user","content":"hi"}],"metadata":{"chat_id":"c"}}`,
		`{}`,
		`{"model":"m"`,
		`["chat_id"]`,
		``,
	}
	for _, in := range unchanged {
		b := []byte(in)
		got, changed := StripBackgroundFields(b)
		if changed || string(got) != in || (len(b) > 0 && &got[0] != &b[0]) {
			t.Errorf("StripBackgroundFields(%s) = %s, %v; want it unchanged", in, got, changed)
		}
	}
}
