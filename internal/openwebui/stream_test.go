package openwebui

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/openwebui-monitor/owmon/internal/tokens"
)

const testModel = "gpt-4o"

var testCounter = tokens.New()

// OpenAI-style stream as OpenWebUI sends it from /api/chat/completions in
// synchronous mode: its own sources and selected_model_id lines first.
const sseOpenWebUI = `data: {"sources": [{"source": {"id": "f1", "name": "doc.pdf", "type": "file"}, "document": ["Paris is the capital of France."], "metadata": [{"source": "doc.pdf", "page": 1}], "distances": [0.12]}]}

data: {"selected_model_id": "gpt-4o"}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"The capital"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" is Paris."},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

`

const sseUsageChunk = `data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":57,"completion_tokens":6,"total_tokens":63,"prompt_tokens_details":{"cached_tokens":32,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}}}

`

const sseDone = "data: [DONE]\n\n"

// An Ollama model behind OpenWebUI's OpenAI conversion: usage rides on the
// last content chunk, which must never be stripped.
const sseOllamaConverted = `data: {"id":"llama3.2:latest-1","created":1730000000,"model":"llama3.2:latest","choices":[{"index":0,"logprobs":null,"finish_reason":null,"delta":{"content":"Hi"}}],"object":"chat.completion.chunk"}

data: {"id":"llama3.2:latest-2","created":1730000000,"model":"llama3.2:latest","choices":[{"index":0,"logprobs":null,"finish_reason":"stop","delta":{}}],"object":"chat.completion.chunk","usage":{"response_token/s":61.5,"prompt_token/s":540.2,"total_duration":1500000000,"prompt_tokens":26,"completion_tokens":2,"total_tokens":28}}

data: [DONE]

`

const sseToolCalls = `data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}

data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}

data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]}

data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]

`

const sseReasoning = `data: {"id":"r","object":"chat.completion.chunk","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"Think"},"finish_reason":null}]}

data: {"id":"r","object":"chat.completion.chunk","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"reasoning":" hard."},"finish_reason":null}]}

data: {"id":"r","object":"chat.completion.chunk","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":" Done"},"finish_reason":"stop"}]}

data: [DONE]

`

const sseCompletions = `data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-3.5-turbo-instruct","choices":[{"text":"Once","index":0,"logprobs":null,"finish_reason":null}]}

data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-3.5-turbo-instruct","choices":[{"text":" upon","index":0,"logprobs":null,"finish_reason":"length"}]}

`

const sseCompletionsUsage = `data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-3.5-turbo-instruct","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}

`

const sseError = `data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Par"},"finish_reason":null}]}

data: {"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "code": "rate_limit_exceeded"}}

`

// Anthropic's own event stream (also what OpenWebUI's /api/v1/messages
// sends, with estimated input at message_start and the real one at
// message_delta).
const sseAnthropic = `event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me see."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: ping
data: {"type": "ping"}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"!"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"search","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"q\": \"x\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

`

const sseAnthropicError = `event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":12,"output_tokens":1}}}

event: error
data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}

`

const sseResponses = `event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1741290958,"status":"in_progress","model":"gpt-4.1","output":[],"usage":null}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1","output_index":0,"content_index":0,"delta":" there"}

event: response.output_text.done
data: {"type":"response.output_text.done","sequence_number":6,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Hi there"}

event: response.completed
data: {"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1","output":[{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there","annotations":[]}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":4},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":80},"total_tokens":123}}}

`

const ndjsonOllamaChat = `{"model":"llama3.2","created_at":"2025-01-01T00:00:00.1Z","message":{"role":"assistant","content":"","thinking":"Hmm."},"done":false}
{"model":"llama3.2","created_at":"2025-01-01T00:00:00.2Z","message":{"role":"assistant","content":"The"},"done":false}
{"model":"llama3.2","created_at":"2025-01-01T00:00:00.3Z","message":{"role":"assistant","content":" sky"},"done":false}
{"model":"llama3.2","created_at":"2025-01-01T00:00:00.4Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":5191566416,"load_duration":2154458,"prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":298,"eval_duration":4799921000}
`

const ndjsonOllamaGenerate = `{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","response":"Blue","done":false}
{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","response":" light","done":false}
{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","response":"","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":10706818083,"eval_count":290,"eval_duration":4709213000}
`

const ndjsonOllamaToolsAndError = "{\"model\":\"qwen3\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},\"done\":false}\r\n" +
	"{\"error\":\"model runner has unexpectedly stopped\"}\r\n"

const jsonChatCompletion = `{
  "id": "chatcmpl-B9",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29, "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
  "service_tier": "default"
}`

const jsonCompletion = `{"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-3.5-turbo-instruct","choices":[{"text":"\n\nThis is a test.","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`

const jsonEmbeddings = `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,-0.0028842222]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`

const jsonAnthropic = `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hi!"},{"type":"tool_use","id":"t","name":"search","input":{"q":"x"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":20,"output_tokens":5}}`

const jsonOllama = `{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"Blue."},"done_reason":"stop","done":true,"total_duration":4883583458,"prompt_eval_count":26,"eval_count":3}`

const jsonOllamaEmbed = `{"model":"all-minilm","embeddings":[[0.010071029,-0.0017594862]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}`

const jsonResponses = `{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1","output":[{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"Thought."}]},{"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"output_text","text":"Hi there","annotations":[]}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":10},"total_tokens":123}}`

const jsonDetail = `{"detail":"Model not found"}`

const jsonError = `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`

type observed struct {
	out      string
	usage    Usage
	hasUsage bool
	tokens   int64
	produced bool
	finished bool
	err      string
}

func (o observed) String() string {
	return fmt.Sprintf("usage=%+v/%v tokens=%d produced=%v finished=%v err=%q out=%q",
		o.usage, o.hasUsage, o.tokens, o.produced, o.finished, o.err, o.out)
}

// feed writes chunks through a new Meter. Each chunk is written from a
// scratch buffer that is scribbled over afterwards, to catch a Meter that
// keeps references to the caller's bytes.
func feed(t testing.TB, f Format, strip bool, chunks [][]byte) observed {
	t.Helper()
	m := NewMeter(f, testCounter, testModel, strip)
	var out []byte
	var scratch []byte
	for _, ch := range chunks {
		scratch = append(scratch[:0], ch...)
		got := m.Write(scratch)
		if !strip || f != FormatSSE {
			if len(got) != len(scratch) || (len(got) > 0 && &got[0] != &scratch[0]) {
				t.Fatalf("Write did not return p itself")
			}
		}
		out = append(out, got...)
		for i := range scratch {
			scratch[i] = '#'
		}
	}
	out = append(out, m.Close()...)
	if again := m.Close(); again != nil {
		t.Fatalf("second Close returned %q", again)
	}
	u, ok := m.Usage()
	return observed{string(out), u, ok, m.OutputTokens(), m.Produced(), m.Finished(), m.Error()}
}

// splits returns in as one write, at every split into two writes, as 1-byte
// writes and at a few random split sets.
func splits(in string) [][][]byte {
	b := []byte(in)
	all := [][][]byte{{b}}
	for k := 0; k <= len(b); k++ {
		all = append(all, [][]byte{b[:k], b[k:]})
	}
	ones := make([][]byte, len(b))
	for i := range b {
		ones[i] = b[i : i+1]
	}
	all = append(all, ones)
	r := rand.New(rand.NewPCG(1, uint64(len(b))))
	for range 20 {
		var chunks [][]byte
		for rest := b; len(rest) > 0; {
			n := 1 + r.IntN(min(len(rest), 40))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		all = append(all, chunks)
	}
	return all
}

// checkSplits checks that every way of splitting in gives the same result
// as one write, and returns it.
func checkSplits(t *testing.T, f Format, strip bool, in string) observed {
	t.Helper()
	ways := splits(in)
	one := feed(t, f, strip, ways[0])
	for _, chunks := range ways[1:] {
		if got := feed(t, f, strip, chunks); got != one {
			lens := make([]int, len(chunks))
			for i, c := range chunks {
				lens[i] = len(c)
			}
			t.Fatalf("split %v:\n got %v\nwant %v", lens[:min(len(lens), 8)], got, one)
		}
	}
	return one
}

func textTokens(texts ...string) int64 {
	return testCounter.Text(testModel, strings.Join(texts, ""))
}

func docTokens(texts ...string) int64 {
	var n int64
	for _, s := range texts {
		n += testCounter.Text(testModel, s)
	}
	return n
}

func TestMeter(t *testing.T) {
	withUsage := sseOpenWebUI + sseUsageChunk + sseDone
	tests := []struct {
		name     string
		format   Format
		strip    bool
		in       string
		out      string // "" means in
		usage    Usage
		hasUsage bool
		tokens   int64
		finished bool
		err      string
	}{
		{name: "openwebui sse without usage", format: FormatSSE, in: sseOpenWebUI + sseDone,
			tokens: textTokens("The capital", " is Paris."), finished: true},
		{name: "openwebui sse with usage", format: FormatSSE, in: withUsage,
			usage: Usage{Input: 57, Output: 6, Cached: 32, Reported: true}, hasUsage: true,
			tokens: textTokens("The capital", " is Paris."), finished: true},
		{name: "usage chunk stripped", format: FormatSSE, strip: true, in: withUsage, out: sseOpenWebUI + sseDone,
			usage: Usage{Input: 57, Output: 6, Cached: 32, Reported: true}, hasUsage: true,
			tokens: textTokens("The capital", " is Paris."), finished: true},
		{name: "stripping leaves a stream without usage alone", format: FormatSSE, strip: true, in: sseOpenWebUI + sseDone,
			tokens: textTokens("The capital", " is Paris."), finished: true},
		{name: "crlf usage chunk stripped", format: FormatSSE, strip: true,
			in:    strings.ReplaceAll(withUsage, "\n", "\r\n"),
			out:   strings.ReplaceAll(sseOpenWebUI+sseDone, "\n", "\r\n"),
			usage: Usage{Input: 57, Output: 6, Cached: 32, Reported: true}, hasUsage: true,
			tokens: textTokens("The capital", " is Paris."), finished: true},
		{name: "cr-only stream is observed, not stripped", format: FormatSSE, strip: true,
			in:    strings.ReplaceAll(withUsage, "\n", "\r"),
			usage: Usage{Input: 57, Output: 6, Cached: 32, Reported: true}, hasUsage: true,
			tokens: textTokens("The capital", " is Paris."), finished: true},
		{name: "usage chunk inside a named event keeps the event's lines", format: FormatSSE, strip: true,
			in:    "event: chunk\n" + sseUsageChunk + sseDone,
			out:   "event: chunk\n\n" + sseDone,
			usage: Usage{Input: 57, Output: 6, Cached: 32, Reported: true}, hasUsage: true, finished: true},
		{name: "usage line inside a multi-line data field is kept", format: FormatSSE, strip: true,
			in:    "data: {\"a\":\n" + sseUsageChunk + sseDone,
			usage: Usage{Input: 57, Output: 6, Cached: 32, Reported: true}, hasUsage: true, finished: true},
		{name: "nothing dropped after a lone CR", format: FormatSSE, strip: true,
			in:    "event: chunk\r" + sseUsageChunk + sseDone,
			usage: Usage{Input: 57, Output: 6, Cached: 32, Reported: true}, hasUsage: true, finished: true},
		{name: "usage on a content chunk is kept", format: FormatSSE, strip: true, in: sseOllamaConverted,
			usage: Usage{Input: 26, Output: 2, Reported: true}, hasUsage: true, tokens: textTokens("Hi"), finished: true},
		{name: "tool calls", format: FormatSSE, in: sseToolCalls,
			tokens: textTokens("get_weather", `{"city":`, `"Paris"}`), finished: true},
		{name: "reasoning", format: FormatSSE, in: sseReasoning,
			tokens: textTokens("Think", " hard.", " Done"), finished: true},
		{name: "completions stripped", format: FormatSSE, strip: true, in: sseCompletions + sseCompletionsUsage + sseDone,
			out:   sseCompletions + sseDone,
			usage: Usage{Input: 4, Output: 2, Reported: true}, hasUsage: true, tokens: textTokens("Once", " upon"), finished: true},
		{name: "error chunk", format: FormatSSE, in: sseError,
			tokens: textTokens("Par"), err: "Rate limit reached for gpt-4o"},
		{name: "anthropic", format: FormatSSE, in: sseAnthropic,
			usage: Usage{Input: 130, Output: 15, Cached: 100, Reported: true}, hasUsage: true,
			tokens: textTokens("Let me see.", " Hello", "!", "search", `{"q": "x"}`), finished: true},
		{name: "anthropic with strip requested", format: FormatSSE, strip: true, in: sseAnthropic,
			usage: Usage{Input: 130, Output: 15, Cached: 100, Reported: true}, hasUsage: true,
			tokens: textTokens("Let me see.", " Hello", "!", "search", `{"q": "x"}`), finished: true},
		{name: "anthropic error", format: FormatSSE, in: sseAnthropicError,
			usage: Usage{Input: 12, Output: 1, Reported: true}, hasUsage: true, err: "Overloaded"},
		{name: "responses", format: FormatSSE, in: sseResponses,
			usage: Usage{Input: 36, Output: 87, Cached: 4, Reasoning: 80, Reported: true}, hasUsage: true,
			tokens: textTokens("Hi", " there"), finished: true},
		{name: "ollama chat", format: FormatNDJSON, in: ndjsonOllamaChat,
			usage: Usage{Input: 26, Output: 298, Reported: true}, hasUsage: true,
			tokens: textTokens("Hmm.", "The", " sky"), finished: true},
		{name: "ollama chat, strip ignored", format: FormatNDJSON, strip: true, in: ndjsonOllamaChat,
			usage: Usage{Input: 26, Output: 298, Reported: true}, hasUsage: true,
			tokens: textTokens("Hmm.", "The", " sky"), finished: true},
		{name: "ollama generate without final newline", format: FormatNDJSON, in: strings.TrimSuffix(ndjsonOllamaGenerate, "\n"),
			usage: Usage{Output: 290, Reported: true}, hasUsage: true,
			tokens: textTokens("Blue", " light"), finished: true},
		{name: "ollama tools and error", format: FormatNDJSON, in: ndjsonOllamaToolsAndError,
			tokens: textTokens("get_weather", `{"city":"Paris"}`), err: "model runner has unexpectedly stopped"},
		{name: "json chat completion", format: FormatJSON, in: jsonChatCompletion,
			usage: Usage{Input: 19, Output: 10, Reported: true}, hasUsage: true,
			tokens: docTokens("Hello! How can I help?"), finished: true},
		{name: "json completion", format: FormatJSON, in: jsonCompletion,
			usage: Usage{Input: 5, Output: 7, Reported: true}, hasUsage: true,
			tokens: docTokens("\n\nThis is a test."), finished: true},
		{name: "json embeddings", format: FormatJSON, in: jsonEmbeddings,
			usage: Usage{Input: 8, Output: 0, Reported: true}, hasUsage: true, finished: true},
		{name: "json anthropic", format: FormatJSON, in: jsonAnthropic,
			usage: Usage{Input: 30, Output: 5, Cached: 20, Reported: true}, hasUsage: true,
			tokens: docTokens("Hi!", "search", `{"q":"x"}`), finished: true},
		{name: "json ollama", format: FormatJSON, in: jsonOllama,
			usage: Usage{Input: 26, Output: 3, Reported: true}, hasUsage: true,
			tokens: docTokens("Blue."), finished: true},
		{name: "json ollama embed", format: FormatJSON, in: jsonOllamaEmbed,
			usage: Usage{Input: 8, Reported: true}, hasUsage: true, finished: true},
		{name: "json responses", format: FormatJSON, in: jsonResponses,
			usage: Usage{Input: 36, Output: 87, Reasoning: 10, Reported: true}, hasUsage: true,
			tokens: docTokens("Thought.", "get_weather", `{"city":"Paris"}`, "Hi there"), finished: true},
		{name: "json detail", format: FormatJSON, in: jsonDetail, finished: true, err: "Model not found"},
		{name: "json error", format: FormatJSON, in: jsonError, finished: true, err: "Incorrect API key provided"},
		{name: "json truncated", format: FormatJSON, in: jsonChatCompletion[:100]},
		{name: "unknown format passes through", format: FormatNone, strip: true, in: withUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkSplits(t, tt.format, tt.strip, tt.in)
			want := observed{
				out: tt.out, usage: tt.usage, hasUsage: tt.hasUsage, tokens: tt.tokens,
				produced: tt.tokens > 0, finished: tt.finished, err: tt.err,
			}
			if want.out == "" {
				want.out = tt.in
			}
			if got != want {
				t.Errorf("\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestMeterHoldsOnlyAnIncompleteLine(t *testing.T) {
	m := NewMeter(FormatSSE, testCounter, testModel, true)
	lines := []string{
		`data: {"choices":[{"delta":{"content":"a"}}]}` + "\n\n",
		`data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}` + "\n",
		"\n",
		": keep-alive\n\n",
		"data: [DONE]\n\n",
	}
	want := []string{lines[0], "", "", lines[3], lines[4]}
	for i, l := range lines {
		if got := string(m.Write([]byte(l))); got != want[i] {
			t.Errorf("Write(%q) = %q, want %q", l, got, want[i])
		}
	}
	// A partial data line is held until its end arrives.
	if got := m.Write([]byte(`data: {"x"`)); len(got) != 0 {
		t.Errorf("partial line forwarded: %q", got)
	}
	if got := string(m.Write([]byte(":1}\n\ndata: {"))); got != `data: {"x":1}`+"\n\n" {
		t.Errorf("completed line = %q", got)
	}
	if got := string(m.Close()); got != "data: {" {
		t.Errorf("Close = %q", got)
	}
}

func TestMeterLongLines(t *testing.T) {
	defer func(l, d, tl int) { maxLineLen, maxDocLen, docTailLen = l, d, tl }(maxLineLen, maxDocLen, docTailLen)
	maxLineLen, maxDocLen, docTailLen = 64, 256, 64

	// A too-long usage line is forwarded and not observed; the short
	// lines around it still are.
	long := `data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1},"pad":"` + strings.Repeat("x", 100) + `"}` + "\n\n"
	in := `data: {"choices":[{"delta":{"content":"a"}}]}` + "\n\n" + long + `data: {"choices":[{"delta":{"content":"b"}}]}` + "\n\n" + sseDone
	got := checkSplits(t, FormatSSE, true, in)
	want := observed{out: in, tokens: textTokens("a", "b"), produced: true, finished: true}
	if got != want {
		t.Errorf("\n got %v\nwant %v", got, want)
	}

	// A long unterminated line: forwarded once over the cap.
	m := NewMeter(FormatSSE, testCounter, testModel, true)
	var out []byte
	for range 10 {
		out = append(out, m.Write([]byte("data: xxxxxxxxxxxxxxxxxxxxxxx"))...)
	}
	if len(out) < 200 {
		t.Errorf("long line held back: %d bytes forwarded", len(out))
	}
	out = append(out, m.Close()...)
	if len(out) != 290 {
		t.Errorf("forwarded %d bytes, want 290", len(out))
	}

	// A JSON document over the cap: its trailing usage is still found.
	doc := `{"object":"list","data":[{"embedding":[` + strings.Repeat("0.1,", 200) + `0.1]}],"model":"m","usage":{"prompt_tokens":8,"total_tokens":8}}`
	got = checkSplits(t, FormatJSON, false, doc)
	want = observed{out: doc, usage: Usage{Input: 8, Reported: true}, hasUsage: true}
	if got != want {
		t.Errorf("\n got %v\nwant %v", got, want)
	}
	ollama := `{"model":"all-minilm","embeddings":[[` + strings.Repeat("0.1,", 200) + `0.1]],"total_duration":14143917,"prompt_eval_count":8}`
	got = checkSplits(t, FormatJSON, false, ollama)
	want = observed{out: ollama, usage: Usage{Input: 8, Reported: true}, hasUsage: true}
	if got != want {
		t.Errorf("\n got %v\nwant %v", got, want)
	}
}

func TestMeterCountsLongOutputIncrementally(t *testing.T) {
	words := strings.Fields(strings.Repeat("The quick brown fox jumps over the lazy dog, again and again. ", 40))
	var sse strings.Builder
	var whole strings.Builder
	for i, w := range words {
		if i > 0 {
			w = " " + w
		}
		whole.WriteString(w)
		fmt.Fprintf(&sse, "data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", w)
	}
	sse.WriteString(sseDone)
	m := NewMeter(FormatSSE, testCounter, testModel, false)
	m.Write([]byte(sse.String()))
	mid := m.OutputTokens()
	m.Close()
	got, want := m.OutputTokens(), testCounter.Text(testModel, whole.String())
	if mid != got {
		t.Errorf("OutputTokens before Close = %d, after = %d", mid, got)
	}
	if diff := got - want; diff < 0 || diff > want/50 {
		t.Errorf("OutputTokens = %d, counting the whole text gives %d", got, want)
	}
	if len(m.pend) != 0 || cap(m.pend) > 256 {
		t.Errorf("pending text buffer len %d cap %d", len(m.pend), cap(m.pend))
	}
}

func TestFormatFor(t *testing.T) {
	tests := []struct {
		ct   string
		want Format
	}{
		{"text/event-stream", FormatSSE},
		{"text/event-stream; charset=utf-8", FormatSSE},
		{"Text/Event-Stream", FormatSSE},
		{"application/x-ndjson", FormatNDJSON},
		{"application/x-ndjson; charset=utf-8", FormatNDJSON},
		{"application/json", FormatJSON},
		{" application/json ; charset=utf-8", FormatJSON},
		{"application/problem+json", FormatJSON},
		{"text/plain", FormatNone},
		{"text/html; charset=utf-8", FormatNone},
		{"audio/mpeg", FormatNone},
		{"", FormatNone},
		{"+json", FormatNone},
	}
	for _, tt := range tests {
		if got := FormatFor(tt.ct); got != tt.want {
			t.Errorf("FormatFor(%q) = %v, want %v", tt.ct, got, tt.want)
		}
	}
	for f, s := range map[Format]string{FormatNone: "none", FormatJSON: "json", FormatSSE: "sse", FormatNDJSON: "ndjson"} {
		if f.String() != s {
			t.Errorf("%d.String() = %q", f, f.String())
		}
	}
}

func TestMeterWriteAfterClose(t *testing.T) {
	m := NewMeter(FormatSSE, nil, testModel, true)
	m.Close()
	p := []byte(sseUsageChunk)
	if got := m.Write(p); !bytes.Equal(got, p) {
		t.Errorf("Write after Close = %q", got)
	}
	if _, ok := m.Usage(); ok {
		t.Error("Write after Close was observed")
	}
}

func BenchmarkMeterSSE(b *testing.B) {
	var chunks [][]byte
	for i := range 500 {
		chunks = append(chunks, fmt.Appendf(nil,
			`data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" word%d"},"logprobs":null,"finish_reason":null}],"usage":null}`+"\n\n", i))
	}
	chunks = append(chunks, []byte(sseUsageChunk), []byte(sseDone))
	for _, strip := range []bool{false, true} {
		b.Run(fmt.Sprintf("strip=%v", strip), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := NewMeter(FormatSSE, testCounter, testModel, strip)
				for _, c := range chunks {
					m.Write(c)
				}
				m.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(chunks)), "ns/chunk")
		})
	}
}
