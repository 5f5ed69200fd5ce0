package function

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/tidwall/gjson"
	_ "modernc.org/sqlite"

	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/postgres"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
	"github.com/openwebui-monitor/owmon/internal/testpg"
	"github.com/openwebui-monitor/owmon/internal/tokens"
)

func TestMain(m *testing.M) { os.Exit(testpg.Run(m)) }

const apiKey = "sk-monitor-test-key"

var counter = tokens.New()

type fixture struct {
	st   store.Store
	srv  *httptest.Server
	kind string
	dsn  string // file path for SQLite, URL for PostgreSQL
}

// eachBackend runs fn against a fresh SQLite file and a fresh PostgreSQL database.
func eachBackend(t *testing.T, cfg ledger.Config, fn func(t *testing.T, f *fixture)) {
	t.Helper()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			f := &fixture{kind: kind}
			var err error
			if kind == "sqlite" {
				f.dsn = filepath.Join(t.TempDir(), "monitor.db")
				f.st, err = sqlite.Open(context.Background(), f.dsn)
			} else {
				f.dsn = testpg.DSN(t)
				f.st, err = postgres.Open(context.Background(), f.dsn)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.st.Close() })
			e := New(ledger.New(f.st, cfg), counter, apiKey, 64<<10, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
			f.srv = httptest.NewServer(e)
			t.Cleanup(f.srv.Close)
			fn(t, f)
		})
	}
}

func amt(t *testing.T, s string) money.Amount {
	t.Helper()
	v, err := money.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func defaultConfig(t *testing.T) ledger.Config {
	return ledger.Config{
		InitBalance:  amt(t, "10"),
		DefaultPrice: pricing.Price{Input: amt(t, "60"), Output: amt(t, "60"), PerMessage: -1},
	}
}

func (f *fixture) post(t *testing.T, path, body string) (int, gjson.Result) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q, body %s", path, ct, b)
	}
	if !gjson.ValidBytes(b) {
		t.Fatalf("%s: invalid JSON answer %q", path, b)
	}
	return resp.StatusCode, gjson.ParseBytes(b)
}

func (f *fixture) balance(t *testing.T, user string) money.Amount {
	t.Helper()
	u, err := f.st.User(context.Background(), user)
	if err != nil {
		t.Fatalf("user %s: %v", user, err)
	}
	return u.Balance
}

func (f *fixture) price(t *testing.T, id, in, out, perMsg string) {
	t.Helper()
	_, err := f.st.PutModelPrice(context.Background(), store.ModelPrice{ID: id, Name: id, Input: amt(t, in), Output: amt(t, out), PerMessage: amt(t, perMsg)})
	if err != nil {
		t.Fatal(err)
	}
}

// body builds a filter-function request.
func filterBody(user, model, chatID, msgID string, messages string) string {
	return fmt.Sprintf(`{"user":{"id":%q,"email":"%s@example.com","name":"User %s","role":"user"},
		"body":{"model":%q,"chat_id":%q,"id":%q,"messages":%s}}`, user, user, user, model, chatID, msgID, messages)
}

func inletBody(user, model, chatID, msgID string) string {
	return fmt.Sprintf(`{"user":{"id":%q,"email":"%s@example.com","name":"User %s","role":"user"},
		"body":{"model":%q,"stream":true,"messages":[{"role":"user","content":"hi"}],
		"metadata":{"chat_id":%q,"message_id":%q,"session_id":"s1"}}}`, user, user, user, model, chatID, msgID)
}

const conversation = `[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in French."}`

func withReply(reply string) string { return conversation + "," + reply + "]" }

// number checks a JSON number's exact text.
func number(t *testing.T, r gjson.Result, field, want string) {
	t.Helper()
	got := r.Get(field)
	if got.Type != gjson.Number {
		t.Fatalf("%s is %s, want the number %s (answer %s)", field, got.Type, want, r.Raw)
	}
	if amt(t, got.Raw) != amt(t, want) {
		t.Fatalf("%s = %s, want %s (answer %s)", field, got.Raw, want, r.Raw)
	}
}

func TestOutletChargesReportedUsage(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		f.price(t, "gpt-4o", "2.5", "10", "-1")
		status, r := f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c1", "m1",
			withReply(`{"role":"assistant","content":"Bonjour","usage":{"prompt_tokens":1200,"completion_tokens":350,"total_tokens":1550}}`)))
		if status != 200 || !r.Get("success").Bool() || r.Get("message").Str != "Request successful" {
			t.Fatalf("status %d answer %s", status, r.Raw)
		}
		number(t, r, "inputTokens", "1200")
		number(t, r, "outputTokens", "350")
		number(t, r, "totalCost", "0.0065") // 1200×2.5/1M + 350×10/1M
		number(t, r, "newBalance", "9.9935")
		if got := f.balance(t, "u1"); got != amt(t, "9.9935") {
			t.Fatalf("stored balance %s", got)
		}
		rec, err := f.st.RecordByKey(context.Background(), ledger.Key("c1", "m1"))
		if err != nil || rec.Estimated || rec.Source != ledger.SourceFunction || rec.Status != ledger.StatusCompleted {
			t.Fatalf("record %+v, %v", rec, err)
		}
	})
}

func TestOutletUsageShapes(t *testing.T) {
	shapes := map[string]string{
		"openai":     `{"prompt_tokens":10,"completion_tokens":20}`,
		"normalized": `{"input_tokens":10,"output_tokens":20,"total_tokens":30}`,
		"ollama":     `{"prompt_eval_count":10,"eval_count":20}`,
		"total only": `{"prompt_tokens":10,"total_tokens":30}`,
	}
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		f.price(t, "m", "1000000", "1000000", "-1") // 1 per token
		for name, usage := range shapes {
			status, r := f.post(t, OutletPath, filterBody("u1", "m", "c", name,
				withReply(`{"role":"assistant","content":"x","usage":`+usage+`}`)))
			if status != 200 {
				t.Fatalf("%s: %d %s", name, status, r.Raw)
			}
			number(t, r, "inputTokens", "10")
			number(t, r, "outputTokens", "20")
			number(t, r, "totalCost", "30")
		}
		// OpenWebUI 0.4.x put usage in "info".
		_, r := f.post(t, OutletPath, filterBody("u1", "m", "c", "info",
			withReply(`{"role":"assistant","content":"x","info":{"prompt_tokens":3,"completion_tokens":4,"openai":true}}`)))
		number(t, r, "totalCost", "7")
	})
}

func TestOutletCountsTokensWhenUsageAbsent(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		reply := `{"role":"assistant","content":"Bonjour ! Comment allez-vous aujourd'hui ?"}`
		status, r := f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c1", "m1", withReply(reply)))
		if status != 200 {
			t.Fatalf("%d %s", status, r.Raw)
		}
		wantIn := counter.Messages("gpt-4o", gjson.Parse(conversation+"]"))
		wantOut := counter.Text("gpt-4o", "Bonjour ! Comment allez-vous aujourd'hui ?")
		if wantIn < 10 || wantOut < 5 {
			t.Fatalf("implausible counts %d %d", wantIn, wantOut)
		}
		number(t, r, "inputTokens", fmt.Sprint(wantIn))
		number(t, r, "outputTokens", fmt.Sprint(wantOut))
		want := pricing.Price{Input: amt(t, "60"), Output: amt(t, "60"), PerMessage: -1}.Cost(wantIn, wantOut)
		number(t, r, "totalCost", want.String())
		rec, err := f.st.RecordByKey(context.Background(), ledger.Key("c1", "m1"))
		if err != nil || !rec.Estimated {
			t.Fatalf("record not marked estimated: %+v %v", rec, err)
		}
	})
}

func TestInletPreChargeIsNettedByOutlet(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.InletCosts = pricing.InletCosts{Default: amt(t, "0.1")}
	eachBackend(t, cfg, func(t *testing.T, f *fixture) {
		f.price(t, "gpt-4o", "2.5", "10", "-1")
		status, r := f.post(t, InletPath, inletBody("u1", "gpt-4o", "c1", "m1"))
		if status != 200 || !r.Get("success").Bool() {
			t.Fatalf("%d %s", status, r.Raw)
		}
		number(t, r, "balance", "9.9")
		number(t, r, "inlet_cost", "0.1")
		// A retried inlet for the same message takes nothing again.
		_, r = f.post(t, InletPath, inletBody("u1", "gpt-4o", "c1", "m1"))
		number(t, r, "balance", "9.9")
		if r.Get("inlet_cost").Exists() {
			t.Fatalf("retried inlet charged again: %s", r.Raw)
		}
		_, r = f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c1", "m1",
			withReply(`{"role":"assistant","content":"Bonjour","usage":{"prompt_tokens":1200,"completion_tokens":350}}`)))
		number(t, r, "totalCost", "0.0065")
		number(t, r, "newBalance", "9.9935")
		l, err := f.st.Ledger(context.Background(), "u1")
		if err != nil || l.Records != 1 || l.Charges != amt(t, "0.0065") {
			t.Fatalf("ledger %+v %v", l, err)
		}
	})
}

func TestInletAtOrBelowZeroTakesNothing(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.InitBalance = 0
	cfg.InletCosts = pricing.InletCosts{Default: amt(t, "0.1")}
	eachBackend(t, cfg, func(t *testing.T, f *fixture) {
		for i := 0; i < 3; i++ {
			status, r := f.post(t, InletPath, inletBody("u0", "gpt-4o", "c", fmt.Sprint("m", i)))
			if status != 200 {
				t.Fatalf("%d %s", status, r.Raw)
			}
			number(t, r, "balance", "0")
			if r.Get("inlet_cost").Exists() {
				t.Fatalf("pre-charged a user at zero: %s", r.Raw)
			}
		}
		if got := f.balance(t, "u0"); got != 0 {
			t.Fatalf("balance moved to %s", got)
		}
	})
}

func TestBlockedUserInletAnswersMinusOne(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		f.post(t, InletPath, inletBody("u1", "gpt-4o", "c", "m0"))
		if err := f.st.SetBlocked(context.Background(), "u1", true); err != nil {
			t.Fatal(err)
		}
		_, r := f.post(t, InletPath, inletBody("u1", "gpt-4o", "c", "m1"))
		number(t, r, "balance", "-1")
	})
}

func TestRepeatedOutletChargesOnce(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		req := filterBody("u1", "gpt-4o", "c1", "m1", withReply(`{"role":"assistant","content":"x","usage":{"prompt_tokens":1000,"completion_tokens":1000}}`))
		_, first := f.post(t, OutletPath, req)
		for i := 0; i < 3; i++ {
			_, again := f.post(t, OutletPath, req)
			for _, k := range []string{"inputTokens", "outputTokens", "totalCost", "newBalance"} {
				if again.Get(k).Raw != first.Get(k).Raw {
					t.Fatalf("repeat %s = %s, first %s", k, again.Get(k).Raw, first.Get(k).Raw)
				}
			}
		}
		number(t, first, "totalCost", "0.12")
		if got := f.balance(t, "u1"); got != amt(t, "9.88") {
			t.Fatalf("balance %s", got)
		}
	})
}

func TestFailedAnswerCostsNothingAndReleasesPreCharge(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.InletCosts = pricing.InletCosts{Default: amt(t, "0.5")}
	eachBackend(t, cfg, func(t *testing.T, f *fixture) {
		f.post(t, InletPath, inletBody("u1", "gpt-4o", "c1", "m1"))
		_, r := f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c1", "m1", withReply(`{"role":"assistant","content":""}`)))
		number(t, r, "totalCost", "0")
		number(t, r, "newBalance", "10")
		rec, err := f.st.RecordByKey(context.Background(), ledger.Key("c1", "m1"))
		if err != nil || rec.Status != ledger.StatusFailed {
			t.Fatalf("record %+v %v", rec, err)
		}
	})
}

func TestReportedZeroIsACount(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		f.price(t, "m", "1000000", "1000000", "-1")
		_, r := f.post(t, OutletPath, filterBody("u1", "m", "c", "z",
			withReply(`{"role":"assistant","content":"","usage":{"prompt_tokens":100,"completion_tokens":0}}`)))
		number(t, r, "outputTokens", "0")
		number(t, r, "totalCost", "100")
	})
}

func TestPerMessagePriceChargesContentWithZeroTokens(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		f.price(t, "flat", "0", "0", "0.02")
		_, r := f.post(t, OutletPath, filterBody("u1", "flat", "c", "m",
			withReply(`{"role":"assistant","content":"An image.","usage":{"prompt_tokens":0,"completion_tokens":0}}`)))
		number(t, r, "totalCost", "0.02")
	})
}

func TestDerivedModelsInheritBasePrices(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		f.price(t, "gpt-4o", "1000000", "0", "-1")
		usage := `{"role":"assistant","content":"x","usage":{"prompt_tokens":2,"completion_tokens":5}}`
		// A pipe's sub-model: the id after the last '.'.
		_, r := f.post(t, OutletPath, filterBody("u1", "my_pipe.gpt-4o", "c", "a", withReply(usage)))
		number(t, r, "totalCost", "2")
		// A workspace model naming its base in model_item.info.base_model_id.
		req := strings.Replace(filterBody("u1", "my-assistant", "c", "b", withReply(usage)),
			`"model":"my-assistant"`, `"model":"my-assistant","model_item":{"info":{"base_model_id":"gpt-4o"}}`, 1)
		_, r = f.post(t, OutletPath, req)
		number(t, r, "totalCost", "2")
		// Unknown models get the defaults and are recorded for an admin to price.
		_, r = f.post(t, OutletPath, filterBody("u1", "brand-new", "c", "c", withReply(usage)))
		number(t, r, "totalCost", "0.00042") // 7 tokens × 60/1M
		p, err := f.st.ModelPrice(context.Background(), "brand-new")
		if err != nil || p.Priced {
			t.Fatalf("unknown model not recorded as unpriced: %+v %v", p, err)
		}
	})
}

// TestClientErrorsWriteNothing sends bad requests and checks each gets its
// 4xx with a message naming what was wrong, and that nothing was stored.
func TestClientErrorsWriteNothing(t *testing.T) {
	ok := withReply(`{"role":"assistant","content":"x"}`)
	cases := []struct {
		name, path, body, auth string
		status                 int
		mention                string
	}{
		{"no auth", OutletPath, filterBody("u1", "m", "c", "m", ok), "", 401, "Unauthorized"},
		{"wrong key", OutletPath, filterBody("u1", "m", "c", "m", ok), "Bearer nope", 401, "Unauthorized"},
		{"basic auth", InletPath, inletBody("u1", "m", "c", "m"), "Basic " + apiKey, 401, "Unauthorized"},
		{"malformed JSON", OutletPath, `{"user":`, "", 400, "JSON"},
		{"not an object", OutletPath, `[1,2]`, "", 400, "object"},
		{"missing user", OutletPath, `{"body":{"model":"m","messages":[]}}`, "", 400, "user"},
		{"missing user.id", OutletPath, `{"user":{"name":"x"},"body":{"model":"m","messages":[]}}`, "", 400, "user.id"},
		{"numeric user.id", InletPath, `{"user":{"id":5},"body":{"model":"m","messages":[]}}`, "", 400, "user.id"},
		{"empty user.id", InletPath, `{"user":{"id":""},"body":{"model":"m","messages":[]}}`, "", 400, "user.id"},
		{"missing messages", OutletPath, `{"user":{"id":"u1"},"body":{"model":"m"}}`, "", 400, "body.messages"},
		{"messages not a list", InletPath, `{"user":{"id":"u1"},"body":{"model":"m","messages":"hi"}}`, "", 400, "body.messages"},
		{"missing model", OutletPath, `{"user":{"id":"u1"},"body":{"messages":[]}}`, "", 400, "body.model"},
		{"name not a string", OutletPath, `{"user":{"id":"u1","name":[1]},"body":{"model":"m","messages":[]}}`, "", 400, "user.name"},
		{"usage not numbers", OutletPath, filterBody("u1", "m", "c", "m", withReply(`{"role":"assistant","content":"x","usage":{"prompt_tokens":"12"}}`)), "", 400, "prompt_tokens"},
		{"negative tokens", OutletPath, filterBody("u1", "m", "c", "m", withReply(`{"role":"assistant","content":"x","usage":{"completion_tokens":-3}}`)), "", 400, "completion_tokens"},
		{"too large", OutletPath, filterBody("u1", "m", "c", "m", withReply(`{"role":"assistant","content":"`+strings.Repeat("a", 70<<10)+`"}`)), "", 413, "max_body_size"},
	}
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		for _, c := range cases {
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+c.path, strings.NewReader(c.body))
			switch c.auth {
			case "":
				if c.status != 401 {
					req.Header.Set("Authorization", "Bearer "+apiKey)
				}
			default:
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !bytes.Contains(b, []byte(c.mention)) {
				t.Errorf("%s: %d %s, want %d mentioning %q", c.name, resp.StatusCode, b, c.status, c.mention)
			}
			if c.status == 400 && gjson.GetBytes(b, "error_type").Str != "invalid_request" {
				t.Errorf("%s: error_type %s", c.name, b)
			}
		}
		// A GET is not a charge either.
		resp, err := http.Get(f.srv.URL + OutletPath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET answered %d", resp.StatusCode)
		}
		if _, err := f.st.User(context.Background(), "u1"); err != store.ErrNotFound {
			t.Fatalf("a bad request wrote a user: %v", err)
		}
	})
}

// TestStorageFailureIsA503 breaks the real database under the endpoint.
func TestStorageFailureIsA503(t *testing.T) {
	eachBackend(t, defaultConfig(t), func(t *testing.T, f *fixture) {
		f.post(t, InletPath, inletBody("u1", "gpt-4o", "c", "m0"))
		before := f.balance(t, "u1")
		f.exec(t, "DROP TABLE usage_records")
		status, r := f.post(t, OutletPath, filterBody("u1", "gpt-4o", "c", "m1", withReply(`{"role":"assistant","content":"x","usage":{"prompt_tokens":1,"completion_tokens":1}}`)))
		if status != http.StatusServiceUnavailable || r.Get("error_type").Str != "storage_unavailable" {
			t.Fatalf("%d %s", status, r.Raw)
		}
		if got := f.balance(t, "u1"); got != before {
			t.Fatalf("a failed charge moved the balance from %s to %s", before, got)
		}
	})
}

// exec runs SQL on the fixture's database through a connection of its own.
func (f *fixture) exec(t *testing.T, query string) {
	t.Helper()
	driver := "sqlite"
	if f.kind == "postgres" {
		driver = "pgx"
	}
	db, err := sql.Open(driver, f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
