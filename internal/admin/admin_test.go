package admin

import (
	"context"
	"encoding/csv"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/postgres"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
	"github.com/openwebui-monitor/owmon/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Run(m)) }

const token = "admin-token"

type env struct {
	st      store.Store
	l       *ledger.Ledger
	srv     *httptest.Server
	backups string // Options.BackupDir
}

func eachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			var st store.Store
			var err error
			if kind == "sqlite" {
				st, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "a.db"))
			} else {
				st, err = postgres.Open(context.Background(), testpg.DSN(t))
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			l := ledger.New(st, ledger.Config{DefaultPrice: pricing.Price{Input: money.Units(1_000_000), Output: money.Units(1_000_000), PerMessage: -1}})
			backups := filepath.Join(t.TempDir(), "data")
			srv := httptest.NewServer(New(l, Options{AccessToken: token, MaxBodyBytes: 1 << 20, BackupDir: backups,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))}))
			t.Cleanup(srv.Close)
			fn(t, &env{st: st, l: l, srv: srv, backups: backups})
		})
	}
}

func (e *env) call(t *testing.T, method, path, body string) (int, gjson.Result, string) {
	t.Helper()
	status, b := e.raw(t, method, path, body)
	if status >= 500 {
		t.Fatalf("%s %s: %d %s", method, path, status, b)
	}
	return status, gjson.Parse(b), b
}

func (e *env) user(t *testing.T, id, name, email string, balance int64) {
	t.Helper()
	if _, err := e.st.UpsertUser(context.Background(), store.UserInfo{ID: id, Name: name, Email: email}, money.Units(balance)); err != nil {
		t.Fatal(err)
	}
}

func TestAuth(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + token, token} {
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/users", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 401 || string(b) != `{"error":"Unauthorized"}` {
				t.Fatalf("auth %q: %d %s", auth, resp.StatusCode, b)
			}
		}
	})
	// No token configured: nothing is served.
	srv := httptest.NewServer(New(ledger.New(nil, ledger.Config{}), Options{MaxBodyBytes: 1 << 20}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/users", nil)
	req.Header.Set("Authorization", "Bearer ")
	resp, _ := http.DefaultClient.Do(req)
	if resp.StatusCode != 401 {
		t.Fatalf("empty token: %d", resp.StatusCode)
	}
}

func TestUsers(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.user(t, "u1", "Alice", "alice@example.com", 30)
		e.user(t, "u2", "Bob", "bob@example.com", 10)
		e.user(t, "u3", "Carol_%", "carol@example.com", 20)
		_, r, _ := e.call(t, "GET", "/api/v1/users?sortField=balance&sortOrder=descend&pageSize=2", "")
		if r.Get("total").Int() != 3 || r.Get("users.#").Int() != 2 || r.Get("users.0.id").Str != "u1" || r.Get("users.1.id").Str != "u3" {
			t.Fatalf("sorted page %s", r.Raw)
		}
		if r.Get("users.0.balance").Raw != "30" {
			t.Fatalf("balance not a number: %s", r.Raw)
		}
		_, r, _ = e.call(t, "GET", "/api/v1/users?search=BOB@", "")
		if r.Get("total").Int() != 1 || r.Get("users.0.id").Str != "u2" {
			t.Fatalf("search %s", r.Raw)
		}
		_, r, _ = e.call(t, "GET", "/api/v1/users?search=_%25", "")
		if r.Get("total").Int() != 1 || r.Get("users.0.id").Str != "u3" {
			t.Fatalf("literal %%/_ search %s", r.Raw)
		}
		// Sort fields come from a fixed list: an injection attempt is a 400.
		for _, bad := range []string{"balance;DROP TABLE users", "password", "balance desc"} {
			status, r, _ := e.call(t, "GET", "/api/v1/users?sortField="+url.QueryEscape(bad), "")
			if status != 400 || !strings.Contains(r.Get("error").Str, "sortField") {
				t.Fatalf("sortField %q: %d %s", bad, status, r.Raw)
			}
		}
		if status, _, _ := e.call(t, "GET", "/api/v1/users?pageSize=9999", ""); status != 400 {
			t.Fatalf("pageSize accepted")
		}
		if _, err := e.st.User(context.Background(), "u1"); err != nil {
			t.Fatalf("users table hurt: %v", err)
		}

		// Balance: set, top up, history.
		status, r, _ := e.call(t, "PUT", "/api/v1/users/u2/balance", `{"balance": 12.3456789012}`)
		if status != 400 || !strings.Contains(r.Get("error").Str, "decimal") {
			t.Fatalf("too precise: %d %s", status, r.Raw)
		}
		status, r, _ = e.call(t, "PUT", "/api/v1/users/u2/balance", `{"balance": 12.5}`)
		if status != 200 || r.Get("balance").Raw != "12.5" || r.Get("oldBalance").Raw != "10" {
			t.Fatalf("set balance %d %s", status, r.Raw)
		}
		status, r, _ = e.call(t, "POST", "/api/v1/users/u2/topup", `{"amount": -2.5, "reason": "refund reversed"}`)
		if status != 200 || r.Get("balance").Raw != "10" {
			t.Fatalf("top-up %d %s", status, r.Raw)
		}
		_, r, _ = e.call(t, "GET", "/api/v1/users/u2/balance-history", "")
		if r.Get("changes.#").Int() != 2 || r.Get("changes.0.reason").Str != "refund reversed" ||
			r.Get("changes.0.old_balance").Raw != "12.5" || r.Get("changes.0.new_balance").Raw != "10" {
			t.Fatalf("history %s", r.Raw)
		}
		for body, want := range map[string]string{`{}`: "balance", `{"balance": "x"}`: "", `{"balance": 1, "extra": 2}`: "extra"} {
			status, r, _ := e.call(t, "PUT", "/api/v1/users/u2/balance", body)
			if (status != 400 && status != 422) || !strings.Contains(r.Get("error").Str, want) {
				t.Fatalf("%s: %d %s", body, status, r.Raw)
			}
		}
		if status, _, _ := e.call(t, "PUT", "/api/v1/users/nobody/balance", `{"balance": 1}`); status != 404 {
			t.Fatalf("unknown user: %d", status)
		}
		if l, _ := e.st.Ledger(context.Background(), "u2"); l.Initial+l.Adjustments-l.Charges != l.Balance || l.Balance != money.Units(10) {
			t.Fatalf("ledger %+v", l)
		}

		// Block, unblock, delete.
		status, r, _ = e.call(t, "PATCH", "/api/v1/users/u1", `{"deleted": true}`)
		if status != 200 || !r.Get("user.deleted").Bool() {
			t.Fatalf("block %d %s", status, r.Raw)
		}
		_, r, _ = e.call(t, "GET", "/api/v1/users?deleted=true", "")
		if r.Get("total").Int() != 1 || r.Get("users.0.id").Str != "u1" {
			t.Fatalf("blocked list %s", r.Raw)
		}
		e.call(t, "PATCH", "/api/v1/users/u1", `{"deleted": false}`)
		if u, _ := e.st.User(context.Background(), "u1"); u.Blocked {
			t.Fatal("unblock did not stick")
		}
		if status, _, _ := e.call(t, "DELETE", "/api/v1/users/u3", ""); status != 200 {
			t.Fatalf("delete %d", status)
		}
		if _, err := e.st.User(context.Background(), "u3"); err != store.ErrNotFound {
			t.Fatalf("deleted user still there: %v", err)
		}
		if status, _, _ := e.call(t, "DELETE", "/api/v1/users/u3", ""); status != 404 {
			t.Fatalf("second delete %d", status)
		}
	})
}

func TestPrices(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		// The price-sync tool's bare list, with one bad item among good ones.
		_, r, _ := e.call(t, "POST", "/api/v1/models/price", `[
			{"id": "gpt-4o", "input_price": 2.5, "output_price": 10},
			{"id": "flat", "input_price": 0, "output_price": 0, "per_msg_price": 0.02},
			{"id": "bad", "input_price": -1, "output_price": 1},
			{"input_price": 1, "output_price": 1},
			{"id": "words", "input_price": "cheap", "output_price": 1}]`)
		res := r.Get("results").Array()
		if len(res) != 5 || r.Get("success").Bool() {
			t.Fatalf("answer %s", r.Raw)
		}
		for i, want := range []bool{true, true, false, false, false} {
			if res[i].Get("success").Bool() != want || (!want && res[i].Get("error").Str == "") {
				t.Fatalf("item %d: %s", i, res[i].Raw)
			}
		}
		if !strings.Contains(res[2].Get("error").Str, "input_price") || !strings.Contains(res[3].Get("error").Str, "id") {
			t.Fatalf("errors do not name the field: %s", r.Raw)
		}
		if res[0].Get("data.input_price").Raw != "2.5" || res[1].Get("data.per_msg_price").Raw != "0.02" || res[0].Get("data.per_msg_price").Raw != "-1" {
			t.Fatalf("stored %s", r.Raw)
		}
		// The wrapped form, and the new price is used at once.
		e.l.Price(context.Background(), "gpt-4o", "") // warm the cache
		_, r, _ = e.call(t, "POST", "/api/v1/models/price", `{"updates": [{"id": "gpt-4o", "input_price": 3, "output_price": 12}]}`)
		if !r.Get("success").Bool() {
			t.Fatalf("%s", r.Raw)
		}
		if p, _ := e.l.Price(context.Background(), "gpt-4o", ""); p.Input != money.Units(3) {
			t.Fatalf("ledger still prices at %s", p.Input)
		}
		if _, err := e.st.ModelPrice(context.Background(), "bad"); err != store.ErrNotFound {
			t.Fatalf("an invalid item was stored: %v", err)
		}
		_, r, _ = e.call(t, "GET", "/api/v1/models/prices", "")
		if r.Get("#").Int() != 2 {
			t.Fatalf("prices %s", r.Raw)
		}
		if status, _, _ := e.call(t, "POST", "/api/v1/models/price", `{"nope": 1}`); status != 400 {
			t.Fatalf("shapeless body accepted")
		}
	})
}

func TestRecordsAndExport(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		names := map[string]string{"u1": `=HYPERLINK("evil")`, "u2": `Bob "the builder", Jr.`}
		e.user(t, "u1", names["u1"], "a@example.com", 100)
		e.user(t, "u2", names["u2"], "b@example.com", 100)
		for i, c := range []struct {
			user, model string
			in          int64
		}{{"u1", "gpt-4o", 15}, {"u2", "gpt-4o", 20}, {"u2", "-cmd", 30}} {
			who := store.UserInfo{ID: c.user, Name: names[c.user], Email: c.user[:1] + "@example.com"}
			if _, err := e.l.Charge(ctx, ledger.Answer{User: who, Model: c.model, InputTokens: c.in, MessageID: string(rune('a' + i))}); err != nil {
				t.Fatal(err)
			}
		}
		_, r, _ := e.call(t, "GET", "/api/v1/panel/records?sortField=cost&sortOrder=descend", "")
		if r.Get("total").Int() != 3 || r.Get("records.0.input_tokens").Int() != 30 || r.Get("records.0.cost").Raw != "30" {
			t.Fatalf("records %s", r.Raw)
		}
		_, r, _ = e.call(t, "GET", "/api/v1/panel/records?users=u2&models=gpt-4o", "")
		if r.Get("total").Int() != 1 || r.Get("records.0.user_id").Str != "u2" {
			t.Fatalf("filtered %s", r.Raw)
		}
		tomorrow := time.Now().UTC().Add(24 * time.Hour).Format("2006-01-02")
		_, r, _ = e.call(t, "GET", "/api/v1/panel/records?startDate="+tomorrow, "")
		if r.Get("total").Int() != 0 {
			t.Fatalf("future range %s", r.Raw)
		}
		for _, bad := range []string{"sortField=cost%3B%20DROP%20TABLE%20usage_records", "sortField=password", "sortOrder=sideways", "startDate=yesterday", "page=-1"} {
			if status, r, _ := e.call(t, "GET", "/api/v1/panel/records?"+bad, ""); status != 400 || r.Get("error").Str == "" {
				t.Fatalf("%s: %d %s", bad, status, r.Raw)
			}
		}
		// CSV: RFC 4180 quoting, formulas neutralised, the filter applied.
		status, _, raw := e.call(t, "GET", "/api/v1/panel/records/export?sortField=input_tokens", "")
		if status != 200 {
			t.Fatalf("export %d", status)
		}
		rows, err := csv.NewReader(strings.NewReader(raw)).ReadAll()
		if err != nil {
			t.Fatalf("not CSV: %v\n%s", err, raw)
		}
		if len(rows) != 4 || rows[0][0] != "time" {
			t.Fatalf("rows %q", rows)
		}
		if rows[1][2] != `'=HYPERLINK("evil")` || rows[2][2] != `Bob "the builder", Jr.` || rows[3][3] != "'-cmd" || rows[3][6] != "30" {
			t.Fatalf("cells %q", rows)
		}
		// Usage summary: by model, by user with the current name, by day.
		e.user(t, "u2", "Robert", "", 0)
		_, r, _ = e.call(t, "GET", "/api/v1/panel/usage", "")
		if r.Get("stats.totalCalls").Int() != 3 || r.Get("stats.totalCost").Raw != "65" || r.Get("stats.activeUsers").Int() != 2 ||
			r.Get("models.0.model_name").Str != "gpt-4o" || r.Get("models.0.total_cost").Raw != "35" ||
			r.Get("users.0.user_id").Str != "u2" || r.Get("users.0.nickname").Str != "Robert" || r.Get("daily.#").Int() != 1 {
			t.Fatalf("usage %s", r.Raw)
		}
	})
}

// oldBackup is a backup as the Next.js monitor wrote it: node-postgres
// renders DECIMAL columns as strings.
const oldBackup = `{
  "version": "1.0",
  "timestamp": "2025-03-01T10:00:00.000Z",
  "data": {
    "users": [
      {"id": "u-old", "email": "old@example.com", "name": "Old Timer", "role": "user", "balance": "7.5000", "created_at": "2024-12-01T08:00:00.000Z", "deleted": null},
      {"id": "u-gone", "email": "gone@example.com", "name": "Gone", "role": "user", "balance": "0.0000", "created_at": "2024-12-02T08:00:00.000Z", "deleted": true}
    ],
    "model_prices": [
      {"id": "gpt-4o", "name": "GPT-4o", "base_model_id": null, "input_price": "2.500000", "output_price": "10.000000", "per_msg_price": "-1.000000", "updated_at": "2025-01-01T00:00:00.000Z"}
    ],
    "user_usage_records": [
      {"id": 1, "user_id": "u-old", "nickname": "Old Timer", "use_time": "2025-02-01T12:00:00.000Z", "model_name": "gpt-4o", "input_tokens": 1000, "output_tokens": 200, "cost": "0.0045", "balance_after": "7.5045"},
      {"id": 2, "user_id": "u-old", "nickname": "Old Timer", "use_time": "2025-02-02T12:00:00.000Z", "model_name": "gpt-4o", "input_tokens": 10, "output_tokens": 0, "cost": "0.0045", "balance_after": "7.5000"}
    ]
  }
}`

func TestBackups(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		// The old monitor's backup moves over, with a ledger that adds up.
		status, r, _ := e.call(t, "POST", "/api/v1/panel/database/import", oldBackup)
		if status != 200 || r.Get("records").Int() != 2 || r.Get("users").Int() != 2 {
			t.Fatalf("old import %d %s", status, r.Raw)
		}
		l, err := e.st.Ledger(ctx, "u-old")
		if err != nil || l.Balance != amount(t, "7.5") || l.Records != 2 || l.Initial+l.Adjustments-l.Charges != l.Balance {
			t.Fatalf("ledger after the old import %+v %v", l, err)
		}
		if u, _ := e.st.User(ctx, "u-gone"); !u.Blocked {
			t.Fatal("deleted flag lost")
		}
		if p, err := e.st.ModelPrice(ctx, "gpt-4o"); err != nil || !p.Priced || p.Input != amount(t, "2.5") || p.PerMessage != money.Units(-1) {
			t.Fatalf("price %+v %v", p, err)
		}
		// Our own backup round-trips.
		e.call(t, "POST", "/api/v1/users/u-old/topup", `{"amount": 2.5, "reason": "gift"}`)
		_, _, exported := e.call(t, "GET", "/api/v1/panel/database/export", "")
		if gjson.Get(exported, "version").Str != backupVersion || gjson.Get(exported, "data.balance_changes.#").Int() != 1 {
			t.Fatalf("export %s", exported)
		}
		if status, r, _ := e.call(t, "POST", "/api/v1/panel/database/import?mode=replace", exported); status != 200 {
			t.Fatalf("re-import %d %s", status, r.Raw)
		}
		_, _, again := e.call(t, "GET", "/api/v1/panel/database/export", "")
		if gjson.Get(again, "data").Raw != gjson.Get(exported, "data").Raw {
			t.Fatalf("round trip changed the data:\n%s\n%s", gjson.Get(exported, "data").Raw, gjson.Get(again, "data").Raw)
		}
		// A broken backup changes nothing.
		for _, bad := range []string{
			`{"version": "9", "data": {}}`,
			`{"version": "1.0", "data": {"users": [{"id": "a"}, {"id": "a"}]}}`,
			`{"version": "1.0", "data": {"users": [{"id": "a"}], "user_usage_records": [{"id": 1, "user_id": "ghost", "use_time": "2025-01-01T00:00:00Z", "model_name": "m", "cost": "1", "balance_after": "0"}]}}`,
			`{"version": "1.0", "data": {"users": [{"id": "a", "balance": "lots"}]}}`,
			`not json`,
		} {
			status, r, _ := e.call(t, "POST", "/api/v1/panel/database/import", bad)
			if status != 400 && status != 422 || r.Get("error").Str == "" {
				t.Fatalf("%s: %d %s", bad, status, r.Raw)
			}
		}
		_, _, after := e.call(t, "GET", "/api/v1/panel/database/export", "")
		if gjson.Get(after, "data").Raw != gjson.Get(exported, "data").Raw {
			t.Fatal("a failed import changed the data")
		}
	})
}

func amount(t *testing.T, s string) money.Amount {
	t.Helper()
	v, err := money.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
