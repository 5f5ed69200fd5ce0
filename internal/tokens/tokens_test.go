package tokens

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tidwall/gjson"
)

func TestEncodingFor(t *testing.T) {
	tests := []struct {
		model string
		want  string
	}{
		{"", O200kBase},
		{"gpt-4o", O200kBase},
		{"gpt-4o-mini", O200kBase},
		{"GPT-4o-2024-08-06", O200kBase},
		{"gpt-4.1", O200kBase},
		{"gpt-4.1-nano", O200kBase},
		{"gpt-4.5-preview", O200kBase},
		{"gpt-5", O200kBase},
		{"o3-mini", O200kBase},
		{"chatgpt-4o-latest", O200kBase},
		{"llama3.1:8b", O200kBase},
		{"claude-3-5-sonnet", O200kBase},
		{"text-embedding-004", O200kBase},
		{"text-embedding-ada-002-custom", O200kBase}, // an exact id, not a prefix
		{"gpt-4", Cl100kBase},
		{"gpt-4-0613", Cl100kBase},
		{"gpt-4-turbo", Cl100kBase},
		{"gpt-4-32k", Cl100kBase},
		{"GPT-4-Turbo", Cl100kBase},
		{"gpt-3.5-turbo", Cl100kBase},
		{"gpt-3.5-turbo-instruct", Cl100kBase},
		{"gpt-35-turbo", Cl100kBase},
		{"text-embedding-ada-002", Cl100kBase},
		{"text-embedding-3-small", Cl100kBase},
		{"text-embedding-3-large", Cl100kBase},
		{" gpt-4 ", Cl100kBase},
		// Provider prefixes: the part after the last '/'.
		{"openai/gpt-4-turbo", Cl100kBase},
		{"openrouter/openai/gpt-3.5-turbo", Cl100kBase},
		{"openai/gpt-4o", O200kBase},
		{"gpt-4/custom-model", O200kBase},
		// OpenWebUI pipes: the parts after each '.', when the whole is unknown.
		{"my_pipe.gpt-3.5-turbo", Cl100kBase},
		{"My_Pipe.GPT-4-Turbo", Cl100kBase},
		{"my_pipe.gpt-4.1-mini", O200kBase},
		{"my_pipe.gpt-4o", O200kBase},
		{"a.b.gpt-4", Cl100kBase},
		{"azure.text-embedding-ada-002", Cl100kBase},
		{"proxy/my_pipe.gpt-4", Cl100kBase},
		{"my_pipe.claude-3.5", O200kBase},
	}
	for _, tt := range tests {
		if got := EncodingFor(tt.model); got != tt.want {
			t.Errorf("EncodingFor(%q) = %s, want %s", tt.model, got, tt.want)
		}
	}
}

// Figures from OpenAI's cookbook "How to count tokens with tiktoken", not
// from this library.
func TestTextKnownCounts(t *testing.T) {
	tests := []struct {
		model string
		text  string
		want  int64
	}{
		{"gpt-4o", "", 0},
		{"gpt-4o", "hello world", 2},
		{"gpt-4", "hello world", 2},
		{"gpt-3.5-turbo", "tiktoken is great!", 6},
		{"gpt-4", "antidisestablishmentarianism", 6},
		{"gpt-4o", "antidisestablishmentarianism", 6},
		{"gpt-4", "2 + 2 = 4", 7},
		{"gpt-4o", "2 + 2 = 4", 7},
		{"gpt-4", "お誕生日おめでとう", 9},
		{"gpt-4o", "お誕生日おめでとう", 8},
	}
	c := New()
	for _, tt := range tests {
		if got := c.Text(tt.model, tt.text); got != tt.want {
			t.Errorf("Text(%q, %q) = %d, want %d", tt.model, tt.text, got, tt.want)
		}
	}
}

// Token ids from the same cookbook check that the right vocabularies are
// loaded, not merely ones that split the same way.
func TestCodecTokenIDs(t *testing.T) {
	tests := []struct {
		enc  encoding
		text string
		want []uint
	}{
		{encO200k, "hello world", []uint{24912, 2375}},
		{encCl100k, "hello world", []uint{15339, 1917}},
		{encCl100k, "tiktoken is great!", []uint{83, 1609, 5963, 374, 2294, 0}},
		{encCl100k, "antidisestablishmentarianism", []uint{519, 85342, 34500, 479, 8997, 2191}},
		{encO200k, "antidisestablishmentarianism", []uint{493, 129901, 376, 160388, 21203, 2367}},
		{encCl100k, "お誕生日おめでとう", []uint{33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699}},
		{encO200k, "お誕生日おめでとう", []uint{8930, 9697, 243, 128225, 8930, 17693, 4344, 48669}},
	}
	for _, tt := range tests {
		ids, _, err := codecs[tt.enc]().Encode(tt.text)
		if err != nil || fmt.Sprint(ids) != fmt.Sprint(tt.want) {
			t.Errorf("%s Encode(%q) = %v, %v; want %v", tt.enc, tt.text, ids, err, tt.want)
		}
	}
}

// The cookbook's example conversation: 129 prompt tokens for gpt-3.5-turbo
// and gpt-4, 124 for gpt-4o, as counted by the OpenAI API.
const cookbookMessages = `[
 {"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
 {"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
 {"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
 {"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
 {"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
 {"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}
]`

func TestMessagesCookbook(t *testing.T) {
	msgs := gjson.Parse(cookbookMessages)
	for _, tt := range []struct {
		model string
		want  int64
	}{
		{"gpt-3.5-turbo-0613", 129},
		{"gpt-4-0613", 129},
		{"gpt-4o", 124},
		{"gpt-4o-mini", 124},
	} {
		if got := New().Messages(tt.model, msgs); got != tt.want {
			t.Errorf("Messages(%s) = %d, want %d", tt.model, got, tt.want)
		}
	}
}

const longText = "Summarise the following report in three bullet points, keeping every figure exact and quoting the conclusion verbatim."

func TestMessagesByHand(t *testing.T) {
	doc := `[
	 {"role":"system","content":"You are a helpful assistant."},
	 {"role":"user","name":"alice","content":` + strconv.Quote(longText) + `},
	 {"role":"user","content":[
	   {"type":"text","text":"Describe both images."},
	   {"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"low"}},
	   {"type":"image_url","image_url":{"url":"https://example.com/b.png","detail":"high"}},
	   {"type":"image_url","image_url":{"url":"https://example.com/c.png"}},
	   {"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}},
	   {"type":"file","file":{"file_id":"file-1"}},
	   {"type":"mystery","text":"not counted"},
	   "stray string part"
	 ]},
	 {"role":"assistant","content":null,"tool_calls":[
	   {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}
	 ]},
	 {"role":"tool","tool_call_id":"call_1","content":"{\"temperature\":21}"},
	 "not a message", 42, null, []
	]`
	msgs := gjson.Parse(doc)
	for _, model := range []string{"gpt-4o", "gpt-4"} {
		ref := &Counter{size: -1}
		tx := func(s string) int64 { return ref.Text(model, s) }
		want := int64(3) + // priming
			3 + tx("system") + tx("You are a helpful assistant.") +
			3 + tx("user") + tx(longText) + 1 + tx("alice") +
			3 + tx("user") + tx("Describe both images.") + 85 + 765 + 765 +
			3 + tx("assistant") + tx("get_weather") + tx(`{"city":"Paris","unit":"celsius"}`) +
			3 + tx("tool") + tx(`{"temperature":21}`)
		c := New()
		for i := range 2 { // the second pass is served from the cache
			if got := c.Messages(model, msgs); got != want {
				t.Errorf("%s pass %d: Messages = %d, want %d", model, i, got, want)
			}
		}
		if got := ref.Messages(model, msgs); got != want {
			t.Errorf("%s uncached: Messages = %d, want %d", model, got, want)
		}
	}
}

func TestMessagesEdgeCases(t *testing.T) {
	c := New()
	tx := func(s string) int64 { return c.Text("gpt-4o", s) }
	tests := []struct {
		name string
		doc  string
		want int64
	}{
		{"empty array is priming only", `[]`, 3},
		{"null", `null`, 0},
		{"object", `{"role":"user","content":"hi"}`, 0},
		{"string", `"hi"`, 0},
		{"non-objects ignored", `[1, "x", null, true]`, 3},
		{"empty object", `[{}]`, 3 + 3},
		{"null content", `[{"role":"user","content":null}]`, 3 + 3 + tx("user")},
		{"null name", `[{"role":"user","name":null,"content":"hi"}]`, 3 + 3 + tx("user") + tx("hi")},
		{"empty name", `[{"role":"user","name":"","content":"hi"}]`, 3 + 3 + tx("user") + tx("hi") + 1},
		{"low detail any case", `[{"content":[{"type":"image_url","image_url":{"detail":"LOW"}}]}]`, 3 + 3 + 85},
		{"image_url as a string", `[{"content":[{"type":"image_url","image_url":"https://x/y.png"}]}]`, 3 + 3 + 765},
		{"tool call without function", `[{"role":"assistant","tool_calls":[{"id":"x"}, 5]}]`, 3 + 3 + tx("assistant")},
	}
	for _, tt := range tests {
		if got := c.Messages("gpt-4o", gjson.Parse(tt.doc)); got != tt.want {
			t.Errorf("%s: Messages(%s) = %d, want %d", tt.name, tt.doc, got, tt.want)
		}
	}
	if got := c.Messages("gpt-4o", gjson.Get(`{"model":"x"}`, "messages")); got != 0 {
		t.Errorf("missing messages: got %d, want 0", got)
	}
}

func TestInvalidUTF8(t *testing.T) {
	long := strings.Repeat("caf\xc3 au lait, ", 10) // > minCachedLen
	tests := []struct {
		in, replaced string
	}{
		{"\xff", "\uFFFD"},
		{"hello \xff\xfe world", "hello \uFFFD\uFFFD world"},
		{"truncated \xe3\x81", "truncated \uFFFD"},
		{"surrogate \xed\xa0\x80!", "surrogate \uFFFD\uFFFD\uFFFD!"},
		{long, strings.Repeat("caf\uFFFD au lait, ", 10)},
	}
	c := New()
	for _, model := range []string{"gpt-4o", "gpt-4"} {
		for _, tt := range tests {
			got := c.Text(model, tt.in)
			want := c.Text(model, tt.replaced)
			if got != want || got == 0 {
				t.Errorf("%s Text(%q) = %d, want %d (as %q)", model, tt.in, got, want, tt.replaced)
			}
		}
		doc := "[{\"role\":\"user\",\"content\":\"hello \xff\xfe world\"}]"
		want := int64(3+3) + c.Text(model, "user") + c.Text(model, "hello \uFFFD\uFFFD world")
		if got := c.Messages(model, gjson.Parse(doc)); got != want {
			t.Errorf("%s Messages with invalid UTF-8 = %d, want %d", model, got, want)
		}
	}
}

func TestEstimate(t *testing.T) {
	for _, tt := range []struct {
		s    string
		want int64
	}{{"", 0}, {"a", 1}, {"abcd", 1}, {"abcde", 2}, {strings.Repeat("x", 400), 100}} {
		if got := estimate(tt.s); got != tt.want {
			t.Errorf("estimate(%d bytes) = %d, want %d", len(tt.s), got, tt.want)
		}
	}
}

func longTexts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("Message %d: %s %s", i, longText, strings.Repeat("la ", i%7))
	}
	return out
}

func TestCacheIsUsed(t *testing.T) {
	c := New()
	c.Text("gpt-4o", "short text")
	if n := len(c.cur); n != 0 {
		t.Fatalf("short text cached: %d entries", n)
	}
	c.Text("gpt-4o", longText)
	c.Text("gpt-4", longText)
	if n := len(c.cur); n != 2 {
		t.Fatalf("want one entry per encoding, got %d", n)
	}
	// Poison the entry: a cached count must be returned as is.
	for k := range c.cur {
		c.cur[k] = 999
	}
	if got := c.Text("gpt-4o", longText); got != 999 {
		t.Fatalf("cache not consulted: got %d", got)
	}
}

func TestCacheEviction(t *testing.T) {
	texts := longTexts(40)
	ref := &Counter{size: -1}
	c := &Counter{size: 4}
	for round := range 3 {
		for i, s := range texts {
			model := []string{"gpt-4o", "gpt-4"}[i%2]
			if got, want := c.Text(model, s), ref.Text(model, s); got != want {
				t.Fatalf("round %d text %d: got %d, want %d", round, i, got, want)
			}
			if len(c.cur) > 4 || len(c.old) > 4 {
				t.Fatalf("cache exceeds its bound: cur %d, old %d", len(c.cur), len(c.old))
			}
		}
	}
	if len(ref.cur) != 0 {
		t.Fatalf("disabled cache holds %d entries", len(ref.cur))
	}
}

func TestCachePromotion(t *testing.T) {
	c := &Counter{size: 2}
	key := func(s string) cacheKey { return keyOf(encO200k, s) }
	tx := longTexts(4)
	a, b, d, e := tx[0], tx[1], tx[2], tx[3]
	c.Text("", a)
	c.Text("", b) // cur {a b}
	c.Text("", d) // rotation: old {a b}, cur {d}
	c.Text("", a) // hit in old, promoted: old {b}, cur {d a}
	if len(c.old) != 1 || len(c.cur) != 2 {
		t.Fatalf("after promotion: cur %d, old %d; want 2, 1", len(c.cur), len(c.old))
	}
	c.Text("", e) // rotation: old {d a}, cur {e}; b is dropped
	_, aOld := c.old[key(a)]
	_, bCur := c.cur[key(b)]
	_, bOld := c.old[key(b)]
	if !aOld || bCur || bOld || len(c.cur) != 1 || len(c.old) != 2 {
		t.Fatalf("promotion: a kept %v, b kept %v/%v, cur %d, old %d", aOld, bCur, bOld, len(c.cur), len(c.old))
	}
}

func TestConcurrent(t *testing.T) {
	texts := longTexts(64)
	msgs := gjson.Parse(cookbookMessages)
	models := []string{"gpt-4o", "gpt-4"}
	ref := &Counter{size: -1}
	want := make(map[string]int64)
	for _, m := range models {
		for _, s := range texts {
			want[m+s] = ref.Text(m, s)
		}
	}
	c := &Counter{size: 16} // small, so that rotations race with lookups
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				m := models[(g+i)%2]
				s := texts[(g*7+i)%len(texts)]
				if got := c.Text(m, s); got != want[m+s] {
					errs <- fmt.Sprintf("Text(%s, %q) = %d, want %d", m, s, got, want[m+s])
					return
				}
				if i%20 == 0 {
					if got, w := c.Messages(m, msgs), map[string]int64{"gpt-4o": 124, "gpt-4": 129}[m]; got != w {
						errs <- fmt.Sprintf("Messages(%s) = %d, want %d", m, got, w)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

var benchSentences = []string{
	"The quarterly report shows revenue growth of 12 percent, driven mostly by subscriptions in Europe.",
	"Operating costs rose faster than expected because of new data-centre leases signed in March.",
	"Customer churn fell to 3.1 percent after the onboarding flow was redesigned.",
	"The team recommends delaying the Asian launch until the payment integration is certified.",
	"Marketing spend per acquired customer dropped by a fifth compared with last year.",
	"Engineering shipped forty-two features, but incident count doubled during the migration.",
	"Cash reserves cover roughly eighteen months of operations at the current burn rate.",
	"Analysts expect the market to consolidate, favouring vendors with strong compliance records.",
}

// benchParagraph joins n sentences, picked so that neighbours vary.
func benchParagraph(seed, n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(benchSentences[(seed+i*3)%len(benchSentences)])
		b.WriteByte(' ')
	}
	return b.String()
}

// benchConversation returns the JSON of nine earlier messages, ending with a
// comma, and the text of the tenth.
func benchConversation() (history []byte, last string) {
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	msgs := []msg{{"system", "You are a careful financial analyst. Answer concisely and cite figures exactly."}}
	for i := range 4 {
		msgs = append(msgs, msg{"user", "Question " + strconv.Itoa(i) + ": " + benchParagraph(i, 3)})
		msgs = append(msgs, msg{"assistant", benchParagraph(i+1, 26)})
	}
	raw, err := json.Marshal(msgs)
	if err != nil {
		panic(err)
	}
	return append(raw[:len(raw)-1], ','), benchParagraph(5, 6)
}

func BenchmarkMessages(b *testing.B)         { benchMessages(b, New()) }
func BenchmarkMessagesUncached(b *testing.B) { benchMessages(b, &Counter{size: -1}) }

// Only the last message differs between iterations, as when a user sends a
// new turn of the same conversation.
func benchMessages(b *testing.B, c *Counter) {
	history, last := benchConversation()
	buf := make([]byte, 0, len(history)+len(last)+64)
	build := func(i int) gjson.Result {
		buf = append(buf[:0], history...)
		buf = append(buf, `{"role":"user","content":"Turn `...)
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, ": "+last+`"}]`...)
		return gjson.ParseBytes(buf)
	}
	i := 0
	for b.Loop() {
		i++
		c.Messages("gpt-4o", build(i))
	}
	// After the loop: b.Loop resets the timer, which drops earlier metrics.
	b.ReportMetric(float64(New().Messages("gpt-4o", build(0))), "tokens")
}

func BenchmarkTextUncached(b *testing.B) {
	text := benchParagraph(0, 100)[:8192]
	c := &Counter{size: -1}
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		c.Text("gpt-4o", text)
	}
	b.ReportMetric(float64(c.Text("gpt-4o", text)), "tokens")
}
