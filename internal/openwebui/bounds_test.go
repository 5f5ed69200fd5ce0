package openwebui

import (
	"math"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestReplyUsageBound(t *testing.T) {
	for _, c := range []struct{ reply, field string }{
		{`{"usage":{"prompt_tokens":9223372036854775807}}`, "body.messages[3].usage.prompt_tokens: 9223372036854775807 is more than max_tokens_per_call (100)"},
		{`{"usage":{"input_tokens":1,"output_tokens":101}}`, "body.messages[3].usage.output_tokens: 101"},
		{`{"usage":{"prompt_tokens":1,"total_tokens":500}}`, "body.messages[3].usage.total_tokens: 500 less 1 input tokens"},
		{`{"info":{"eval_count":101}}`, "body.messages[3].info.eval_count: 101"},
	} {
		_, err := ReplyUsage(gjson.Parse(c.reply), 3, 100)
		if err == nil || !strings.HasPrefix(err.Error(), c.field) {
			t.Errorf("%s: %v, want %q…", c.reply, err, c.field)
		}
		if _, err := ReplyUsage(gjson.Parse(c.reply), 3, 0); err != nil {
			t.Errorf("%s without a bound: %v", c.reply, err)
		}
	}
	if u, err := ReplyUsage(gjson.Parse(`{"usage":{"prompt_tokens":100,"completion_tokens":100}}`), 3, 100); err != nil || u.Input != 100 {
		t.Fatalf("counts at the bound: %+v, %v", u, err)
	}
	if got := ReplyUsageField(gjson.Parse(`{"content":"x"}`), 2); got != "body.messages[2]" {
		t.Fatalf("field of a reply without usage: %s", got)
	}
}

// TestAnthropicUsageSaturates: cache counts added to absurd input counts
// do not wrap around to a negative count.
func TestAnthropicUsageSaturates(t *testing.T) {
	var a anthropicUsage
	a.apply(gjson.Parse(`{"input_tokens":9223372036854775807,"cache_read_input_tokens":9223372036854775807,"cache_creation_input_tokens":5}`))
	if u := a.usage(); u.Input != math.MaxInt64 {
		t.Fatalf("input %d", u.Input)
	}
}
