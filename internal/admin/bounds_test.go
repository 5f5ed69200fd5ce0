package admin

import (
	"context"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// raw is call without its failure on 5xx answers: the status and the body.
func (e *env) raw(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) changes(t *testing.T, id string) int {
	t.Helper()
	cs, err := e.st.BalanceChanges(context.Background(), id, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(cs)
}

func (e *env) balanceOf(t *testing.T, id string) money.Amount {
	t.Helper()
	u, err := e.st.User(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return u.Balance
}

// TestTopUpOverflowIs422: a top-up (or a take) past the ends of the range
// of an amount is a 422 naming amount, and changes nothing.
func TestTopUpOverflowIs422(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.user(t, "u1", "Ann", "ann@example.com", 0)
		for _, c := range []struct{ set, amount, says string }{
			{money.Max.String(), "0.000000001", "largest amount"},
			{"9223372030", "7", "largest amount"},
			{money.Min.String(), "-0.000000001", "smallest amount"},
			{"-1", money.Max.String(), "largest amount"}, // -1 + Max fits
		} {
			if status, r, _ := e.call(t, "PUT", "/api/v1/users/u1/balance", `{"balance": "`+c.set+`"}`); status != 200 {
				t.Fatalf("set %s: %d %s", c.set, status, r.Raw)
			}
			before, audit := e.balanceOf(t, "u1"), e.changes(t, "u1")
			status, body := e.raw(t, "POST", "/api/v1/users/u1/topup", `{"amount": "`+c.amount+`", "reason": "x"}`)
			r := gjson.Parse(body)
			if c.set == "-1" {
				if status != 200 {
					t.Fatalf("top-up that fits: %d %s", status, body)
				}
				continue
			}
			if status != http.StatusUnprocessableEntity || !strings.HasPrefix(r.Get("error").Str, "amount: ") ||
				!strings.Contains(r.Get("error").Str, c.says) || r.Get("errors.amount").Str == "" {
				t.Fatalf("top-up %s on %s: %d %s, want a 422 naming amount", c.amount, c.set, status, body)
			}
			if after := e.balanceOf(t, "u1"); after != before {
				t.Fatalf("a refused top-up moved the balance from %s to %s", before, after)
			}
			if n := e.changes(t, "u1"); n != audit {
				t.Fatalf("a refused top-up was audited: %d changes, then %d", audit, n)
			}
		}
	})
}

// TestZeroTopUpRefused: a top-up of nothing is refused, naming amount, and
// adds no line to the audit record.
func TestZeroTopUpRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.user(t, "u1", "Ann", "ann@example.com", 5)
		for _, zero := range []string{`0`, `"0"`, `0.000`, `-0`, `0e5`} {
			status, body := e.raw(t, "POST", "/api/v1/users/u1/topup", `{"amount": `+zero+`, "reason": "nothing"}`)
			r := gjson.Parse(body)
			if status != http.StatusUnprocessableEntity || !strings.HasPrefix(r.Get("error").Str, "amount: ") {
				t.Fatalf("top-up of %s: %d %s", zero, status, body)
			}
		}
		if n := e.changes(t, "u1"); n != 0 {
			t.Fatalf("zero top-ups left %d audit rows", n)
		}
		if b := e.balanceOf(t, "u1"); b != money.Units(5) {
			t.Fatalf("balance %s", b)
		}
	})
}

// boundRecords charges records at the ends of the range of an amount and
// of a token count, each on a rollup row of its own, so that every sum
// over them leaves the range.
func boundRecords(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.UpsertUser(ctx, store.UserInfo{ID: "big", Name: "Big"}, money.Max); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpsertUser(ctx, store.UserInfo{ID: "floor", Name: "Floor"}, money.Min); err != nil {
		t.Fatal(err)
	}
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2).Add(12 * time.Hour)
	n := 0
	for d := range 2 {
		for _, model := range []string{"m1", "m2"} {
			if n > 0 {
				if _, err := st.AdjustBalance(ctx, "big", money.Max, "admin", "top up"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := st.Charge(ctx, store.Record{UserID: "big", Nickname: "Big", Model: model, Cost: money.Max,
				InputTokens: math.MaxInt64, OutputTokens: math.MaxInt64, CreatedAt: day.AddDate(0, 0, d)}); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	// A balance swung between the ends.
	for _, b := range []money.Amount{money.Max, money.Min} {
		if _, err := st.SetBalance(ctx, "floor", b, "admin", ""); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUsageAnswersAtTheBounds: with records whose sums leave the range of
// an int64, the usage summary and the lists still answer 200, with sums
// saturated at the largest amount.
func TestUsageAnswersAtTheBounds(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		boundRecords(t, e.st)
		now := time.Now().UTC()
		for _, q := range []string{
			"",
			"?startTime=" + now.AddDate(0, 0, -3).Format(time.RFC3339) + "&endTime=" + now.Format(time.RFC3339),
			"?startTime=" + now.AddDate(0, 0, -3).Format("2006-01-02"),
		} {
			status, body := e.raw(t, "GET", "/api/v1/panel/usage"+q, "")
			r := gjson.Parse(body)
			if status != 200 {
				t.Fatalf("usage%s at the bounds: %d %s", q, status, body)
			}
			if r.Get("stats.totalCost").Raw != money.Max.String() || r.Get("stats.totalCalls").Int() != 4 {
				t.Fatalf("usage%s totals: %s", q, body)
			}
		}
		for _, path := range []string{"/api/v1/users?sortField=balance", "/api/v1/panel/records?sortField=cost",
			"/api/v1/users/floor/balance-history", "/api/v1/panel/records/export", "/api/v1/panel/database/export"} {
			if status, body := e.raw(t, "GET", path, ""); status != 200 {
				t.Fatalf("%s at the bounds: %d %.300s", path, status, body)
			}
		}
		// The store's own sums answer too.
		for _, id := range []string{"big", "floor"} {
			if _, err := e.st.Ledger(context.Background(), id); err != nil {
				t.Fatalf("ledger of %s at the bounds: %v", id, err)
			}
		}
	})
}

// TestTrailingDataIs400: a second JSON value after a body is a 400 on the
// JSON endpoints, and nothing changes.
func TestTrailingDataIs400(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.user(t, "u1", "Ann", "ann@example.com", 5)
		e.price(t, "m", "", "1", "1", "-1")
		_, _, before := e.call(t, "GET", "/api/v1/panel/database/export", "")
		_, _, exported := e.call(t, "GET", "/api/v1/panel/database/export", "")
		for _, c := range []struct{ method, path, body string }{
			{"PUT", "/api/v1/users/u1/balance", `{"balance":1}{"balance":2}`},
			{"PUT", "/api/v1/users/u1/balance", `{"balance":1} x`},
			{"POST", "/api/v1/users/u1/topup", `{"amount":1}{"amount":2}`},
			{"POST", "/api/v1/users/u1/topup", `{"amount":1}]`},
			{"PATCH", "/api/v1/users/u1", `{"deleted":true}{"deleted":false}`},
			{"POST", "/api/v1/models/price", `[{"id":"m","input_price":9,"output_price":9}]{"updates":[]}`},
			{"POST", "/api/v1/models/price", `{"updates":[{"id":"m","input_price":9,"output_price":9}]}[]`},
			{"POST", "/api/v1/models/sync-price", `{"modelId":"m"}{"modelId":"n"}`},
			{"POST", "/api/v1/models/test", `{"modelId":"m"}{}`},
			{"POST", "/api/v1/panel/database/import?mode=replace", exported + `{"version":"1.0","data":{}}`},
			{"POST", "/api/v1/panel/database/import?mode=replace", exported + `x`},
		} {
			status, body := e.raw(t, c.method, c.path, c.body)
			if status != http.StatusBadRequest || gjson.Get(body, "error").Str == "" {
				t.Fatalf("%s %s with trailing data: %d %s", c.method, c.path, status, body)
			}
		}
		_, _, after := e.call(t, "GET", "/api/v1/panel/database/export", "")
		if gjson.Get(after, "data").Raw != gjson.Get(before, "data").Raw {
			t.Fatalf("trailing data changed the data:\n%s\n%s", gjson.Get(before, "data").Raw, gjson.Get(after, "data").Raw)
		}
		// A field a value does not fit is named.
		status, body := e.raw(t, "PUT", "/api/v1/users/u1/balance", `{"balance": 1e400}`)
		if status != http.StatusBadRequest || !strings.Contains(gjson.Get(body, "error").Str, "balance: ") {
			t.Fatalf("an amount out of range: %d %s", status, body)
		}
		status, body = e.raw(t, "PUT", "/api/v1/users/u1/balance", `{"balance": "9223372036.854775808"}`)
		if status != http.StatusBadRequest || !strings.Contains(gjson.Get(body, "error").Str, "balance: out of range") {
			t.Fatalf("an amount out of range: %d %s", status, body)
		}
	})
}

// TestImportRefusesPartialBackups: a backup lacking a table is a 422 that
// says which, and the data stays.
func TestImportRefusesPartialBackups(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		if status, r, _ := e.call(t, "POST", "/api/v1/panel/database/import", oldBackup); status != 200 {
			t.Fatalf("import %d %s", status, r.Raw)
		}
		_, _, before := e.call(t, "GET", "/api/v1/panel/database/export", "")
		for _, c := range []struct {
			body    string
			missing []string
		}{
			{`{"version": "1.0", "data": {}}`, []string{"data.users", "data.model_prices", "data.user_usage_records"}},
			{`{"version": "1.0"}`, []string{"data.users", "data.model_prices", "data.user_usage_records"}},
			{`{"version": "1.0", "data": {"users": [], "model_prices": []}}`, []string{"data.user_usage_records"}},
			{`{"version": "1.0", "data": {"users": [{"id": "a"}], "user_usage_records": []}}`, []string{"data.model_prices"}},
			{`{"version": "owmon-1", "data": {"users": [], "model_prices": [], "user_usage_records": []}}`, []string{"data.balance_changes"}},
		} {
			for _, q := range []string{"", "?mode=replace"} {
				status, body := e.raw(t, "POST", "/api/v1/panel/database/import"+q, c.body)
				msg := gjson.Get(body, "error").Str
				if status != http.StatusUnprocessableEntity {
					t.Fatalf("%s%s: %d %s, want 422", c.body, q, status, body)
				}
				for _, m := range c.missing {
					if !strings.Contains(msg, m) || gjson.Get(body, "errors").Get(strings.ReplaceAll(m, ".", `\.`)).Str == "" {
						t.Fatalf("%s: %s does not name %s", c.body, body, m)
					}
				}
			}
		}
		_, _, after := e.call(t, "GET", "/api/v1/panel/database/export", "")
		if gjson.Get(after, "data").Raw != gjson.Get(before, "data").Raw {
			t.Fatal("a partial backup changed the data")
		}
		if files, _ := filepath.Glob(filepath.Join(e.backups, "*")); len(files) != 0 {
			t.Fatalf("a refused import wrote %v", files)
		}
	})
}

// TestImportReplaceIsExplicit: a restore into a store with data needs
// mode=replace; with it, the data it replaces is first saved to a file in
// the data directory that imports back, and the answer counts both sides.
func TestImportReplaceIsExplicit(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		// An empty store takes a restore without ceremony.
		status, body := e.raw(t, "POST", "/api/v1/panel/database/import", oldBackup)
		if status != 200 || gjson.Get(body, "backup").Exists() || gjson.Get(body, "replaced.users").Int() != 0 ||
			gjson.Get(body, "imported.users").Int() != 2 {
			t.Fatalf("import into an empty store: %d %s", status, body)
		}
		e.call(t, "POST", "/api/v1/users/u-old/topup", `{"amount": 1, "reason": "gift"}`)
		_, _, original := e.call(t, "GET", "/api/v1/panel/database/export", "")

		replacement := `{"version": "1.0", "data": {"users": [{"id": "n1", "name": "New", "balance": "3"}],
			"model_prices": [], "user_usage_records": []}}`
		// Without mode=replace: refused, with what it would replace.
		status, body = e.raw(t, "POST", "/api/v1/panel/database/import", replacement)
		msg := gjson.Get(body, "error").Str
		if status != http.StatusConflict || !strings.Contains(msg, "mode=replace") ||
			!strings.Contains(msg, "2 users, 1 model prices, 2 usage records and 1 balance changes") ||
			gjson.Get(body, "replaced.records").Int() != 2 || gjson.Get(body, "replaced.balance_changes").Int() != 1 {
			t.Fatalf("import without mode=replace: %d %s", status, body)
		}
		if status, body := e.raw(t, "POST", "/api/v1/panel/database/import?mode=merge", replacement); status != 400 ||
			!strings.Contains(gjson.Get(body, "error").Str, "mode") {
			t.Fatalf("mode=merge: %d %s", status, body)
		}
		_, _, after := e.call(t, "GET", "/api/v1/panel/database/export", "")
		if gjson.Get(after, "data").Raw != gjson.Get(original, "data").Raw {
			t.Fatal("a refused restore changed the data")
		}
		if files, _ := filepath.Glob(filepath.Join(e.backups, "*")); len(files) != 0 {
			t.Fatalf("a refused restore wrote %v", files)
		}

		// With it: replaced, counted, and kept.
		status, body = e.raw(t, "POST", "/api/v1/panel/database/import?mode=replace", replacement)
		r := gjson.Parse(body)
		if status != 200 || r.Get("replaced.users").Int() != 2 || r.Get("replaced.model_prices").Int() != 1 ||
			r.Get("replaced.records").Int() != 2 || r.Get("replaced.balance_changes").Int() != 1 ||
			r.Get("imported.users").Int() != 1 || r.Get("imported.records").Int() != 0 || r.Get("users").Int() != 1 {
			t.Fatalf("replace: %d %s", status, body)
		}
		saved := r.Get("backup").Str
		if filepath.Dir(saved) != e.backups || !regexp.MustCompile(`^backup-\d{8}T\d{6}Z(-\d+)?\.json$`).MatchString(filepath.Base(saved)) {
			t.Fatalf("backup file %q, want backup-<time>.json in %s", saved, e.backups)
		}
		if u, err := e.st.User(context.Background(), "n1"); err != nil || u.Balance != money.Units(3) {
			t.Fatalf("the replacement is not in: %+v %v", u, err)
		}
		if _, err := e.st.User(context.Background(), "u-old"); err == nil {
			t.Fatal("a replaced user survived")
		}
		info, err := os.Stat(saved)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("backup file: %v %v", info, err)
		}
		kept, err := os.ReadFile(saved)
		if err != nil {
			t.Fatal(err)
		}
		if gjson.GetBytes(kept, "version").Str != backupVersion || gjson.GetBytes(kept, "data").Raw != gjson.Get(original, "data").Raw {
			t.Fatalf("the kept backup is not what was replaced:\n%s\n%s", kept, gjson.Get(original, "data").Raw)
		}
		// The kept file restores what was replaced (and keeps the replacement in turn).
		status, body = e.raw(t, "POST", "/api/v1/panel/database/import?mode=replace", string(kept))
		if status != 200 || gjson.Get(body, "replaced.users").Int() != 1 || gjson.Get(body, "backup").Str == saved {
			t.Fatalf("restoring the kept backup: %d %s", status, body)
		}
		_, _, restored := e.call(t, "GET", "/api/v1/panel/database/export", "")
		if gjson.Get(restored, "data").Raw != gjson.Get(original, "data").Raw {
			t.Fatalf("the kept backup did not restore the data:\n%s\n%s", gjson.Get(original, "data").Raw, gjson.Get(restored, "data").Raw)
		}
		if files, _ := filepath.Glob(filepath.Join(e.backups, "backup-*.json")); len(files) != 2 {
			t.Fatalf("backup files %v, want 2", files)
		}
		// An export of an empty store has every table, and restores.
		e.raw(t, "POST", "/api/v1/panel/database/import?mode=replace",
			`{"version":"owmon-1","data":{"users":[],"model_prices":[],"user_usage_records":[],"balance_changes":[]}}`)
		_, _, empty := e.call(t, "GET", "/api/v1/panel/database/export", "")
		if gjson.Get(empty, "data.users").Raw != "[]" || gjson.Get(empty, "data.user_usage_records").Raw != "[]" {
			t.Fatalf("export of an empty store: %s", empty)
		}
		if status, body := e.raw(t, "POST", "/api/v1/panel/database/import", empty); status != 200 {
			t.Fatalf("re-import of an empty export: %d %s", status, body)
		}
	})
}

// apiRoutes are the admin API's routes as the package registers them,
// read from its source, so that a new route is walked too.
func apiRoutes(t *testing.T) [][2]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`HandleFunc\("([A-Z]+) (/api/[^"]*)"`)
	var out [][2]string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			out = append(out, [2]string{m[1], m[2]})
		}
	}
	if len(out) < 15 {
		t.Fatalf("found only %d routes: %v", len(out), out)
	}
	return out
}

// TestBadBodiesAreNeverServerErrors walks every route of the admin API with
// malformed, oversized-number, overflowing and trailing-data bodies (and
// queries) and checks that none is answered 500 or 503.
func TestBadBodiesAreNeverServerErrors(t *testing.T) {
	max := money.Max.String()
	values := []string{`1e400`, `-1e400`, `99999999999999999999999`, `"9223372036.854775808"`, `"` + max + `"`,
		`"-9223372036.854775808"`, `0.0000000001`, `9223372036854775807`, `null`, `true`, `"x"`, `[]`, `{}`, `0`, `-0`}
	fields := []string{"balance", "amount", "reason", "deleted", "modelId", "updates", "input_price", "output_price",
		"per_msg_price", "id", "version", "data"}
	bodies := []string{``, `{`, `}`, `not json`, `null`, `[]`, `[{}]`, `{}`, `"x"`, `1e400`, "\xff\xfe{}",
		`{"balance":1}{"balance":2}`, `{"amount":1} x`, `[]{}`, `{"updates":[]}[]`,
		strings.Repeat(`[`, 100_000) + strings.Repeat(`]`, 100_000),
		`[{"id":"m","input_price":"` + max + `","output_price":"` + max + `","per_msg_price":"` + max + `"}]`,
		`{"updates":[{"id":"m","input_price":1e400,"output_price":1}]}`,
		`{"version":"1.0","data":{}}`,
		`{"version":"1.0","data":{"users":[{"id":"a","balance":"` + max + `"}],"model_prices":[],"user_usage_records":[
			{"id":1,"user_id":"a","use_time":"2025-01-01T00:00:00Z","model_name":"m","cost":"` + max + `","balance_after":"0"},
			{"id":2,"user_id":"a","use_time":"2025-01-01T00:00:00Z","model_name":"m","cost":"` + max + `","balance_after":"0"}]}}`,
		`{"version":"owmon-1","data":{"users":[{"id":"a","balance":"1","initial_balance":"1"}],"model_prices":[],"balance_changes":[],"user_usage_records":[
			{"id":1,"user_id":"a","use_time":"2025-01-01T00:00:00Z","model_name":"m","cost":"` + max + `","input_tokens":9223372036854775807,"balance_after":"0"},
			{"id":2,"user_id":"a","use_time":"2025-01-01T01:00:00Z","model_name":"m","cost":"1","input_tokens":9223372036854775807,"balance_after":"0"}]}}`,
		`{"version":"owmon-1","data":{"users":[{"id":"a","balance":"1"}],"model_prices":[],"user_usage_records":[],"balance_changes":[
			{"id":1,"user_id":"a","old_balance":"-9223372036.854775808","new_balance":"` + max + `","created_at":"2025-01-01T00:00:00Z"}]}}`,
	}
	for _, f := range fields {
		for _, v := range values {
			bodies = append(bodies, `{"`+f+`":`+v+`}`)
		}
	}
	bodies = append(bodies, `{"balance":"`+max+`"}`, `{"amount":"`+max+`"}`, `{"amount":"-`+max+`"}`,
		`{"balance":"-9223372036.854775808"}`, `{"amount":"-0.000000001"}`)
	queries := []string{"", "?page=99999999999999999999&pageSize=500", "?page=9223372036854775807&pageSize=500",
		"?startTime=99999999999999999999&endTime=-99999999999999999999",
		"?startTime=9223372036854775807&endTime=-9223372036854775808", "?startTime=-9223372036854775808",
		"?startTime=9999-12-31&endTime=0001-01-01", "?users=u1&models=m&sortField=cost&sortOrder=desc",
		"?mode=replace", "?deleted=maybe&search=%00"}
	eachBackend(t, func(t *testing.T, e *env) {
		e = withOpenWebUI(t, e).env
		e.user(t, "u1", "Ann", "ann@example.com", 5)
		boundRecords(t, e.st)
		routes := apiRoutes(t)
		for _, rt := range routes {
			path := strings.ReplaceAll(rt[1], "{id}", "u1")
			for _, q := range queries {
				for _, b := range bodies {
					if rt[0] == http.MethodGet && b != "" && q != "" {
						continue // a GET reads no body: the queries are what count
					}
					status, body := e.raw(t, rt[0], path+q, b)
					if status == http.StatusInternalServerError || status == http.StatusServiceUnavailable {
						t.Errorf("%s %s%s with %.100q: %d %.300s", rt[0], path, q, b, status, body)
					}
				}
			}
			// And on the users at the bounds.
			for _, id := range []string{"big", "floor"} {
				if strings.Contains(rt[1], "{id}") {
					for _, b := range []string{`{"amount":"` + max + `"}`, `{"amount":"-` + max + `"}`, `{"balance":"` + max + `"}`} {
						status, body := e.raw(t, rt[0], strings.ReplaceAll(rt[1], "{id}", id), b)
						if status == http.StatusInternalServerError || status == http.StatusServiceUnavailable {
							t.Errorf("%s %s with %s: %d %.300s", rt[0], rt[1], b, status, body)
						}
					}
				}
			}
		}
	})
}
