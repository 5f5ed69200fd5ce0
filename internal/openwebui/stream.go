package openwebui

import (
	"bytes"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/openwebui-monitor/owmon/internal/tokens"
	"github.com/tidwall/gjson"
)

// Format is the wire format of a model answer.
type Format int

const (
	// FormatNone is a body the Meter does not read; it passes through.
	FormatNone Format = iota
	// FormatJSON is one JSON document: an OpenAI chat.completion,
	// completion, embeddings list or Responses object, an Anthropic
	// message, or an Ollama answer with "stream": false.
	FormatJSON
	// FormatSSE is a text/event-stream: OpenAI-style chunks ending with
	// [DONE], OpenWebUI's extra lines, Responses API and Anthropic events.
	FormatSSE
	// FormatNDJSON is Ollama's native stream: one JSON object a line.
	FormatNDJSON
)

func (f Format) String() string {
	switch f {
	case FormatJSON:
		return "json"
	case FormatSSE:
		return "sse"
	case FormatNDJSON:
		return "ndjson"
	}
	return "none"
}

// FormatFor maps a response Content-Type to the Format to meter it with.
func FormatFor(contentType string) Format {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	switch {
	case strings.EqualFold(mt, "text/event-stream"):
		return FormatSSE
	case strings.EqualFold(mt, "application/x-ndjson"), strings.EqualFold(mt, "application/ndjson"),
		strings.EqualFold(mt, "application/jsonl"), strings.EqualFold(mt, "application/x-jsonlines"):
		return FormatNDJSON
	case strings.EqualFold(mt, "application/json"),
		len(mt) > 5 && strings.EqualFold(mt[len(mt)-5:], "+json"):
		return FormatJSON
	}
	return FormatNone
}

// Limits on what a Meter keeps. Variables so that tests can lower them.
var (
	// A longer line is forwarded as it comes and neither observed nor
	// stripped.
	maxLineLen = 1 << 20
	// A longer JSON document is not parsed; only its last docTailLen
	// bytes are kept, to find a trailing "usage" object.
	maxDocLen  = 4 << 20
	docTailLen = 64 << 10
)

const (
	maxErrLen = 1024
	// Output text is counted in pieces of at most this many bytes: short
	// enough that tokens.Counter does not cache them, cut before white
	// space so that few tokens are split.
	countPiece = 64
	// A line buffer that grew beyond this is dropped after use.
	keepBuf = 64 << 10
)

var (
	dataPrefix = []byte("data:")
	doneData   = []byte("[DONE]")
	bom        = []byte("\uFEFF")
)

// Meter watches a model answer as it passes to the client, without holding
// it: Write returns the bytes to forward at once, and the observations
// (Usage, OutputTokens, Produced, Error, Finished) grow as it goes; for
// FormatJSON they are available after Close. A Meter is not safe for
// concurrent use.
type Meter struct {
	format  Format
	counter *tokens.Counter
	model   string
	strip   bool
	closed  bool

	// The line being received, when it began in an earlier Write: its
	// bytes so far, which are not yet forwarded when stripping.
	part     []byte
	skipping bool // the line is too long: forwarded, not observed
	crEnd    bool // the last line ended in '\r': a '\n' next belongs to it
	crDrop   bool // and that line was dropped
	// A line ended in a lone '\r'. Nothing is dropped after that: a
	// dropped line could otherwise join such a '\r' to a later '\n' and
	// merge two line endings. Streams use "\n" or "\r\n" in practice.
	loneCR  bool
	started bool // a line was seen (for a leading BOM)
	// SSE event state for stripping.
	eventStart bool // the next line begins an event
	dropBlank  bool // the blank line ending a dropped event is due
	eventData  bool // the event has a data line already: keep the rest
	out        []byte

	doc     []byte // FormatJSON: the document, or its tail once over maxDocLen
	docOver bool

	pend     []byte // output text not yet counted
	output   int64
	produced bool
	finished bool
	errMsg   string

	usage    Usage
	hasUsage bool
	anth     anthropicUsage
}

// NewMeter returns a Meter for an answer in format f from model, whose
// tokens counter counts (nil: a shared counter). stripUsage removes the
// final usage-only SSE chunk, for a client that did not ask for it when
// the request was edited with InjectIncludeUsage; it applies to FormatSSE
// only.
func NewMeter(f Format, counter *tokens.Counter, model string, stripUsage bool) *Meter {
	if counter == nil {
		counter = fallbackCounter
	}
	return &Meter{
		format:     f,
		counter:    counter,
		model:      model,
		strip:      stripUsage && f == FormatSSE,
		eventStart: true,
	}
}

// Write observes p, the next bytes of the answer, and returns the bytes to
// forward now. Without stripping that is p itself. When stripping it is p
// less any dropped usage chunk, with a line held back by earlier writes in
// front and an incomplete last line held back for the next; the
// returned slice may be the Meter's own buffer, valid until the next call.
// Every byte written is returned exactly once, in order, by Write or Close.
func (m *Meter) Write(p []byte) []byte {
	if len(p) == 0 || m.closed {
		return p
	}
	switch m.format {
	case FormatJSON:
		m.keepDoc(p)
	case FormatSSE, FormatNDJSON:
		if m.strip {
			return m.scan(p)
		}
		m.scan(p)
	}
	return p
}

// Close ends the answer and returns what Write still held: a last line
// that had no line ending. For FormatJSON it parses the document.
func (m *Meter) Close() []byte {
	if m.closed {
		return nil
	}
	m.closed = true
	var out []byte
	switch m.format {
	case FormatSSE, FormatNDJSON:
		if len(m.part) > 0 && !m.skipping {
			drop := m.line(m.part)
			if m.strip && !drop {
				out = m.part
			}
		}
		m.part, m.skipping = nil, false
	case FormatJSON:
		m.closeDoc()
	}
	m.countPending(true)
	return out
}

// Usage returns the usage the provider reported, if it did: the last report
// of an OpenAI-style stream; for Anthropic, message_start's input combined
// with message_delta's (cumulative) output, with cache reads and writes
// counted in Input; Ollama's final counts; a JSON answer's "usage".
func (m *Meter) Usage() (Usage, bool) { return m.usage, m.hasUsage }

// OutputTokens counts the text produced so far (content, reasoning, tool
// calls), for answers whose provider reported no usage or that were cut
// short.
func (m *Meter) OutputTokens() int64 {
	return m.output + m.counter.Text(m.model, string(m.pend))
}

// Produced reports whether any output text was seen.
func (m *Meter) Produced() bool { return m.produced }

// Finished reports whether the answer reached its normal end: [DONE],
// Anthropic's message_stop, a finished Responses event, Ollama's done
// object, or a complete JSON document.
func (m *Meter) Finished() bool { return m.finished }

// Error returns the first error message the answer carried, if any.
func (m *Meter) Error() string { return m.errMsg }

// scan splits p into lines, observes complete ones and, when stripping,
// builds the output without the dropped ones.
func (m *Meter) scan(p []byte) []byte {
	sse := m.format == FormatSSE
	m.out = m.out[:0]
	mark := 0 // p[mark:] is still to be forwarded, after m.out
	// cut drops p[a:b] from the output.
	cut := func(a, b int) {
		if len(m.out) > 0 || mark != a {
			m.out = append(m.out, p[mark:a]...)
		}
		mark = b
	}
	i := 0
	if m.crEnd {
		m.crEnd = false
		if p[0] == '\n' {
			if m.crDrop {
				cut(0, 1)
			}
			i = 1
		} else {
			m.loneCR = true
		}
	}
	tail := len(p) // p[tail:] is held back
	for i < len(p) {
		rest := p[i:]
		end, next, crLast := lineEnd(rest, sse)
		if end < 0 {
			switch {
			case m.skipping:
			case len(m.part)+len(rest) > maxLineLen:
				if m.strip {
					m.out = append(m.out, m.part...) // held bytes go first
				}
				m.releasePart()
				m.skipping = true
			default:
				m.part = append(m.part, rest...)
				if m.strip {
					tail = i
				}
			}
			break
		}
		drop := false
		switch {
		case m.skipping:
			m.skipping = false
			m.longLine()
		case len(m.part) > 0:
			held := len(m.part)
			if held+end > maxLineLen {
				m.longLine()
			} else {
				m.part = append(m.part, rest[:end]...)
				drop = m.line(m.part)
			}
			if m.strip {
				if drop {
					cut(i, i+next)
				} else {
					m.out = append(m.out, m.part[:held]...)
				}
			}
			m.releasePart()
		default:
			if end > maxLineLen {
				m.longLine()
			} else if drop = m.line(rest[:end]); drop {
				cut(i, i+next)
			}
		}
		if crLast {
			m.crEnd, m.crDrop = true, drop
		}
		if !crLast && next == end+1 && rest[end] == '\r' {
			m.loneCR = true
		}
		i += next
	}
	if !m.strip {
		return p
	}
	if len(m.out) == 0 {
		return p[mark:tail]
	}
	m.out = append(m.out, p[mark:tail]...)
	return m.out
}

// lineEnd finds the end of the first line of b: the line is b[:end] and the
// next begins at b[next:]; end is -1 when b holds no line ending. SSE lines
// end in "\r\n", "\n" or "\r"; crLast says b ends in a '\r' that a '\n' in
// the next write may complete.
func lineEnd(b []byte, sse bool) (end, next int, crLast bool) {
	n := bytes.IndexByte(b, '\n')
	if sse {
		lim := n
		if n < 0 {
			lim = len(b)
		}
		if r := bytes.IndexByte(b[:lim], '\r'); r >= 0 {
			switch {
			case r+1 == len(b):
				return r, r + 1, true
			case b[r+1] == '\n':
				return r, r + 2, false
			}
			return r, r + 1, false
		}
	}
	if n < 0 {
		return -1, -1, false
	}
	return n, n + 1, false
}

func (m *Meter) releasePart() {
	if cap(m.part) > keepBuf {
		m.part = nil
	} else {
		m.part = m.part[:0]
	}
}

// longLine notes a line too long to observe.
func (m *Meter) longLine() {
	m.started = true
	m.eventStart, m.dropBlank, m.eventData = false, false, true
}

// line observes one complete line (without its ending) and says whether to
// drop it.
func (m *Meter) line(l []byte) bool {
	if !m.started {
		m.started = true
		l = bytes.TrimPrefix(l, bom)
	}
	if m.format == FormatNDJSON {
		m.observe(l)
		return false
	}
	if len(l) == 0 {
		drop := m.dropBlank
		m.eventStart, m.dropBlank, m.eventData = true, false, false
		return drop
	}
	first := m.eventStart
	m.eventStart, m.dropBlank = false, false
	data, ok := bytes.CutPrefix(l, dataPrefix)
	if !ok {
		return false // a comment, event:, id: or retry:
	}
	// A data line is dropped only as the first of its event: later ones
	// belong to a multi-line data field. (One after it cannot be waited
	// for; OpenAI-style streams send a single data line an event.)
	if m.observe(data) && m.strip && !m.loneCR && !m.eventData {
		// Drop the event's blank line too, unless lines of the event
		// were already forwarded: they need it to end.
		m.dropBlank = first
		return true
	}
	m.eventData = true
	return false
}

// observe reads one JSON chunk (an SSE data field or an NDJSON line) and
// reports whether it is an OpenAI usage-only chunk: non-null "usage" and
// an empty "choices".
func (m *Meter) observe(b []byte) (usageOnly bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return false
	}
	if b[0] != '{' {
		if bytes.Equal(b, doneData) {
			m.finished = true
		}
		return false
	}
	// A view, not a copy: no Result outlives this call, and retained
	// strings are cloned.
	s := unsafe.String(unsafe.SliceData(b), len(b))
	if !gjson.Valid(s) {
		return false
	}
	root := gjson.Parse(s)
	var typ, choices, usage, errv, delta, message, response, block, done, thinking gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "type":
			typ = v
		case "choices":
			choices = v
		case "usage":
			usage = v
		case "error":
			errv = v
		case "delta":
			delta = v
		case "message":
			message = v
		case "response":
			response = v
		case "content_block":
			block = v
		case "done":
			done = v
		case "thinking":
			thinking = v
		}
		return true
	})
	t := ""
	if typ.Type == gjson.String {
		t = typ.Str
	}
	switch {
	case t == "":
		// OpenAI chunk, Ollama line, or one of OpenWebUI's own lines.
		n := 0
		choices.ForEach(func(_, c gjson.Result) bool {
			n++
			m.choice(c, false)
			return true
		})
		if !isNull(usage) {
			if u, err := ParseUsage(usage, "usage"); err == nil && u.Reported {
				m.usage, m.hasUsage = u, true
			}
			usageOnly = choices.IsArray() && n == 0
		}
		if message.IsObject() {
			m.ollamaMessage(message, false)
		}
		if response.Type == gjson.String {
			m.addText(response.Str)
		}
		if thinking.Type == gjson.String {
			m.addText(thinking.Str)
		}
		if done.Type == gjson.True {
			m.finished = true
			if u, err := ParseUsage(root, "ollama"); err == nil && u.Reported {
				m.usage, m.hasUsage = u, true
			}
		}
		if !isNull(errv) {
			m.setError(errv)
		}
	case t == "error":
		if isNull(errv) {
			m.setError(root) // Responses: {"type":"error","message":…}
		} else {
			m.setError(errv) // Anthropic: {"type":"error","error":{…}}
		}
	case strings.HasPrefix(t, "response."):
		m.responsesEvent(t, delta, response)
	default:
		m.anthropicEvent(t, message, delta, block, usage)
	}
	return usageOnly
}

// choice reads an OpenAI choice: a stream delta, a message, or a
// completion's text.
func (m *Meter) choice(c gjson.Result, whole bool) {
	c.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "delta", "message":
			m.openaiMessage(v, whole)
		case "text":
			m.text(v, whole)
		}
		return true
	})
}

func (m *Meter) openaiMessage(msg gjson.Result, whole bool) {
	msg.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "content":
			if v.IsArray() {
				v.ForEach(func(_, part gjson.Result) bool {
					m.text(part.Get("text"), whole)
					return true
				})
			} else {
				m.text(v, whole)
			}
		case "reasoning_content", "reasoning", "refusal":
			m.text(v, whole)
		case "tool_calls":
			v.ForEach(func(_, call gjson.Result) bool {
				m.function(call.Get("function"), whole)
				return true
			})
		case "function_call":
			m.function(v, whole)
		}
		return true
	})
}

func (m *Meter) function(fn gjson.Result, whole bool) {
	fn.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "name":
			m.text(v, whole)
		case "arguments":
			if v.IsObject() { // Ollama sends arguments as an object
				m.raw(v, whole)
			} else {
				m.text(v, whole)
			}
		}
		return true
	})
}

// ollamaMessage reads Ollama's message: content, thinking, tool calls.
func (m *Meter) ollamaMessage(msg gjson.Result, whole bool) {
	msg.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "content", "thinking":
			m.text(v, whole)
		case "tool_calls":
			v.ForEach(func(_, call gjson.Result) bool {
				m.function(call.Get("function"), whole)
				return true
			})
		}
		return true
	})
}

// Responses API delta events that carry output text.
var responsesDeltas = map[string]bool{
	"response.output_text.delta":                 true,
	"response.refusal.delta":                     true,
	"response.reasoning_text.delta":              true,
	"response.reasoning_summary_text.delta":      true,
	"response.function_call_arguments.delta":     true,
	"response.custom_tool_call_input.delta":      true,
	"response.mcp_call_arguments.delta":          true,
	"response.code_interpreter_call_code.delta":  true,
	"response.output_audio_transcript.delta":     true,
	"response.audio.transcript.delta":            true,
	"response.reasoning_summary_part.text.delta": true,
}

func (m *Meter) responsesEvent(t string, delta, response gjson.Result) {
	switch t {
	case "response.completed", "response.incomplete", "response.failed":
		m.finished = true
		if u, err := ParseUsage(response.Get("usage"), "response.usage"); err == nil && u.Reported {
			m.usage, m.hasUsage = u, true
		}
		if e := response.Get("error"); !isNull(e) {
			m.setError(e)
		}
	default:
		if responsesDeltas[t] && delta.Type == gjson.String {
			m.addText(delta.Str)
		}
	}
}

func (m *Meter) anthropicEvent(t string, message, delta, block, usage gjson.Result) {
	switch t {
	case "message_start":
		m.anthApply(message.Get("usage"))
	case "content_block_start":
		block.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "text", "thinking", "name":
				m.text(v, false)
			}
			return true
		})
	case "content_block_delta":
		delta.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "text", "thinking", "partial_json":
				m.text(v, false)
			}
			return true
		})
	case "message_delta":
		m.anthApply(usage)
	case "message_stop":
		m.finished = true
	}
}

func (m *Meter) anthApply(u gjson.Result) {
	if m.anth.apply(u) {
		m.usage, m.hasUsage = m.anth.usage(), true
	}
}

// anthropicUsage merges Anthropic's usage reports: later fields replace
// earlier ones (message_delta's counts are cumulative).
type anthropicUsage struct {
	in, out, cacheWrite, cacheRead int64
	hasIn, hasOut                  bool
}

// apply merges u and reports whether the usage now names input or output.
func (a *anthropicUsage) apply(u gjson.Result) bool {
	u.ForEach(func(k, v gjson.Result) bool {
		n, err := Count(v)
		if err != nil {
			return true
		}
		switch k.Str {
		case "input_tokens":
			a.in, a.hasIn = n, true
		case "output_tokens":
			a.out, a.hasOut = n, true
		case "cache_creation_input_tokens":
			a.cacheWrite = n
		case "cache_read_input_tokens":
			a.cacheRead = n
		}
		return true
	})
	return a.hasIn || a.hasOut
}

// usage counts cache reads and writes in Input, as OpenAI's prompt_tokens
// do; Anthropic's input_tokens leaves them out.
func (a *anthropicUsage) usage() Usage {
	return Usage{
		Input:    satAdd(satAdd(a.in, a.cacheWrite), a.cacheRead),
		Output:   a.out,
		Cached:   a.cacheRead,
		Reported: a.hasIn || a.hasOut,
	}
}

func (m *Meter) setError(v gjson.Result) {
	if m.errMsg != "" {
		return
	}
	var msg string
	switch {
	case v.Type == gjson.String:
		msg = v.Str
	case v.IsObject():
		for _, k := range [...]string{"message", "detail", "error.message"} {
			if f := v.Get(k); f.Type == gjson.String && f.Str != "" {
				msg = f.Str
				break
			}
		}
		if msg == "" {
			msg = v.Raw
		}
	default:
		msg = v.Raw
	}
	if len(msg) > maxErrLen {
		cut := maxErrLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	m.errMsg = strings.Clone(msg)
}

// text counts v when it is a string: incrementally for streams, at once for
// a whole document.
func (m *Meter) text(v gjson.Result, whole bool) {
	if v.Type != gjson.String || v.Str == "" {
		return
	}
	if whole {
		m.produced = true
		m.output += m.counter.Text(m.model, v.Str)
		return
	}
	m.addText(v.Str)
}

// raw counts the JSON text of v, e.g. tool arguments sent as an object.
func (m *Meter) raw(v gjson.Result, whole bool) {
	if whole {
		m.produced = true
		m.output += m.counter.Text(m.model, v.Raw)
		return
	}
	m.addText(v.Raw)
}

// addText queues streamed text and counts it in pieces as it grows, so that
// memory stays bounded and tokens split across deltas mostly are not.
func (m *Meter) addText(s string) {
	if s == "" {
		return
	}
	m.produced = true
	m.pend = append(m.pend, s...)
	if len(m.pend) > countPiece {
		m.countPending(false)
	}
}

// countPending counts queued text, all of it or all but a short tail.
func (m *Meter) countPending(all bool) {
	start := 0
	for len(m.pend)-start > countPiece {
		k := cutPoint(m.pend[start : start+countPiece+1])
		m.output += m.counter.Text(m.model, unsafe.String(&m.pend[start], k))
		start += k
	}
	if all && start < len(m.pend) {
		m.output += m.counter.Text(m.model, string(m.pend[start:]))
		start = len(m.pend)
	}
	m.pend = m.pend[:copy(m.pend, m.pend[start:])]
	if cap(m.pend) > keepBuf && len(m.pend) < countPiece {
		m.pend = append([]byte(nil), m.pend...)
	}
}

// cutPoint returns where to end a piece of b (len countPiece+1): before its
// last white space, else at a rune boundary.
func cutPoint(b []byte) int {
	for k := len(b) - 1; k > 0; k-- {
		switch b[k] {
		case ' ', '\n', '\t':
			return k
		}
	}
	k := len(b) - 1
	for k > 0 && !utf8.RuneStart(b[k]) {
		k--
	}
	if k == 0 {
		k = len(b) - 1
	}
	return k
}

// keepDoc keeps a JSON document, or the tail of one that is too long.
func (m *Meter) keepDoc(p []byte) {
	if !m.docOver && len(m.doc)+len(p) <= maxDocLen {
		m.doc = append(m.doc, p...)
		return
	}
	if !m.docOver {
		m.docOver = true
		m.doc = append(make([]byte, 0, 2*docTailLen), tailOf(m.doc, docTailLen)...)
	}
	p = tailOf(p, docTailLen)
	if len(m.doc)+len(p) > 2*docTailLen {
		keep := tailOf(m.doc, docTailLen-len(p))
		m.doc = m.doc[:copy(m.doc, keep)]
	}
	m.doc = append(m.doc, p...)
}

func tailOf(b []byte, n int) []byte {
	if n <= 0 {
		return nil
	}
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (m *Meter) closeDoc() {
	defer func() { m.doc = nil }()
	if m.docOver {
		m.tailUsage(tailOf(m.doc, docTailLen))
		return
	}
	b := bytes.TrimSpace(m.doc)
	s := unsafe.String(unsafe.SliceData(b), len(b))
	if !gjson.Valid(s) {
		return
	}
	root := gjson.Parse(s)
	if !root.IsObject() {
		return
	}
	m.finished = true
	var typ, usage, choices, content, output, message, response, thinking, errv, detail, ollamaCounts gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "type":
			typ = v
		case "usage":
			usage = v
		case "choices":
			choices = v
		case "content":
			content = v
		case "output":
			output = v
		case "message":
			message = v
		case "response":
			response = v
		case "thinking":
			thinking = v
		case "error":
			errv = v
		case "detail":
			detail = v
		case "prompt_eval_count", "eval_count":
			ollamaCounts = v
		}
		return true
	})
	switch {
	case typ.Str == "message": // Anthropic
		m.anthApply(usage)
	case !isNull(usage):
		if u, err := ParseUsage(usage, "usage"); err == nil && u.Reported {
			m.usage, m.hasUsage = u, true
		}
	case ollamaCounts.Exists():
		if u, err := ParseUsage(root, "ollama"); err == nil && u.Reported {
			m.usage, m.hasUsage = u, true
		}
	}
	choices.ForEach(func(_, c gjson.Result) bool {
		m.choice(c, true)
		return true
	})
	// Anthropic content blocks.
	content.ForEach(func(_, block gjson.Result) bool {
		block.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "text", "thinking", "name":
				m.text(v, true)
			case "input":
				m.raw(v, true)
			}
			return true
		})
		return true
	})
	// Responses API output items.
	if output.IsArray() {
		output.ForEach(func(_, item gjson.Result) bool {
			item.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "content", "summary":
					v.ForEach(func(_, part gjson.Result) bool {
						m.text(part.Get("text"), true)
						return true
					})
				case "arguments", "name", "input", "code":
					m.text(v, true)
				}
				return true
			})
			return true
		})
	}
	if message.IsObject() {
		m.ollamaMessage(message, true)
	}
	m.text(response, true)
	m.text(thinking, true)
	if !isNull(errv) {
		m.setError(errv)
	} else if detail.Type == gjson.String {
		m.setError(detail)
	}
}

// tailUsage looks for the usage at the end of a document too long to
// parse (an embeddings list, base64 images): its last "usage" object, or
// Ollama's trailing counts.
func (m *Meter) tailUsage(tail []byte) {
	// From a key on, the tail reads as an object once '{' is put in front.
	buf := make([]byte, 0, len(tail)+1)
	from := func(i int) []byte {
		buf = append(append(buf[:0], '{'), tail[i:]...)
		return buf
	}
	key := []byte(`"usage"`)
	for end := len(tail); end > 0; {
		i := bytes.LastIndex(tail[:end], key)
		if i < 0 {
			break
		}
		if u := gjson.GetBytes(from(i), "usage"); u.IsObject() {
			if got, err := ParseUsage(u, "usage"); err == nil && got.Reported {
				m.usage, m.hasUsage = got, true
				return
			}
		}
		end = i
	}
	for _, k := range [...]string{`"prompt_eval_count"`, `"eval_count"`} {
		if i := bytes.Index(tail, []byte(k)); i >= 0 {
			if got, err := ParseUsage(gjson.ParseBytes(from(i)), "ollama"); err == nil && got.Reported {
				m.usage, m.hasUsage = got, true
			}
			return
		}
	}
}
