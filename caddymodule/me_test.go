package caddymodule

// The user's own page (issue 17): GET {dashboard_path}/me and
// /api/v1/me show an OpenWebUI user their balance, limits, usage and
// records, identified from their OpenWebUI credential as the gate
// identifies model calls — no admin access token, and no parameter that
// could name another user.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// meSeed gives alice and bob a balance of 100, a daily cost limit each
// (alice 10, bob 20) and usage: alice 3 on gpt-4o, bob 1 on llama3. It
// returns bob's session JWT and API key.
func (e *edgeEnv) meSeed(t *testing.T) (bobJWT, bobKey string) {
	t.Helper()
	ctx := context.Background()
	bobJWT, bobKey = e.owui.AddUser("bob", "bob@example.com", "Bob", "user")
	day, _ := budget.ParseWindow("day")
	for _, u := range []struct {
		id, name, model string
		limit, cost     int64
	}{{"alice", "Alice", "gpt-4o", 10, 3}, {"bob", "Bob", "llama3", 20, 1}} {
		if _, err := e.st.UpsertUser(ctx, store.UserInfo{ID: u.id, Name: u.name, Email: u.id + "@example.com", Role: "user"}, money.Units(100)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.PutLimit(ctx, budget.Limit{Scope: budget.Scope{Kind: "user", ID: u.id}, Measure: budget.Cost,
			Amount: int64(money.Units(u.limit)), Window: day}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.Charge(ctx, store.Record{UserID: u.id, Nickname: u.name, Model: u.model, InputTokens: 100, OutputTokens: 50,
			Cost: money.Units(u.cost), Source: ledger.SourceFunction, Key: "me/" + u.id}); err != nil {
			t.Fatal(err)
		}
	}
	return bobJWT, bobKey
}

// me asks GET path with the given headers and returns the status, the
// answer and its headers.
func (e *edgeEnv) me(t *testing.T, path string, header ...string) (int, gjson.Result, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] != "" {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, gjson.ParseBytes(b), resp.Header
}

// TestMeAPI: a user sees their own balance, limits, usage and records,
// with OpenWebUI's token cookie, a bearer JWT or an sk- key; another
// user's credential shows only theirs, whatever the query says; a bad or
// missing credential is a 401, and the admin API stays closed to them.
func TestMeAPI(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	bobJWT, bobKey := e.meSeed(t)
	const api = "/monitor/api/v1/me"

	alice := func(what string, j gjson.Result) {
		t.Helper()
		lim := j.Get(`limits.#(scope=="user:alice")`)
		if j.Get("user.id").Str != "alice" || j.Get("user.name").Str != "Alice" || j.Get("balance").Raw != "97" ||
			j.Get("limits.#").Int() != 1 || lim.Get("measure").Str != "cost" || lim.Get("window").Str != "day" ||
			lim.Get("amount").Str != "10" || lim.Get("used").Str != "3" || lim.Get("remaining").Str != "7" {
			t.Fatalf("%s: %s", what, j.Raw)
		}
		resets, err := time.Parse(time.RFC3339, lim.Get("resets_at").Str)
		if err != nil || !resets.After(time.Now()) || resets.After(time.Now().Add(25*time.Hour)) {
			t.Fatalf("%s: resets_at %q", what, lim.Get("resets_at").Str)
		}
		if n := j.Get("records.#").Int(); n != 1 || j.Get("records.0.user_id").Str != "alice" || j.Get("records.0.model_name").Str != "gpt-4o" {
			t.Fatalf("%s: records %s", what, j.Get("records").Raw)
		}
		u := j.Get("usage")
		if u.Get("total.total_cost").Raw != "3" || u.Get("total.total_count").Int() != 1 || u.Get("daily.#").Int() != 30 ||
			u.Get("daily.29.day").Str != time.Now().UTC().Format("2006-01-02") || u.Get("daily.29.total_cost").Raw != "3" ||
			u.Get("models.#").Int() != 1 || u.Get("models.0.model_name").Str != "gpt-4o" || u.Get("models.0.input_tokens").Int() != 100 {
			t.Fatalf("%s: usage %s", what, u.Raw)
		}
		if strings.Contains(j.Raw, "bob") || strings.Contains(j.Raw, "llama3") {
			t.Fatalf("%s: bob's data in alice's answer: %s", what, j.Raw)
		}
	}
	bob := func(what string, j gjson.Result) {
		t.Helper()
		if j.Get("user.id").Str != "bob" || j.Get("balance").Raw != "99" || j.Get("limits.#").Int() != 1 ||
			j.Get("limits.0.scope").Str != "user:bob" || j.Get("limits.0.remaining").Str != "19" ||
			j.Get("records.#").Int() != 1 || j.Get("records.0.model_name").Str != "llama3" || j.Get("usage.total.total_cost").Raw != "1" {
			t.Fatalf("%s: %s", what, j.Raw)
		}
		if strings.Contains(j.Raw, "alice") || strings.Contains(j.Raw, "gpt-4o") {
			t.Fatalf("%s: alice's data in bob's answer: %s", what, j.Raw)
		}
	}

	// OpenWebUI's session cookie, as the browser sends it on the same host.
	status, j, h := e.me(t, api, "Cookie", "token="+e.jwt)
	if status != 200 || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("cookie: %d %s %v", status, j.Raw, h)
	}
	alice("cookie", j)
	// A bearer JWT and an API key, as scripts send them.
	status, j, _ = e.me(t, api, "Authorization", "Bearer "+e.jwt)
	if status != 200 {
		t.Fatalf("bearer: %d %s", status, j.Raw)
	}
	alice("bearer", j)
	status, j, _ = e.me(t, api, "Authorization", "Bearer "+bobKey)
	if status != 200 {
		t.Fatalf("bob's key: %d %s", status, j.Raw)
	}
	bob("bob's key", j)
	// Bob sees only his own, whatever the query names.
	for _, q := range []string{"", "?user=alice", "?id=alice", "?user_id=alice", "?users=alice"} {
		status, j, _ = e.me(t, api+q, "Cookie", "token="+bobJWT)
		if status != 200 {
			t.Fatalf("bob %q: %d %s", q, status, j.Raw)
		}
		bob("bob's cookie "+q, j)
	}
	if status, _, _ := e.me(t, api+"/alice", "Cookie", "token="+bobJWT); status != http.StatusUnauthorized {
		t.Fatalf("%s/alice with bob's cookie: %d, want the admin API's 401", api, status)
	}

	// No credential, an empty cookie, garbage, a JWT naming alice signed
	// with another secret, an unknown key: 401, and nobody's data.
	forged := fakeowui.SignJWT("not-the-secret", map[string]any{"id": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	for _, c := range []struct{ what, name, value string }{
		{"nothing", "", ""},
		{"empty cookie", "Cookie", "token="},
		{"garbage cookie", "Cookie", "token=garbage"},
		{"forged JWT", "Authorization", "Bearer " + forged},
		{"unknown key", "Authorization", "Bearer sk-unknown"},
	} {
		status, j, h := e.me(t, api, c.name, c.value)
		if status != http.StatusUnauthorized || j.Get("error").Str == "" || j.Get("user").Exists() || j.Get("balance").Exists() ||
			h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %s %v", c.what, status, j.Raw, h)
		}
	}

	// The admin API and pages stay closed to a user's credential.
	for _, p := range []string{"/monitor/api/v1/users", "/monitor/api/v1/panel/records"} {
		if status, _, _ := e.me(t, p, "Cookie", "token="+e.jwt); status != http.StatusUnauthorized {
			t.Errorf("%s with alice's cookie: %d", p, status)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.url+api, nil)
	req.Header.Set("Cookie", "token="+e.jwt)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// OpenWebUI answering 5xx for a key: 503, never 401.
	e.owui.SetOptions(fakeowui.OpenWebUIOptions{AuthStatus: http.StatusBadGateway})
	if status, j, _ := e.me(t, api, "Authorization", "Bearer sk-"+strings.Repeat("0", 32)); status != http.StatusServiceUnavailable ||
		!strings.Contains(j.Get("error").Str, "cannot reach OpenWebUI") {
		t.Fatalf("OpenWebUI 502: %d %s", status, j.Raw)
	}
}

// TestMeAPIOpenWebUIDown: with the OpenWebUI the monitor asks
// unreachable, an sk- key cannot be identified (503); a session JWT
// verified with webui_secret_key still shows its user's own data.
func TestMeAPIOpenWebUIDown(t *testing.T) {
	dead := fakeowui.NewOpenWebUI(t, nil)
	dead.Close()
	e := startEdge(t, sqliteDB(t), "openwebui "+dead.URL())
	e.meSeed(t)
	status, j, _ := e.me(t, "/monitor/api/v1/me", "Authorization", "Bearer "+e.key)
	if status != http.StatusServiceUnavailable || j.Get("error").Str == "" || j.Get("user").Exists() {
		t.Fatalf("sk- key, OpenWebUI down: %d %s", status, j.Raw)
	}
	status, j, _ = e.me(t, "/monitor/api/v1/me", "Cookie", "token="+e.jwt)
	if status != 200 || j.Get("user.id").Str != "alice" || j.Get("user.name").Str != "Alice" || j.Get("limits.0.remaining").Str != "7" {
		t.Fatalf("JWT verified locally, OpenWebUI down: %d %s", status, j.Raw)
	}
}

// TestMeThrottled: credentials OpenWebUI refuses count per client like
// wrong access tokens; past the burst the client gets 429, even with a
// good credential, and nothing more is asked of OpenWebUI.
func TestMeThrottled(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	for i := range 10 {
		if status, _, _ := e.me(t, "/monitor/api/v1/me", "Authorization", fmt.Sprintf("Bearer sk-guess%d", i)); status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, status)
		}
	}
	lookups := e.owui.Lookups()
	status, j, h := e.me(t, "/monitor/api/v1/me", "Cookie", "token="+e.jwt)
	if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" || j.Get("user").Exists() {
		t.Fatalf("after 10 wrong credentials: %d %s", status, j.Raw)
	}
	if n := e.owui.Lookups(); n != lookups {
		t.Fatalf("a throttled client's credential was looked up (%d → %d)", lookups, n)
	}
}

// TestMePageBrowser: a user signed in to OpenWebUI (its token cookie on
// owmon's host) opens /monitor/me and sees their own balance, what is left
// of their limit and their records; with bob's cookie the page shows bob's
// numbers, not alice's, and no parameter brings alice's back; signed out,
// the page says so with a link to OpenWebUI's sign-in, and does not
// redirect.
func TestMePageBrowser(t *testing.T) {
	exe := chromium(t)
	e := startEdge(t, sqliteDB(t), "")
	bobJWT, _ := e.meSeed(t)
	bctx := openBrowser(t, exe, 1280, 900, 90*time.Second)
	shots := screenshots(t)
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// OpenWebUI's sign-in sets "token" (HttpOnly, SameSite=Lax, path /) on
	// its host, which is owmon's: the same cookie, set here directly.
	signIn := func(jwt string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			if err := network.ClearBrowserCookies().Do(ctx); err != nil {
				return err
			}
			if jwt == "" {
				return nil
			}
			return network.SetCookie("token", jwt).WithURL(e.url + "/").WithPath("/").WithHTTPOnly(true).
				WithSameSite(network.CookieSameSiteLax).Do(ctx)
		})
	}
	type shown struct {
		Name, Balance, Remaining, Used, Page string
		Records                              int
		Path                                 string
	}
	read := func(what, path string) shown {
		t.Helper()
		var s shown
		run(what, chromedp.Navigate(e.url+path),
			chromedp.WaitVisible(`[data-testid="me-balance"]`, chromedp.ByQuery),
			chromedp.Text(`[data-testid="me-name"]`, &s.Name, chromedp.ByQuery),
			chromedp.Text(`[data-testid="me-balance"]`, &s.Balance, chromedp.ByQuery),
			chromedp.Text(`[data-testid="me-limit-remaining"]`, &s.Remaining, chromedp.ByQuery),
			chromedp.Text(`[data-testid="me-limit-used"]`, &s.Used, chromedp.ByQuery),
			chromedp.Evaluate(`document.querySelectorAll('[data-testid="me-record"]').length`, &s.Records),
			chromedp.Evaluate(`document.body.innerText`, &s.Page),
			chromedp.Evaluate(`location.pathname + location.search`, &s.Path))
		return s
	}

	run("alice signs in", signIn(e.jwt))
	a := read("alice's page", "/monitor/me")
	if strings.TrimSpace(a.Name) != "Alice" || strings.TrimSpace(a.Balance) != "$97.00" || strings.TrimSpace(a.Remaining) != "$7.00" ||
		strings.TrimSpace(a.Used) != "$3.00" || a.Records != 1 || !strings.Contains(a.Page, "gpt-4o") || strings.Contains(a.Page, "llama3") {
		t.Fatalf("alice's page: %+v", a)
	}
	var png []byte
	run("screenshot", chromedp.FullScreenshot(&png, 100))
	if err := os.WriteFile(filepath.Join(shots, "me-en.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	run("bob signs in", signIn(bobJWT))
	for _, path := range []string{"/monitor/me", "/monitor/me?user=alice", "/monitor/me?id=alice&user_id=alice"} {
		b := read("bob's page "+path, path)
		if strings.TrimSpace(b.Name) != "Bob" || strings.TrimSpace(b.Balance) != "$99.00" || strings.TrimSpace(b.Remaining) != "$19.00" ||
			b.Records != 1 || !strings.Contains(b.Page, "llama3") || strings.Contains(b.Page, "gpt-4o") ||
			strings.Contains(b.Page, "$97.00") || strings.Contains(b.Page, "$7.00") || strings.Contains(b.Page, "Alice") {
			t.Fatalf("bob's page %s: %+v", path, b)
		}
	}

	// Signed out: a page saying so, with a link to OpenWebUI's sign-in; the
	// address stays.
	run("sign out", signIn(""))
	var reason, href, path string
	var ok bool
	run("signed-out page", chromedp.Navigate(e.url+"/monitor/me"),
		chromedp.WaitVisible(`[data-testid="me-signin"]`, chromedp.ByQuery),
		chromedp.Text(`[data-testid="me-signin-reason"]`, &reason, chromedp.ByQuery),
		chromedp.AttributeValue(`[data-testid="me-login"]`, "href", &href, &ok, chromedp.ByQuery),
		chromedp.Evaluate(`location.pathname`, &path))
	if !strings.Contains(reason, "not signed in") || href != "/auth?redirect=%2Fmonitor%2Fme" || path != "/monitor/me" {
		t.Fatalf("signed out: %q %q %q", reason, href, path)
	}
}
