// Package tokens estimates token counts for requests and replies whose
// provider did not report usage. When a provider returns a usage object, that
// figure is authoritative and this package should not be consulted.
//
// # Encodings
//
// [EncodingFor] maps a model id to a tiktoken encoding with these rules:
//
//   - The id is lower-cased and trimmed, and everything up to and including
//     the last '/' is dropped ("openai/gpt-4-turbo" → "gpt-4-turbo").
//   - The remaining name is matched by prefix. If it matches nothing, the
//     part after its first '.' is tried, and so on for each further '.'
//     ("my_pipe.gpt-3.5-turbo" → "gpt-3.5-turbo"), because OpenWebUI pipe
//     (manifold) models are named "<pipe id>.<model id>".
//   - Prefixes gpt-4o, gpt-4.1 and gpt-4.5 → o200k_base.
//   - Prefixes gpt-4, gpt-3.5, gpt-35 (Azure's spelling), text-embedding-3-
//     and the id text-embedding-ada-002 → cl100k_base.
//   - Anything else → o200k_base, the encoding of current OpenAI models and
//     a reasonable estimate for other vendors' models.
//
// # Chat messages
//
// [Counter.Messages] follows OpenAI's documented rule for chat models
// (cookbook "How to count tokens with tiktoken"):
//
//   - 3 tokens per message, plus the tokens of its role and content;
//   - 1 more token plus the name's tokens when the message has a non-null
//     "name";
//   - 3 tokens priming the reply, once per request. An empty array therefore
//     counts 3; a value that is not an array (missing, null, object) counts 0.
//
// Elements of the array that are not objects are ignored. A string content is
// counted as text. In a multimodal content array, "text" parts count their
// text; "image_url" parts count 85 tokens when image_url.detail is "low" and
// 765 otherwise, which is OpenAI's figure for a 1024×1024 high-detail image
// and only an estimate (the real cost depends on size and model); every other
// part ("input_audio", "file", unknown types) counts 0. Assistant tool calls
// add the tokens of each tool_calls[].function.name and .arguments, without
// per-call overhead (OpenAI does not document one). Tool messages are counted
// like any other message; their tool_call_id is not counted.
//
// # Robustness and caching
//
// Invalid UTF-8 never fails: the codecs replace each invalid sequence with
// U+FFFD, as tiktoken does with errors="replace". If counting still fails,
// the count is estimated as one token per 4 bytes, rounded up.
//
// Each request repeats the whole conversation, so a [Counter] caches counts of
// texts longer than 64 bytes, keyed by encoding and a 64-bit hash of the
// text. The cache has two generations of at most 16384 entries each (about
// 1 MB in all): when the current one is full it becomes the old one, and hits
// in the old one are moved to the current one.
package tokens

import (
	"hash/maphash"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
	"github.com/tiktoken-go/tokenizer/codec"
)

// Names of the encodings returned by EncodingFor.
const (
	O200kBase  = "o200k_base"
	Cl100kBase = "cl100k_base"
)

const (
	tokensPerMessage = 3
	tokensPerName    = 1
	replyPriming     = 3

	lowDetailImageTokens  = 85
	highDetailImageTokens = 765

	// Shorter texts are cheaper to count than to hash and look up under a lock.
	minCachedLen          = 64
	defaultGenerationSize = 16384
)

type encoding uint8

const (
	encO200k encoding = iota
	encCl100k
)

func (e encoding) String() string {
	if e == encCl100k {
		return Cl100kBase
	}
	return O200kBase
}

func newCodec(c *codec.Codec) *codec.Codec {
	// Set before the codec is shared: SetErrorMode is not synchronised.
	c.SetErrorMode(codec.ErrorModeReplace)
	return c
}

// Loading a vocabulary costs tens of milliseconds and megabytes, so each is
// built on first use only. A Codec is safe for concurrent Count.
var codecs = [...]func() *codec.Codec{
	encO200k:  sync.OnceValue(func() *codec.Codec { return newCodec(codec.NewO200kBase()) }),
	encCl100k: sync.OnceValue(func() *codec.Codec { return newCodec(codec.NewCl100kBase()) }),
}

// EncodingFor returns the name of the encoding used to count tokens for model:
// O200kBase or Cl100kBase. See the package documentation for the rules.
func EncodingFor(model string) string {
	return encodingOf(model).String()
}

func encodingOf(model string) encoding {
	name := strings.ToLower(strings.TrimSpace(model))
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	for {
		if enc, ok := classify(name); ok {
			return enc
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return encO200k
		}
		name = name[i+1:]
	}
}

func classify(name string) (encoding, bool) {
	switch {
	// Checked first: these share the gpt-4 prefix but use o200k_base.
	case hasAnyPrefix(name, "gpt-4o", "gpt-4.1", "gpt-4.5"):
		return encO200k, true
	case hasAnyPrefix(name, "gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3-"),
		name == "text-embedding-ada-002":
		return encCl100k, true
	}
	return encO200k, false
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Counter counts tokens and caches the counts of long texts. It is safe for
// concurrent use; the zero value is ready to use, but New is clearer.
type Counter struct {
	mu  sync.Mutex
	cur map[cacheKey]int64
	old map[cacheKey]int64
	// size is the generation size: 0 means defaultGenerationSize and a
	// negative value disables the cache (used by tests and benchmarks).
	size int
}

// The length guards a little further against hash collisions and fills
// what would otherwise be padding.
type cacheKey struct {
	hash uint64
	n    uint32
	enc  encoding
}

// Fixed for the life of the process so that equal texts hash equally.
var seed = maphash.MakeSeed()

func keyOf(enc encoding, s string) cacheKey {
	return cacheKey{hash: maphash.String(seed, s), n: uint32(len(s)), enc: enc}
}

// New returns a Counter with an empty cache.
func New() *Counter {
	return &Counter{}
}

// Text returns the number of tokens of s in the encoding of model, e.g. the
// output tokens of a reply.
func (c *Counter) Text(model, s string) int64 {
	return c.count(encodingOf(model), s)
}

// Messages returns the prompt tokens of messages, the gjson.Result of an
// OpenAI-style "messages" array, by the rule in the package documentation.
func (c *Counter) Messages(model string, messages gjson.Result) int64 {
	if !messages.IsArray() {
		return 0
	}
	enc := encodingOf(model)
	total := int64(replyPriming)
	messages.ForEach(func(_, msg gjson.Result) bool {
		if msg.IsObject() {
			total += c.message(enc, msg)
		}
		return true
	})
	return total
}

func (c *Counter) message(enc encoding, msg gjson.Result) int64 {
	n := int64(tokensPerMessage)
	// One pass over the fields instead of one Get (a scan) per field.
	msg.ForEach(func(key, v gjson.Result) bool {
		switch key.Str {
		case "role":
			n += c.count(enc, v.String())
		case "content":
			n += c.content(enc, v)
		case "name":
			if v.Type != gjson.Null {
				n += tokensPerName + c.count(enc, v.String())
			}
		case "tool_calls":
			v.ForEach(func(_, call gjson.Result) bool {
				fn := call.Get("function")
				n += c.count(enc, fn.Get("name").String())
				n += c.count(enc, fn.Get("arguments").String())
				return true
			})
		}
		return true
	})
	return n
}

func (c *Counter) content(enc encoding, v gjson.Result) int64 {
	if v.Type == gjson.String {
		return c.count(enc, v.Str)
	}
	if !v.IsArray() {
		return 0
	}
	var n int64
	v.ForEach(func(_, part gjson.Result) bool {
		if !part.IsObject() {
			return true
		}
		switch part.Get("type").Str {
		case "text":
			n += c.count(enc, part.Get("text").String())
		case "image_url":
			if strings.EqualFold(part.Get("image_url.detail").Str, "low") {
				n += lowDetailImageTokens
			} else {
				n += highDetailImageTokens
			}
		}
		return true
	})
	return n
}

func (c *Counter) count(enc encoding, s string) int64 {
	if s == "" {
		return 0
	}
	if len(s) <= minCachedLen || c.size < 0 {
		return countUncached(enc, s)
	}
	k := keyOf(enc, s)
	if n, ok := c.lookup(k); ok {
		return n
	}
	// Counted outside the lock; two goroutines may both count a new text,
	// which is harmless as they store the same value.
	n := countUncached(enc, s)
	c.mu.Lock()
	c.store(k, n)
	c.mu.Unlock()
	return n
}

func (c *Counter) lookup(k cacheKey) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.cur[k]; ok {
		return n, true
	}
	if n, ok := c.old[k]; ok {
		// Promote, so that texts still in use survive the next rotation.
		delete(c.old, k)
		c.store(k, n)
		return n, true
	}
	return 0, false
}

// store must be called with c.mu held.
func (c *Counter) store(k cacheKey, n int64) {
	size := c.size
	if size == 0 {
		size = defaultGenerationSize
	}
	if c.cur == nil {
		c.cur = make(map[cacheKey]int64)
	}
	if len(c.cur) >= size {
		c.old, c.cur = c.cur, make(map[cacheKey]int64)
	}
	c.cur[k] = n
}

func countUncached(enc encoding, s string) (n int64) {
	// Metering must never break a request: a failure in the tokenizer
	// degrades to the byte-length estimate.
	defer func() {
		if recover() != nil {
			n = estimate(s)
		}
	}()
	count, err := codecs[enc]().Count(s)
	if err != nil {
		return estimate(s)
	}
	return int64(count)
}

// estimate is OpenAI's rule of thumb of about 4 bytes of English per token.
func estimate(s string) int64 {
	return (int64(len(s)) + 3) / 4
}
