package function

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/store"
)

func usageBody(user, chatID, msgID string) string {
	return `{"user":{"id":"` + user + `"},"chat_id":"` + chatID + `","message_id":"` + msgID + `"}`
}

// TestUsageAnswersOneMessage: /api/v1/usage (what the usage action asks)
// answers a charged message's tokens, cost, status and path, with the
// user's balance now and the same figures the outlet answered; another
// user's message and an unknown one are 404; a message charged by the
// provider meter is the sum of its records; bad input is a 400 naming the
// field; it takes the api_key like inlet and outlet, and only POST.
func TestUsageAnswersOneMessage(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		f.price(t, "gpt-4o", "2.5", "10", "-1")
		_, out := f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c1", "m1",
			withReply(`{"role":"assistant","content":"Bonjour","usage":{"prompt_tokens":1200,"completion_tokens":350}}`)))
		status, r := f.post(t, UsagePath, usageBody("u1", "c1", "m1"))
		if status != 200 || !r.Get("success").Bool() {
			t.Fatalf("usage: %d %s", status, r.Raw)
		}
		for _, field := range []string{"inputTokens", "outputTokens", "totalCost"} {
			number(t, r, field, out.Get(field).Raw)
		}
		number(t, r, "balance", "9.9935")
		if r.Get("model").Str != "gpt-4o" || r.Get("status").Str != ledger.StatusCompleted ||
			r.Get("source").Str != ledger.SourceFunction || r.Get("estimated").Bool() {
			t.Fatalf("usage: %s", r.Raw)
		}

		// The balance is the user's now, after later charges.
		f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c1", "m2",
			withReply(`{"role":"assistant","content":"Salut","usage":{"prompt_tokens":1000,"completion_tokens":0}}`)))
		_, r = f.post(t, UsagePath, usageBody("u1", "c1", "m1"))
		number(t, r, "totalCost", "0.0065")
		number(t, r, "balance", "9.991")

		for name, body := range map[string]string{
			"another user's message": usageBody("u2", "c1", "m1"),
			"an unknown message":     usageBody("u1", "c1", "nope"),
			"another chat":           usageBody("u1", "c2", "m1"),
		} {
			if status, r := f.post(t, UsagePath, body); status != 404 || r.Get("error_type").Str != "not_found" {
				t.Errorf("%s: %d %s", name, status, r.Raw)
			}
		}
		for body, field := range map[string]string{
			`{"user":{"id":"u1"},"chat_id":"c1"}`:                  "message_id",
			`{"chat_id":"c1","message_id":"m1"}`:                   "user.id",
			usageBody("u1", "c1", "m1") + `{"user":{"id":"u1"}}`:   "body",
			`{"user":{"id":"u1"},"chat_id":"c1","message_id":"m1"`: "body",
			`{"user":{"id":1},"chat_id":"c1","message_id":"m1"}`:   "body",
		} {
			status, r := f.post(t, UsagePath, body)
			if status != 400 || !strings.HasPrefix(r.Get("error").Str, field+":") {
				t.Errorf("%s: %d %s, want a 400 naming %s", body, status, r.Raw, field)
			}
		}

		// The provider meter's records of one message are summed.
		ctx := context.Background()
		for i, key := range []string{ledger.Key("c3", "m3"), ""} {
			if _, err := f.st.Charge(ctx, store.Record{UserID: "u1", Model: "gpt-4o", InputTokens: 100, OutputTokens: int64(10 * (i + 1)),
				Cost: amt(t, "0.01"), Source: ledger.SourceProvider, Status: ledger.StatusCompleted,
				ChatID: "c3", MessageID: "m3", Key: key}); err != nil {
				t.Fatal(err)
			}
		}
		_, r = f.post(t, UsagePath, usageBody("u1", "c3", "m3"))
		number(t, r, "inputTokens", "200")
		number(t, r, "outputTokens", "30")
		number(t, r, "totalCost", "0.02")
		number(t, r, "balance", "9.971")

		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+UsagePath, strings.NewReader(usageBody("u1", "c1", "m1")))
		req.Header.Set("Authorization", "Bearer wrong-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || strings.Contains(string(b), "totalCost") {
			t.Errorf("wrong key: %d %s", resp.StatusCode, b)
		}
		resp, err = http.Get(f.srv.URL + UsagePath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 {
			t.Errorf("GET: %d", resp.StatusCode)
		}
	})
}
