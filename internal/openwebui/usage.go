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

// Field names by shape: OpenWebUI's normalized/Anthropic/Responses, OpenAI,
// Ollama. The normalized names come first: since 0.10 OpenWebUI's
// merge_usage sums input_tokens and output_tokens over a message's calls
// (a tool loop) but keeps only the last call's prompt_tokens and
// completion_tokens.
var (
	inputFields     = []string{"input_tokens", "prompt_tokens", "prompt_eval_count"}
	outputFields    = []string{"output_tokens", "completion_tokens", "eval_count"}
	cachedFields    = []string{"prompt_tokens_details.cached_tokens", "input_tokens_details.cached_tokens", "cache_read_input_tokens"}
	reasoningFields = []string{"completion_tokens_details.reasoning_tokens", "output_tokens_details.reasoning_tokens"}
)

// ParseUsage reads a usage object. name is its path in the request, for
// error messages. A missing or null object is no report, not an error.
func ParseUsage(u gjson.Result, name string) (Usage, error) {
	return parseUsage(u, name, 0)
}

// parseUsage is ParseUsage refusing, when maxTokens > 0, a count above it
// (max_tokens_per_call), naming the field.
func parseUsage(u gjson.Result, name string, maxTokens int64) (Usage, error) {
	var out Usage
	if !u.Exists() || u.Type == gjson.Null {
		return out, nil
	}
	if !u.IsObject() {
		return out, fieldErr(name, "must be an object")
	}
	var err error
	var hasIn, hasOut bool
	if out.Input, hasIn, err = firstCount(u, name, inputFields, maxTokens); err != nil {
		return out, err
	}
	if out.Output, hasOut, err = firstCount(u, name, outputFields, maxTokens); err != nil {
		return out, err
	}
	if !hasOut && hasIn {
		total, hasTotal, err := firstCount(u, name, []string{"total_tokens"}, 0)
		if err != nil {
			return out, err
		}
		if hasTotal && total >= out.Input {
			out.Output, hasOut = total-out.Input, true
			if maxTokens > 0 && out.Output > maxTokens {
				return out, fieldErr(name+".total_tokens", "%d less %d input tokens is more than max_tokens_per_call (%d)",
					total, out.Input, maxTokens)
			}
		}
	}
	if out.Cached, _, err = firstCount(u, name, cachedFields, maxTokens); err != nil {
		return out, err
	}
	if out.Reasoning, _, err = firstCount(u, name, reasoningFields, maxTokens); err != nil {
		return out, err
	}
	out.Reported = hasIn || hasOut
	return out, nil
}

func firstCount(u gjson.Result, name string, fields []string, maxTokens int64) (int64, bool, error) {
	for _, f := range fields {
		v := u.Get(f)
		if !v.Exists() || v.Type == gjson.Null {
			continue
		}
		n, err := Count(v)
		if err != nil {
			return 0, false, fieldErr(name+"."+f, "%v", err)
		}
		if maxTokens > 0 && n > maxTokens {
			return 0, false, fieldErr(name+"."+f, "%d is more than max_tokens_per_call (%d)", n, maxTokens)
		}
		return n, true, nil
	}
	return 0, false, nil
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
