package openwebui

import (
	"testing"

	"github.com/tidwall/gjson"
)

func TestParseUsageShapes(t *testing.T) {
	cases := []struct {
		name, json string
		want       Usage
	}{
		{"openai", `{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}`,
			Usage{Input: 12, Output: 7, Cached: 4, Reasoning: 2, Reported: true}},
		{"anthropic", `{"input_tokens":30,"output_tokens":9,"cache_read_input_tokens":5}`, Usage{Input: 30, Output: 9, Cached: 5, Reported: true}},
		{"ollama", `{"prompt_eval_count":26,"eval_count":3}`, Usage{Input: 26, Output: 3, Reported: true}},
		// OpenWebUI 0.10+ merge_usage over a tool loop of two calls: the
		// normalized counts are the sums, prompt/completion the last call's.
		{"merged tool loop", `{"prompt_tokens":20,"completion_tokens":5,"input_tokens":40,"output_tokens":10,"total_tokens":50,"prompt_tokens_details":{"cached_tokens":8}}`,
			Usage{Input: 40, Output: 10, Cached: 8, Reported: true}},
		{"total only", `{"prompt_tokens":10,"total_tokens":15}`, Usage{Input: 10, Output: 5, Reported: true}},
		{"none", `null`, Usage{}},
	}
	for _, c := range cases {
		got, err := ParseUsage(gjson.Parse(c.json), "usage")
		if err != nil || got != c.want {
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

// llama.cpp's prompt_n/predicted_n, read last; a bound applies to each name.
func TestReadUsageLlamaCppAndBound(t *testing.T) {
	got, err := ParseUsage(gjson.Parse(`{"prompt_n":5,"predicted_n":9}`), "usage")
	if want := (Usage{Input: 5, Output: 9, Reported: true}); err != nil || got != want {
		t.Errorf("llama.cpp: %+v, %v; want %+v", got, err, want)
	}
	_, err = parseUsage(gjson.Parse(`{"prompt_n":5,"predicted_n":900}`), "usage", 100)
	if fe, ok := err.(*FieldError); !ok || fe.Field != "usage.predicted_n" {
		t.Errorf("bound: %v, want an error naming usage.predicted_n", err)
	}
	got, err = ReadUsage(gjson.Parse(`{"prompt_n":5,"predicted_n":900,"total_tokens":50}`), "usage", UsageOptions{Lenient: true, MaxTokens: 100})
	if want := (Usage{Input: 5, Output: 45, Reported: true}); err != nil || got != want {
		t.Errorf("lenient bound: %+v, %v; want %+v", got, err, want)
	}
}
