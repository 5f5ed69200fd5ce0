package fakeowui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// Usage is the token report a Provider sends. Numbers are reported
// verbatim in every format; total_tokens is the sum of the two counts.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	CachedTokens     int // prompt_tokens_details.cached_tokens / cache_read_input_tokens; omitted from OpenAI usage when 0
	ReasoningTokens  int // completion_tokens_details.reasoning_tokens; omitted when 0
}

// Reply is how a Provider answers. The zero value answers empty text with
// zero usage; start from DefaultReply.
type Reply struct {
	Text      string        // the assistant's answer
	Chunks    int           // content pieces in a stream (at least 1)
	Delay     time.Duration // pause between content pieces of a stream
	Usage     Usage         // reported usage
	OmitUsage bool          // never report usage, even when asked to
	Status    int           // >= 400: fail with this status and the format's error body
	Message   string        // error message; default the status text
	// Hang stops before the first piece until Release, the client leaving
	// or Close. A stream has sent its 200 and headers by then.
	Hang bool
}

// DefaultReply is the answer of a new Provider.
func DefaultReply() Reply {
	return Reply{
		Text:   "Hello from the fake provider.",
		Chunks: 3,
		Usage:  Usage{PromptTokens: 12, CompletionTokens: 7},
	}
}

// Provider is a fake model provider. It serves:
//
//   - OpenAI: POST /v1/chat/completions and /chat/completions (JSON, or SSE
//     when "stream": true; the usage chunk only with
//     stream_options.include_usage, §3a, §9), POST /v1/embeddings and
//     /embeddings;
//   - Ollama: POST /api/chat and /api/generate (NDJSON unless
//     "stream": false; counts in the final done:true object, §1a);
//   - OpenAI audio: POST /v1/audio/transcriptions and /translations
//     (multipart, read and dropped; {"text": Reply.Text});
//   - Anthropic: POST /v1/messages (SSE events or JSON; input_tokens in
//     message_start, output_tokens in message_delta, §9).
//
// Other paths answer 404. Every request is recorded.
type Provider struct {
	srv  *httptest.Server
	stop chan struct{}

	mu       sync.Mutex
	reply    Reply
	release  chan struct{}
	requests []Request
	closed   bool
}

// NewProvider starts a Provider answering DefaultReply. It is closed when
// tb's test ends (tb may be nil; then call Close).
func NewProvider(tb testing.TB) *Provider {
	p := &Provider{stop: make(chan struct{}), reply: DefaultReply(), release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", p.chat)
	mux.HandleFunc("POST /chat/completions", p.chat)
	mux.HandleFunc("POST /v1/embeddings", p.embeddings)
	mux.HandleFunc("POST /embeddings", p.embeddings)
	mux.HandleFunc("POST /api/chat", p.ollama)
	mux.HandleFunc("POST /api/generate", p.ollama)
	mux.HandleFunc("POST /v1/messages", p.anthropic)
	mux.HandleFunc("POST /v1/audio/transcriptions", p.audio)
	mux.HandleFunc("POST /v1/audio/translations", p.audio)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": "not found: " + r.URL.Path}})
	})
	p.srv = httptest.NewServer(p.recording(mux))
	if tb != nil {
		tb.Cleanup(p.Close)
	}
	return p
}

// URL is the server's base URL, without /v1.
func (p *Provider) URL() string { return p.srv.URL }

// SetReply sets the answer to requests that arrive from now on.
func (p *Provider) SetReply(r Reply) {
	p.mu.Lock()
	p.reply = r
	p.mu.Unlock()
}

// Release lets every hanging request go on.
func (p *Provider) Release() {
	p.mu.Lock()
	close(p.release)
	p.release = make(chan struct{})
	p.mu.Unlock()
}

// Requests returns the requests received so far, oldest first.
func (p *Provider) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// Close ends hanging and streaming requests and stops the server.
func (p *Provider) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	p.mu.Unlock()
	p.srv.Close()
}

func (p *Provider) recording(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, err := record(r)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.requests = append(p.requests, rec)
		p.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// begin reads the request and the reply for it. It answers errors itself
// (errBody builds the format's error body) and hangs when asked; ok is false
// when the handler must stop.
func (p *Provider) begin(w http.ResponseWriter, r *http.Request, raw []byte, streaming bool, contentType string,
	errBody func(string) any) (body gjson.Result, reply Reply, s *stream, ok bool) {
	if !gjson.ValidBytes(raw) {
		writeJSON(w, http.StatusBadRequest, errBody("invalid JSON body"))
		return gjson.Result{}, Reply{}, nil, false
	}
	body = gjson.ParseBytes(raw)
	p.mu.Lock()
	reply, release := p.reply, p.release
	p.mu.Unlock()

	if reply.Status >= 400 {
		msg := reply.Message
		if msg == "" {
			msg = http.StatusText(reply.Status)
		}
		writeJSON(w, reply.Status, errBody(msg))
		return body, reply, nil, false
	}
	s = newStream(w, r, p.stop)
	if streaming {
		s.start(contentType)
	}
	if reply.Hang {
		select {
		case <-release:
		case <-r.Context().Done():
			return body, reply, nil, false
		case <-p.stop:
			return body, reply, nil, false
		}
	}
	return body, reply, s, true
}

// --- OpenAI (§3a, §3b, §9) ---

func openAIError(msg string) any {
	return map[string]any{"error": map[string]any{"message": msg, "type": "server_error", "param": nil, "code": nil}}
}

func (u Usage) openAI() map[string]any {
	m := map[string]any{
		"prompt_tokens":     u.PromptTokens,
		"completion_tokens": u.CompletionTokens,
		"total_tokens":      u.PromptTokens + u.CompletionTokens,
	}
	if u.CachedTokens > 0 {
		m["prompt_tokens_details"] = map[string]any{"cached_tokens": u.CachedTokens}
	}
	if u.ReasoningTokens > 0 {
		m["completion_tokens_details"] = map[string]any{"reasoning_tokens": u.ReasoningTokens}
	}
	return m
}

func (p *Provider) chat(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	streaming := gjson.GetBytes(raw, "stream").Bool()
	body, reply, s, ok := p.begin(w, r, raw, streaming, "text/event-stream", openAIError)
	if !ok {
		return
	}
	id, created, model := "chatcmpl-"+randomHex(12), time.Now().Unix(), body.Get("model").String()

	if !streaming {
		resp := map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": model,
			"choices": []any{map[string]any{
				"index":         0,
				"message":       map[string]any{"role": "assistant", "content": reply.Text, "refusal": nil},
				"logprobs":      nil,
				"finish_reason": "stop",
			}},
			"system_fingerprint": nil,
		}
		if !reply.OmitUsage {
			resp["usage"] = reply.Usage.openAI()
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}

	includeUsage := body.Get("stream_options.include_usage").Bool()
	chunk := func(choices []any, usage any) []byte {
		c := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
			"system_fingerprint": nil, "choices": choices}
		if includeUsage {
			c["usage"] = usage // null on every chunk but the last, as OpenAI does
		}
		return mustJSON(c)
	}
	choice := func(delta map[string]any, finish any) []any {
		return []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}}
	}
	for i, part := range splitText(reply.Text, reply.Chunks) {
		delta := map[string]any{"content": part}
		if i == 0 {
			delta["role"] = "assistant"
		} else if !s.wait(reply.Delay) {
			return
		}
		if !s.sse("", chunk(choice(delta, nil), nil)) {
			return
		}
	}
	if !s.sse("", chunk(choice(map[string]any{}, "stop"), nil)) {
		return
	}
	if includeUsage && !reply.OmitUsage {
		if !s.sse("", chunk([]any{}, reply.Usage.openAI())) {
			return
		}
	}
	s.sse("", []byte("[DONE]"))
}

func (p *Provider) embeddings(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	body, reply, _, ok := p.begin(w, r, raw, false, "", openAIError)
	if !ok {
		return
	}
	n := 1
	if in := body.Get("input"); in.IsArray() {
		n = len(in.Array())
	}
	data := make([]any, n)
	for i := range data {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": []float64{0.1, -0.2, 0.3}}
	}
	resp := map[string]any{"object": "list", "data": data, "model": body.Get("model").String()}
	if !reply.OmitUsage {
		resp["usage"] = map[string]any{"prompt_tokens": reply.Usage.PromptTokens, "total_tokens": reply.Usage.PromptTokens}
	}
	writeJSON(w, http.StatusOK, resp)
}

// audio answers a transcription or translation: {"text": ...}.
func (p *Provider) audio(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	p.mu.Lock()
	reply := p.reply
	p.mu.Unlock()
	if reply.Status >= 400 {
		msg := reply.Message
		if msg == "" {
			msg = http.StatusText(reply.Status)
		}
		writeJSON(w, reply.Status, openAIError(msg))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"text": reply.Text})
}

// --- Ollama (§1a, §3a) ---

func ollamaError(msg string) any { return map[string]any{"error": msg} }

func (p *Provider) ollama(w http.ResponseWriter, r *http.Request) {
	// Ollama streams unless told "stream": false.
	raw, _ := io.ReadAll(r.Body)
	st := gjson.GetBytes(raw, "stream")
	streaming := !st.Exists() || st.Bool()
	body, reply, s, ok := p.begin(w, r, raw, streaming, "application/x-ndjson", ollamaError)
	if !ok {
		return
	}
	generate := r.URL.Path == "/api/generate"
	model := body.Get("model").String()
	obj := func(content string, done bool) map[string]any {
		m := map[string]any{"model": model, "created_at": time.Now().UTC().Format(time.RFC3339Nano), "done": done}
		if generate {
			m["response"] = content
		} else {
			m["message"] = map[string]any{"role": "assistant", "content": content}
		}
		if done {
			m["done_reason"] = "stop"
			m["total_duration"] = 1500000000
			m["load_duration"] = 1000000
			m["prompt_eval_duration"] = 200000000
			m["eval_duration"] = 1200000000
			if !reply.OmitUsage {
				m["prompt_eval_count"] = reply.Usage.PromptTokens
				m["eval_count"] = reply.Usage.CompletionTokens
			}
			if generate {
				m["context"] = []int{1, 2, 3}
			}
		}
		return m
	}
	if !streaming {
		writeJSON(w, http.StatusOK, obj(reply.Text, true))
		return
	}
	for i, part := range splitText(reply.Text, reply.Chunks) {
		if i > 0 && !s.wait(reply.Delay) {
			return
		}
		if !s.write(append(mustJSON(obj(part, false)), '\n')) {
			return
		}
	}
	s.write(append(mustJSON(obj("", true)), '\n'))
}

// --- Anthropic Messages (§1a, §9) ---

func anthropicError(msg string) any {
	return map[string]any{"type": "error", "error": map[string]any{"type": "api_error", "message": msg}}
}

func (p *Provider) anthropic(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	streaming := gjson.GetBytes(raw, "stream").Bool()
	body, reply, s, ok := p.begin(w, r, raw, streaming, "text/event-stream", anthropicError)
	if !ok {
		return
	}
	id, model := "msg_"+randomHex(12), body.Get("model").String()
	u := reply.Usage
	usage := func(output int) map[string]any {
		return map[string]any{"input_tokens": u.PromptTokens, "output_tokens": output,
			"cache_creation_input_tokens": 0, "cache_read_input_tokens": u.CachedTokens}
	}
	message := map[string]any{"id": id, "type": "message", "role": "assistant", "model": model,
		"content": []any{map[string]any{"type": "text", "text": reply.Text}}, "stop_reason": "end_turn", "stop_sequence": nil}
	if !reply.OmitUsage {
		message["usage"] = usage(u.CompletionTokens)
	}
	if !streaming {
		writeJSON(w, http.StatusOK, message)
		return
	}

	message["content"], message["stop_reason"] = []any{}, nil
	if !reply.OmitUsage {
		message["usage"] = usage(1) // the API reports a running count here
	}
	event := func(typ string, m map[string]any) bool {
		m["type"] = typ
		return s.sse(typ, mustJSON(m))
	}
	if !event("message_start", map[string]any{"message": message}) ||
		!event("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "text", "text": ""}}) ||
		!event("ping", map[string]any{}) {
		return
	}
	for i, part := range splitText(reply.Text, reply.Chunks) {
		if i > 0 && !s.wait(reply.Delay) {
			return
		}
		if !event("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": part}}) {
			return
		}
	}
	delta := map[string]any{"delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil}}
	if !reply.OmitUsage {
		delta["usage"] = map[string]any{"output_tokens": u.CompletionTokens}
	}
	if !event("content_block_stop", map[string]any{"index": 0}) || !event("message_delta", delta) {
		return
	}
	event("message_stop", map[string]any{})
}
