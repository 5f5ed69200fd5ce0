// Package fakeowui provides test doubles for end-to-end tests of the proxy:
// Provider, a model provider speaking the OpenAI, Ollama and Anthropic wire
// formats, and OpenWebUI, a fake OpenWebUI backend with users, API keys and
// the model endpoints the proxy meters. Both speak the formats described in
// the research notes (/work/shared/research/openwebui-flow.md, cited as §n)
// and record what they receive, for assertions.
//
// Typical use:
//
//	p := fakeowui.NewProvider(t)
//	o := fakeowui.NewOpenWebUI(t, p)
//	jwt, key := o.AddUser("u1", "alice@example.com", "Alice", "user")
//	// point the proxy at o.URL() and send requests with jwt or key
package fakeowui

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// Request is a recorded HTTP request.
type Request struct {
	Method string
	Path   string
	Query  string // raw query, without '?'
	Header http.Header
	Body   []byte
}

func record(r *http.Request) (Request, error) {
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	return Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.RawQuery,
		Header: r.Header.Clone(),
		Body:   body,
	}, err
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own literal shapes are marshalled
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// stream writes a response piece by piece, flushing each piece so a test can
// observe the spacing of chunks through a proxy.
type stream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	ctx  context.Context
	stop <-chan struct{} // the fake is closing
}

func newStream(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) *stream {
	return &stream{w: w, rc: http.NewResponseController(w), ctx: r.Context(), stop: stop}
}

// start sends the status and headers at once, as streaming servers do.
func (s *stream) start(contentType string) {
	s.w.Header().Set("Content-Type", contentType)
	s.w.Header().Set("Cache-Control", "no-cache")
	s.w.WriteHeader(http.StatusOK)
	s.rc.Flush()
}

func (s *stream) write(b []byte) bool {
	if _, err := s.w.Write(b); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

// sse writes one server-sent event; event may be empty.
func (s *stream) sse(event string, data []byte) bool {
	var b bytes.Buffer
	if event != "" {
		b.WriteString("event: " + event + "\n")
	}
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	return s.write(b.Bytes())
}

// wait sleeps for d; false when the client left or the fake closed.
func (s *stream) wait(d time.Duration) bool {
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	case <-s.stop:
		return false
	}
}

// splitText cuts text into n pieces of about equal rune counts; pieces may
// be empty when text is short.
func splitText(text string, n int) []string {
	n = max(n, 1)
	rs := []rune(text)
	parts := make([]string, n)
	for i := range n {
		parts[i] = string(rs[i*len(rs)/n : (i+1)*len(rs)/n])
	}
	return parts
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return strings.Join([]string{h[:8], h[8:12], h[12:16], h[16:20], h[20:]}, "-")
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
