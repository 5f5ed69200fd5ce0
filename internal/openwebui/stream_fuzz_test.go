package openwebui

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/tidwall/gjson"
)

var meterSeeds = []string{
	sseOpenWebUI + sseUsageChunk + sseDone,
	sseOpenWebUI + sseDone,
	sseOllamaConverted,
	sseToolCalls,
	sseReasoning,
	sseCompletions + sseCompletionsUsage + sseDone,
	sseError,
	sseAnthropic,
	sseAnthropicError,
	sseResponses,
	"event: chunk\r\n" + sseUsageChunk + "data: [DONE]\r\r",
	ndjsonOllamaChat,
	ndjsonOllamaGenerate,
	ndjsonOllamaToolsAndError,
	jsonChatCompletion,
	jsonCompletion,
	jsonEmbeddings,
	jsonAnthropic,
	jsonOllama,
	jsonOllamaEmbed,
	jsonResponses,
	jsonDetail,
	jsonError,
	"\uFEFFdata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\r\n\r\n",
	"",
}

// FuzzMeter feeds arbitrary bytes in arbitrary writes to Meters of every
// format. Whatever the input: no panic; the result does not depend on how
// the input was split; without stripping the output is the input; with
// stripping it is the input less whole lines, each a data line or a blank
// line.
func FuzzMeter(f *testing.F) {
	for i, s := range meterSeeds {
		f.Add([]byte(s), uint64(i), false)
		f.Add([]byte(s), uint64(i)*7919, true)
	}
	f.Fuzz(func(t *testing.T, in []byte, seed uint64, small bool) {
		if small {
			defer func(l, d, tl int) { maxLineLen, maxDocLen, docTailLen = l, d, tl }(maxLineLen, maxDocLen, docTailLen)
			maxLineLen, maxDocLen, docTailLen = 48, 128, 32
		}
		r := rand.New(rand.NewPCG(seed, 0))
		var chunks [][]byte
		for rest := in; len(rest) > 0; {
			n := r.IntN(len(rest) + 1) // empty writes too
			if r.IntN(4) == 0 {
				n = min(n, 3)
			}
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		for _, format := range []Format{FormatNone, FormatJSON, FormatSSE, FormatNDJSON} {
			for _, strip := range []bool{false, true} {
				whole := feed(t, format, strip, [][]byte{in})
				split := feed(t, format, strip, chunks)
				if whole != split {
					t.Fatalf("%v strip=%v: split input gives\n%v\nwhole input gives\n%v", format, strip, split, whole)
				}
				if !strip || format != FormatSSE {
					if whole.out != string(in) {
						t.Fatalf("%v strip=%v: output differs from input", format, strip)
					}
					continue
				}
				if !linesRemoved(in, []byte(whole.out)) {
					t.Fatalf("output %q is not input %q less data or blank lines", whole.out, in)
				}
			}
		}

		// The same bytes as a recipe for a plausible SSE stream, to reach
		// the stripping paths: what a client dispatches must be what it
		// would have, less usage-only events.
		sse := synthSSE(in)
		whole := feed(t, FormatSSE, true, [][]byte{sse})
		var parts [][]byte
		for rest := sse; len(rest) > 0; {
			n := 1 + r.IntN(len(rest))
			parts = append(parts, rest[:n])
			rest = rest[n:]
		}
		if split := feed(t, FormatSSE, true, parts); split != whole {
			t.Fatalf("stream %q: split input gives\n%v\nwhole input gives\n%v", sse, split, whole)
		}
		inEvents, outEvents := sseEvents(sse), sseEvents([]byte(whole.out))
		var kept []string
		for _, e := range inEvents {
			if !usageOnlyData(e) {
				kept = append(kept, e)
			}
		}
		if !subsequence(kept, outEvents) || !subsequence(outEvents, inEvents) {
			t.Fatalf("stream %q\nstripped to %q:\nevents %q\nbecame %q", sse, whole.out, inEvents, outEvents)
		}
		if !small && !hasLoneCR(sse) && len(outEvents) != len(kept) {
			t.Fatalf("stream %q\nstripped to %q kept usage events: %q", sse, whole.out, outEvents)
		}
	})
}

// synthSSE builds an SSE stream from recipe bytes: each picks an event and
// its line ending.
func synthSSE(recipe []byte) []byte {
	const usage = `{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}`
	const content = `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}`
	var b []byte
	for i, c := range recipe[:min(len(recipe), 64)] {
		nl := [...]string{"\n", "\r\n", "\n", "\r"}[c>>6]
		line := func(s string) { b = append(append(b, s...), nl...) }
		switch c & 15 {
		case 0:
			line("data: " + usage)
			line("")
		case 1:
			line("data: " + content)
			line("")
		case 2:
			line("event: chunk")
			line("data: " + usage)
			line("")
		case 3:
			line(": keep-alive")
			line("")
		case 4:
			line("data: [DONE]")
			line("")
		case 5:
			line("")
		case 6:
			line(`data: {"sources": [{"source": {"id": "f1"}}]}`)
			line("")
		case 7:
			line("data: " + usage)
			line("id: 7")
			line("")
		case 8:
			line("id: 5")
			line("data:" + usage)
			line("")
		case 9:
			line(`data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}`)
			line("")
		case 10:
			line(`data: {"choices":[],"usage":{"prompt_tokens":1}`) // invalid JSON
			line("")
		case 11:
			line("data: " + usage + "  ")
			line("")
		case 12:
			line(`data: {"choices":[],"usage":null}`)
			line("")
		case 13:
			if i == 0 {
				b = append(b, bom...)
			}
			line("data: " + usage)
			line("")
		case 14:
			line(`data: {"type":"message_delta","usage":{"output_tokens":3}}`)
			line("")
		case 15:
			b = append(b, "data: "+usage[:int(c>>4)*7]...) // cut short
		}
	}
	return b
}

// sseEvents parses an event stream as a client does and returns the data of
// each event it dispatches.
func sseEvents(b []byte) []string {
	b = bytes.TrimPrefix(b, bom)
	var events []string
	var data []byte
	hasData := false
	for len(b) > 0 {
		n := bytes.IndexAny(b, "\r\n")
		if n < 0 {
			break // an unfinished line is never dispatched
		}
		l := b[:n]
		if b[n] == '\r' && n+1 < len(b) && b[n+1] == '\n' {
			n++
		}
		b = b[n+1:]
		if len(l) == 0 {
			if hasData {
				events = append(events, string(data))
			}
			data, hasData = data[:0], false
			continue
		}
		field, value, _ := bytes.Cut(l, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		if string(field) == "data" {
			if hasData {
				data = append(data, '\n')
			}
			data, hasData = append(data, value...), true
		}
	}
	return events
}

func usageOnlyData(data string) bool {
	data = string(bytes.TrimSpace([]byte(data)))
	if !gjson.Valid(data) {
		return false
	}
	u, c := gjson.Get(data, "usage"), gjson.Get(data, "choices")
	return u.Exists() && u.Type != gjson.Null && c.IsArray() && len(c.Array()) == 0
}

// subsequence reports whether sub is a subsequence of all.
func subsequence(sub, all []string) bool {
	i := 0
	for _, s := range all {
		if i < len(sub) && sub[i] == s {
			i++
		}
	}
	return i == len(sub)
}

func hasLoneCR(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			return true
		}
	}
	return false
}

// linesRemoved reports whether out is in with some whole SSE lines (with
// their endings) removed, each a "data:" line or a blank line.
func linesRemoved(in, out []byte) bool {
	var lines [][]byte
	for rest := in; len(rest) > 0; {
		n := len(rest)
		for i, c := range rest {
			if c == '\n' {
				n = i + 1
				break
			}
			if c == '\r' {
				n = i + 1
				if i+1 < len(rest) && rest[i+1] == '\n' {
					n++
				}
				break
			}
		}
		lines = append(lines, rest[:n])
		rest = rest[n:]
	}
	// reach[o]: out[:o] is a result of the lines so far.
	reach := make([]bool, len(out)+1)
	reach[0] = true
	next := make([]bool, len(out)+1)
	for _, l := range lines {
		content := bytes.TrimRight(l, "\r\n")
		droppable := len(content) == 0 || bytes.HasPrefix(bytes.TrimPrefix(content, bom), dataPrefix)
		clear(next)
		for o, ok := range reach {
			if !ok {
				continue
			}
			if droppable {
				next[o] = true
			}
			if bytes.HasPrefix(out[o:], l) {
				next[o+len(l)] = true
			}
		}
		reach, next = next, reach
	}
	return reach[len(out)]
}

var requestSeeds = []string{
	`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
	`{"stream":true,"model":"llama3.2:latest","session_id":"sock1","chat_id":"c1","id":"m2","message_ids":[{"model_id":"x","message_id":"m2"}],"parent_id":null,"user_message":{"id":"m1","role":"user","content":"hello"},"background_tasks":{"title_generation":true}}`,
	`{"model":"claude","system":[{"type":"text","text":"a"}],"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
	`{"model":"gpt-5","input":[{"role":"user","content":[{"type":"input_text","text":"Hello"}]}],"instructions":"be nice","stream":true}`,
	`{"model":"e","input":[[1,2],[3]]}`,
	`{"model":"a","stream":false,"model":"b","stream":true,"stream_options":{"include_usage":true,"include_usage":false}}`,
	`{"stream_options":{"include_usage":true},"stream":true,"stream_options":null}`,
	` { "chat\u005fid" : "c" , "id" : 1 } `,
	`{"model":1}`,
	`[1]`,
	`{`,
	``,
}

func FuzzInspectRequest(f *testing.F) {
	for i, s := range requestSeeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r, err := InspectRequest(RouteKind(route%13), body)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			return
		}
		if n := r.PromptTokens(testCounter); n < 0 {
			t.Fatalf("PromptTokens = %d", n)
		}
	})
}

func FuzzEdits(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		valid := gjson.ValidBytes(body)
		orig := string(body)

		stripped, changed := StripBackgroundFields(body)
		checkEdit(t, "StripBackgroundFields", orig, stripped, changed, valid)
		if again, ch := StripBackgroundFields(stripped); ch || !bytes.Equal(again, stripped) {
			t.Fatalf("StripBackgroundFields is not idempotent: %s", again)
		}
		if changed {
			if !sameMembers(body, stripped, func(k string) bool { return backgroundFields[k] }) {
				t.Fatalf("StripBackgroundFields(%s) = %s changed other members", body, stripped)
			}
		}

		injected, changed := InjectIncludeUsage(body)
		checkEdit(t, "InjectIncludeUsage", orig, injected, changed, valid)
		if again, ch := InjectIncludeUsage(injected); ch || !bytes.Equal(again, injected) {
			t.Fatalf("InjectIncludeUsage is not idempotent: %s then %s", injected, again)
		}
		if changed {
			if !sameMembers(body, injected, func(k string) bool { return k == "stream_options" }) {
				t.Fatalf("InjectIncludeUsage(%s) = %s changed other members", body, injected)
			}
			if r, err := InspectRequest(RouteOpenAI, injected); err == nil && (!r.IncludeUsage || !r.Stream) {
				t.Fatalf("InjectIncludeUsage(%s) = %s does not ask for usage", body, injected)
			}
		}
		if string(body) != orig {
			t.Fatal("an edit modified its input")
		}
	})
}

func checkEdit(t *testing.T, name, in string, out []byte, changed, valid bool) {
	t.Helper()
	if !changed && string(out) != in {
		t.Fatalf("%s(%s) = %s but reports no change", name, in, out)
	}
	if changed && !valid {
		t.Fatalf("%s changed invalid JSON %q", name, in)
	}
	if valid && !gjson.ValidBytes(out) {
		t.Fatalf("%s(%s) = %s is not valid JSON", name, in, out)
	}
}

// sameMembers reports whether the top-level members of a and b, skipping
// the keys skip accepts, are the same, in the same order.
func sameMembers(a, b []byte, skip func(string) bool) bool {
	members := func(body []byte) []string {
		var out []string
		gjson.ParseBytes(body).ForEach(func(k, v gjson.Result) bool {
			if !skip(k.Str) {
				out = append(out, k.Raw+":"+v.Raw)
			}
			return true
		})
		return out
	}
	ma, mb := members(a), members(b)
	if len(ma) != len(mb) {
		return false
	}
	for i := range ma {
		if ma[i] != mb[i] {
			return false
		}
	}
	return true
}
