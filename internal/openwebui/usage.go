// Package openwebui reads what OpenWebUI and its providers put on the wire:
// the bodies the Usage Monitor function posts, and usage reports in the
// OpenAI, Ollama and Anthropic shapes.
package openwebui

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// FieldError names the part of a request that was wrong.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Usage is a provider's token report. A reported zero is a real count.
type Usage struct {
	Input     int64
	Output    int64
	Cached    int64 // input tokens served from the provider's cache
	Reasoning int64 // output tokens spent on reasoning
	Reported  bool  // the report named input or output tokens
}

// Field names by shape, most preferred first: OpenWebUI's normalized (also
// Anthropic's and the Responses API's), OpenAI, Ollama, llama.cpp. The
// normalized names come first: since 0.10 OpenWebUI's merge_usage sums
// input_tokens and output_tokens (and the *_details maps) over a message's
// calls (a tool loop) but keeps only the last call's prompt_tokens and
// completion_tokens. Cached: the OpenAI and Responses details, or
// Anthropic's cache_read_input_tokens. Reasoning: the OpenAI and Responses
// details. These are the names OpenWebUI's utils/response.py
// normalize_usage reads.
const (
	slotInput = iota
	slotOutput
	slotTotal
	slotCached
	slotReasoning
	nSlots
	nRanks = 4 // the most names a slot has
)

// usageField is where a top-level key of a usage object goes: its slot,
// its rank there (0 most preferred) and, for the *_details maps, the key
// read inside it.
type usageField struct {
	slot, rank int
	sub        string
}

var usageFields = map[string]usageField{
	"input_tokens":              {slotInput, 0, ""},
	"prompt_tokens":             {slotInput, 1, ""},
	"prompt_eval_count":         {slotInput, 2, ""},
	"prompt_n":                  {slotInput, 3, ""},
	"output_tokens":             {slotOutput, 0, ""},
	"completion_tokens":         {slotOutput, 1, ""},
	"eval_count":                {slotOutput, 2, ""},
	"predicted_n":               {slotOutput, 3, ""},
	"total_tokens":              {slotTotal, 0, ""},
	"prompt_tokens_details":     {slotCached, 0, "cached_tokens"},
	"input_tokens_details":      {slotCached, 1, "cached_tokens"},
	"cache_read_input_tokens":   {slotCached, 2, ""},
	"completion_tokens_details": {slotReasoning, 0, "reasoning_tokens"},
	"output_tokens_details":     {slotReasoning, 1, "reasoning_tokens"},
}

// UsageOptions says how ReadUsage treats what it finds.
type UsageOptions struct {
	// Lenient skips a value that is not a whole number ≥ 0 (or is above
	// MaxTokens), falling back to the next name, and never fails. Strict
	// (false) fails on the first such value among the names it reads,
	// naming the field, as the outlet's 400s do.
	Lenient bool
	// MaxTokens > 0 bounds every count (max_tokens_per_call); total_tokens
	// is bounded through the output it yields.
	MaxTokens int64
}

// usageCand is the value seen for one name of a slot.
type usageCand struct {
	seen  bool // strict: the name occurs (the first occurrence counts)
	found bool // a value that is not null
	n     int64
	err   error
	field string
}

// ReadUsage is the one reader of a usage object in every shape, used by
// the outlet, the provider meter and the socket tap (wstap). v must be an
// object (anything else reads as no report); name is its path, for the
// errors. Reported is set when it names input or output tokens; output
// falls back to total_tokens − input. Only strict reading returns errors.
func ReadUsage(v gjson.Result, name string, o UsageOptions) (Usage, error) {
	var out Usage
	if !v.IsObject() {
		return out, nil
	}
	var cands [nSlots][nRanks]usageCand
	v.ForEach(func(k, f gjson.Result) bool {
		uf, ok := usageFields[k.Str]
		if !ok {
			return true
		}
		c := &cands[uf.slot][uf.rank]
		if c.seen || c.found {
			return true // the first occurrence of a name wins
		}
		field := k.Str
		if uf.sub != "" {
			f, field = f.Get(uf.sub), field+"."+uf.sub
		}
		if !f.Exists() || f.Type == gjson.Null {
			c.seen = !o.Lenient
			return true
		}
		n, err := Count(f)
		if err == nil && o.MaxTokens > 0 && uf.slot != slotTotal && n > o.MaxTokens {
			err = fmt.Errorf("%d is more than max_tokens_per_call (%d)", n, o.MaxTokens)
		}
		if err != nil && o.Lenient {
			return true
		}
		*c = usageCand{seen: true, found: true, n: n, err: err, field: field}
		return true
	})
	pick := func(slot int) (int64, bool, error) {
		for _, c := range cands[slot] {
			if !c.found {
				continue
			}
			if c.err != nil {
				return 0, false, fieldErr(name+"."+c.field, "%v", c.err)
			}
			return c.n, true, nil
		}
		return 0, false, nil
	}
	var err error
	var hasIn, hasOut bool
	if out.Input, hasIn, err = pick(slotInput); err != nil {
		return Usage{}, err
	}
	if out.Output, hasOut, err = pick(slotOutput); err != nil {
		return Usage{}, err
	}
	if !hasOut && hasIn {
		total, hasTotal, err := pick(slotTotal)
		if err != nil {
			return Usage{}, err
		}
		if hasTotal && total >= out.Input {
			out.Output, hasOut = total-out.Input, true
			if o.MaxTokens > 0 && out.Output > o.MaxTokens {
				if o.Lenient {
					out.Output, hasOut = 0, false
				} else {
					return Usage{}, fieldErr(name+".total_tokens", "%d less %d input tokens is more than max_tokens_per_call (%d)",
						total, out.Input, o.MaxTokens)
				}
			}
		}
	}
	if out.Cached, _, err = pick(slotCached); err != nil {
		return Usage{}, err
	}
	if out.Reasoning, _, err = pick(slotReasoning); err != nil {
		return Usage{}, err
	}
	out.Reported = hasIn || hasOut
	return out, nil
}

// ParseUsage reads a usage object strictly. name is its path in the
// request, for error messages. A missing or null object is no report, not
// an error.
func ParseUsage(u gjson.Result, name string) (Usage, error) {
	return parseUsage(u, name, 0)
}

// parseUsage is ParseUsage refusing, when maxTokens > 0, a count above it
// (max_tokens_per_call), naming the field.
func parseUsage(u gjson.Result, name string, maxTokens int64) (Usage, error) {
	if !u.Exists() || u.Type == gjson.Null {
		return Usage{}, nil
	}
	if !u.IsObject() {
		return Usage{}, fieldErr(name, "must be an object")
	}
	return ReadUsage(u, name, UsageOptions{MaxTokens: maxTokens})
}

// satAdd adds token counts, saturating at the largest int64 rather than
// wrapping to a negative count.
func satAdd(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxInt64
}

// Count reads a non-negative whole number of tokens from its JSON text
// ("12", also "12.0"), never through a float.
func Count(v gjson.Result) (int64, error) {
	if v.Type != gjson.Number {
		return 0, fmt.Errorf("must be a number, got %s", kind(v))
	}
	raw := v.Raw
	if i := strings.IndexByte(raw, '.'); i >= 0 && strings.Trim(raw[i+1:], "0") == "" {
		raw = raw[:i]
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("must be a whole number of tokens ≥ 0, got %s", v.Raw)
	}
	return n, nil
}

func kind(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "a list"
	case v.Type == gjson.String:
		return "a string"
	case v.Type == gjson.True, v.Type == gjson.False:
		return "a boolean"
	case v.Type == gjson.Null:
		return "null"
	}
	return "a number"
}
