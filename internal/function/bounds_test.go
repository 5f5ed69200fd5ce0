package function

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// books is what a user's ledger says, to check that a refused call wrote
// nothing.
func (f *fixture) books(t *testing.T, user string) store.Ledger {
	t.Helper()
	l, err := f.st.Ledger(context.Background(), user)
	if err != nil {
		t.Fatalf("ledger of %s: %v", user, err)
	}
	return l
}

func (f *fixture) noRecord(t *testing.T, chatID, msgID string) {
	t.Helper()
	if r, err := f.st.RecordByKey(context.Background(), ledger.Key(chatID, msgID)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused outlet wrote %+v, %v", r, err)
	}
}

func usageReply(usage string) string {
	return withReply(`{"role":"assistant","content":"Bonjour","usage":` + usage + `}`)
}

// TestOutletRefusesAbsurdTokenCounts: an outlet reporting more tokens than
// max_tokens_per_call is a 400 naming the field, and nothing is written.
func TestOutletRefusesAbsurdTokenCounts(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.MaxTokensPerCall = 100_000_000
	max63 := strconv.FormatInt(math.MaxInt64, 10)
	cases := []struct{ usage, field, value string }{
		{`{"prompt_tokens":` + max63 + `,"completion_tokens":5}`, "body.messages[2].usage.prompt_tokens", max63},
		{`{"input_tokens":3,"output_tokens":100000001}`, "body.messages[2].usage.output_tokens", "100000001"},
		{`{"prompt_eval_count":1,"eval_count":` + max63 + `}`, "body.messages[2].usage.eval_count", max63},
		{`{"prompt_tokens":1,"total_tokens":` + max63 + `}`, "body.messages[2].usage.total_tokens", max63},
		{`{"prompt_tokens":1,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":` + max63 + `}}`,
			"body.messages[2].usage.prompt_tokens_details.cached_tokens", max63},
	}
	eachBackend(t, cfg, func(t *testing.T, f *fixture) {
		if status, r := f.post(t, InletPath, inletBody("u1", "gpt-4o", "c", "m0")); status != 200 {
			t.Fatalf("inlet %d %s", status, r.Raw)
		}
		before := f.books(t, "u1")
		for i, c := range cases {
			msg := "m" + strconv.Itoa(i+1)
			status, r := f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c", msg, usageReply(c.usage)))
			e := r.Get("error").Str
			if status != http.StatusBadRequest || r.Get("error_type").Str != "invalid_request" ||
				!strings.HasPrefix(e, c.field+": ") || !strings.Contains(e, c.value) ||
				!strings.Contains(e, "max_tokens_per_call (100000000)") {
				t.Fatalf("%s: %d %s, want a 400 naming %s", c.usage, status, r.Raw, c.field)
			}
			f.noRecord(t, "c", msg)
		}
		if after := f.books(t, "u1"); after != before {
			t.Fatalf("refused outlets changed the books: %+v, then %+v", before, after)
		}
		// The bound itself is a count.
		status, r := f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c", "ok",
			usageReply(`{"prompt_tokens":100000000,"completion_tokens":0}`)))
		if status != 200 {
			t.Fatalf("a count at the bound: %d %s", status, r.Raw)
		}
		number(t, r, "inputTokens", "100000000")
		number(t, r, "totalCost", "6000")
	})
}

// TestOutletOverflowIs422: without a token bound, a cost that does not fit
// in an amount, or a charge that would take the balance past the smallest
// amount, is a 422 naming the usage report, and nothing is written.
func TestOutletOverflowIs422(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		f.post(t, InletPath, inletBody("u1", "gpt-4o", "c", "m0"))
		before := f.books(t, "u1")
		status, r := f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c", "m1",
			usageReply(`{"prompt_tokens":9223372036854775807,"completion_tokens":5}`)))
		if status != http.StatusUnprocessableEntity || r.Get("error_type").Str != "out_of_range" ||
			!strings.HasPrefix(r.Get("error").Str, "body.messages[2].usage: ") ||
			!strings.Contains(r.Get("error").Str, "largest amount") {
			t.Fatalf("cost overflow: %d %s", status, r.Raw)
		}
		f.noRecord(t, "c", "m1")
		if after := f.books(t, "u1"); after != before {
			t.Fatalf("a refused outlet changed the books: %+v, then %+v", before, after)
		}

		// A balance at the bottom of the range cannot pay for anything.
		if _, err := f.st.SetBalance(context.Background(), "u1", money.Min+1, "admin", ""); err != nil {
			t.Fatal(err)
		}
		before = f.books(t, "u1")
		status, r = f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c", "m2",
			usageReply(`{"prompt_tokens":1000,"completion_tokens":5}`)))
		if status != http.StatusUnprocessableEntity || !strings.HasPrefix(r.Get("error").Str, "body.messages[2].usage: ") ||
			!strings.Contains(r.Get("error").Str, "smallest amount") {
			t.Fatalf("balance overflow: %d %s", status, r.Raw)
		}
		f.noRecord(t, "c", "m2")
		if after := f.books(t, "u1"); after != before {
			t.Fatalf("a refused outlet changed the books: %+v, then %+v", before, after)
		}
		// Counted tokens name the messages they were counted from.
		status, r = f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c", "m3",
			withReply(`{"role":"assistant","content":"Bonjour"}`)))
		if status != http.StatusUnprocessableEntity || !strings.HasPrefix(r.Get("error").Str, "body.messages: ") {
			t.Fatalf("balance overflow, counted: %d %s", status, r.Raw)
		}
	})
}

// TestTrailingDataIs400: a second JSON value, or anything but white space,
// after the body is a 400 on both endpoints, and nothing is written.
func TestTrailingDataIs400(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		for _, c := range []struct{ path, body string }{
			{InletPath, inletBody("u1", "gpt-4o", "c", "m0")},
			{OutletPath, filterBody("u1", "gpt-4o", "c", "m1", usageReply(`{"prompt_tokens":1,"completion_tokens":1}`))},
		} {
			for _, tail := range []string{`{"user":{"id":"u2"}}`, `x`, `]`, `,`, "\x00"} {
				status, r := f.post(t, c.path, c.body+tail)
				if status != http.StatusBadRequest || r.Get("error_type").Str != "invalid_request" || r.Get("error").Str == "" {
					t.Fatalf("%s with %q after the body: %d %s", c.path, tail, status, r.Raw)
				}
			}
			if status, _ := f.post(t, c.path, c.body+" \n\t"); status != 200 {
				t.Fatalf("%s with white space after the body: %d", c.path, status)
			}
		}
		if _, err := f.st.User(context.Background(), "u2"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("trailing data wrote a user: %v", err)
		}
	})
}

// TestBadBodiesAreNeverServerErrors sends malformed, oversized-number,
// overflowing and trailing-data bodies to both endpoints, with and without
// a token bound, and checks that none gets a 5xx.
func TestBadBodiesAreNeverServerErrors(t *testing.T) {
	max63 := strconv.FormatInt(math.MaxInt64, 10)
	usages := []string{
		`{"prompt_tokens":` + max63 + `,"completion_tokens":` + max63 + `}`,
		`{"prompt_tokens":9223372036854775808}`,
		`{"prompt_tokens":1e400}`,
		`{"prompt_tokens":-9223372036854775808}`,
		`{"prompt_tokens":99999999999999999999999999999}`,
		`{"prompt_tokens":1.5}`,
		`{"prompt_tokens":NaN}`,
		`{"input_tokens":1,"total_tokens":` + max63 + `}`,
		`{"prompt_tokens":1,"completion_tokens":1,"completion_tokens_details":{"reasoning_tokens":` + max63 + `}}`,
		`"lots"`, `[]`, `null`,
	}
	var bodies []string
	for _, u := range usages {
		bodies = append(bodies,
			filterBody("u1", "gpt-4o", "c", "m-"+strconv.Itoa(len(bodies)), usageReply(u)),
			filterBody("u1", "gpt-4o", "c", "i-"+strconv.Itoa(len(bodies)), withReply(`{"role":"assistant","content":"x","info":`+u+`}`)))
	}
	bodies = append(bodies,
		``, `{`, `}`, `null`, `[]`, `"x"`, `1e400`, `{"user":1e400}`, `{"user":{"id":"u1"},"body":{"model":"m","messages":[1e400]}}`,
		`{"user":{"id":"u1"},"body":{"model":"m","messages":[]}}{"user":{"id":"u1"}}`,
		inletBody("u1", "m", "c", "m")+`{}`,
		strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000),
		"\xff\xfe{}",
	)
	for _, bound := range []int64{0, 100_000_000} {
		cfg := defaultConfig(t)
		cfg.MaxTokensPerCall = bound
		eachBackend(t, cfg, func(t *testing.T, f *fixture) {
			f.post(t, InletPath, inletBody("u1", "gpt-4o", "c", "m0"))
			// A balance near the bottom of the range makes charges overflow too.
			if _, err := f.st.SetBalance(context.Background(), "u1", money.Min+1, "admin", ""); err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{InletPath, OutletPath} {
				for _, b := range bodies {
					req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(b))
					req.Header.Set("Authorization", "Bearer "+apiKey)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode >= 500 {
						t.Errorf("%s (bound %d) with %.120q: %d", path, bound, b, resp.StatusCode)
					}
				}
			}
			// Nothing could be charged at the bottom of the range.
			if l := f.books(t, "u1"); l.Balance != money.Min+1 || l.Charges != 0 {
				t.Fatalf("books after the bad bodies: %+v", l)
			}
			if status, r := f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c", "fine", usageReply(`{"prompt_tokens":0,"completion_tokens":0}`))); status != 200 || !gjson.Valid(r.Raw) {
				t.Fatalf("an ordinary outlet afterwards: %d %s", status, r.Raw)
			}
		})
	}
}
