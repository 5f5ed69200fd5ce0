package admin

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/web"
)

const xss = `<script>alert(1)</script>`

// mounted serves the API below prefix the way the Caddy handler does: the
// prefix is cut from URL.Path ("/monitor" becomes "/"), RequestURI is kept.
func mounted(h http.Handler, prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		if !ok || (rest != "" && rest[0] != '/') {
			http.NotFound(w, r)
			return
		}
		if rest == "" {
			rest = "/"
		}
		r2 := r.WithContext(r.Context())
		u := *r.URL
		u.Path, u.RawPath = rest, ""
		r2.URL = &u
		h.ServeHTTP(w, r2)
	})
}

// browser is a client with a cookie jar that does not follow redirects.
type browser struct {
	t      *testing.T
	c      *http.Client
	base   string // the server's URL with the prefix
	header http.Header
}

func newBrowser(t *testing.T, serverURL, prefix string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: serverURL + prefix, header: http.Header{}, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	resp *http.Response
	url  *url.URL
	body string
}

// location is the redirect's target, resolved as a browser would.
func (p page) location() string {
	loc, err := p.url.Parse(p.resp.Header.Get("Location"))
	if err != nil {
		return "bad location " + p.resp.Header.Get("Location")
	}
	return loc.RequestURI()
}

func (b *browser) do(method, rawURL, contentType, body string, header ...string) page {
	b.t.Helper()
	req, err := http.NewRequest(method, rawURL, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range b.header {
		req.Header[k] = v
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 500 {
		b.t.Fatalf("%s %s: %d %s", method, rawURL, resp.StatusCode, raw)
	}
	return page{resp, req.URL, string(raw)}
}

func (b *browser) get(path string, header ...string) page {
	b.t.Helper()
	return b.do("GET", b.base+path, "", "", header...)
}

func (b *browser) post(path string, form url.Values, header ...string) page {
	b.t.Helper()
	return b.do("POST", b.base+path, "application/x-www-form-urlencoded", form.Encode(), header...)
}

func (b *browser) login() {
	b.t.Helper()
	p := b.post("/login", url.Values{"token": {token}})
	if p.resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("login: %d %s", p.resp.StatusCode, p.body)
	}
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

func (b *browser) csrf() string {
	b.t.Helper()
	m := csrfMeta.FindStringSubmatch(b.get("/settings").body)
	if m == nil {
		b.t.Fatal("no csrf meta on the settings page")
	}
	return m[1]
}

func prefixed(t *testing.T, e *env, prefix string, opts Options) *httptest.Server {
	opts.AccessToken, opts.MaxBodyBytes = token, 1<<20
	opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(mounted(New(e.l, opts), prefix))
	t.Cleanup(srv.Close)
	return srv
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestLoginLogout(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		srv := prefixed(t, e, "/monitor", Options{})
		b := newBrowser(t, srv.URL, "/monitor")
		// Without a session every page goes to the login form, under the prefix.
		for path, want := range map[string]string{
			"/": "/monitor/login", "/users": "/monitor/login", "/users/u1": "/monitor/login",
			"/models": "/monitor/login", "/records?x=1": "/monitor/login", "/settings": "/monitor/login",
		} {
			p := b.get(path)
			if p.resp.StatusCode != http.StatusSeeOther || p.location() != want {
				t.Fatalf("%s without a session: %d → %q", path, p.resp.StatusCode, p.location())
			}
		}
		// "/monitor" without the slash first gets it, so relative links work.
		if p := b.get(""); p.resp.StatusCode != http.StatusSeeOther || p.location() != "/monitor/" {
			t.Fatalf("/monitor: %d → %q", p.resp.StatusCode, p.location())
		}
		p := b.get("/login")
		if p.resp.StatusCode != 200 || !strings.Contains(p.body, `id="login-form"`) || !strings.Contains(p.body, `action="./login"`) {
			t.Fatalf("login form: %d %s", p.resp.StatusCode, p.body)
		}
		if p = b.post("/login", url.Values{"token": {"wrong"}}); p.resp.StatusCode != 401 || !strings.Contains(p.body, "Wrong access token") {
			t.Fatalf("wrong token: %d", p.resp.StatusCode)
		}
		p = b.post("/login", url.Values{"token": {token}})
		if p.resp.StatusCode != http.StatusSeeOther || p.location() != "/monitor/" {
			t.Fatalf("login: %d → %q", p.resp.StatusCode, p.location())
		}
		c := cookieNamed(p.resp, sessionCookie)
		if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/monitor/" || c.Secure ||
			c.MaxAge != 12*3600 || len(c.Value) < 40 {
			t.Fatalf("session cookie %+v", c)
		}
		if p = b.get("/"); p.resp.StatusCode != 200 || !strings.Contains(p.body, `name="csrf-token"`) {
			t.Fatalf("overview after login: %d", p.resp.StatusCode)
		}
		if p = b.get("/login"); p.resp.StatusCode != http.StatusSeeOther || p.location() != "/monitor/" {
			t.Fatalf("login form with a session: %d → %q", p.resp.StatusCode, p.location())
		}
		// Logging out needs the CSRF token.
		if p = b.post("/logout", url.Values{}); p.resp.StatusCode != 403 {
			t.Fatalf("logout without csrf: %d", p.resp.StatusCode)
		}
		p = b.post("/logout", url.Values{"csrf": {b.csrf()}})
		if p.resp.StatusCode != http.StatusSeeOther || p.location() != "/monitor/login" {
			t.Fatalf("logout: %d → %q", p.resp.StatusCode, p.location())
		}
		if c := cookieNamed(p.resp, sessionCookie); c == nil || c.MaxAge >= 0 {
			t.Fatalf("logout cookie %+v", c)
		}
		if p = b.get("/"); p.resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("overview after logout: %d", p.resp.StatusCode)
		}
		if p = b.get("/api/v1/users"); p.resp.StatusCode != 401 || p.body != `{"error":"Unauthorized"}` {
			t.Fatalf("API after logout: %d %s", p.resp.StatusCode, p.body)
		}
	})
}

func TestLoginRateLimit(t *testing.T) {
	e := &env{l: ledger.New(nil, ledger.Config{})}
	srv := prefixed(t, e, "", Options{})
	b := newBrowser(t, srv.URL, "")
	for i := 0; i < identity.DefaultThrottleBurst; i++ {
		if p := b.post("/login", url.Values{"token": {"guess"}}); p.resp.StatusCode != 401 {
			t.Fatalf("attempt %d: %d", i, p.resp.StatusCode)
		}
	}
	p := b.post("/login", url.Values{"token": {token}})
	if p.resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(p.body, "Too many failed attempts") ||
		p.resp.Header.Get("Retry-After") != "6" || cookieNamed(p.resp, sessionCookie) != nil {
		t.Fatalf("after %d failures: %d", identity.DefaultThrottleBurst, p.resp.StatusCode)
	}
	// The login and the bearer token share the budget.
	if p := b.get("/api/v1/users", "Authorization", "Bearer "+token); p.resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("API after failed logins: %d", p.resp.StatusCode)
	}
	s := newSessions()
	now := time.Now()
	s.now = func() time.Time { return now }
	// Sessions expire.
	id, _ := s.create()
	if _, ok := s.get(id); !ok {
		t.Fatal("new session missing")
	}
	now = now.Add(sessionTTL)
	if _, ok := s.get(id); ok {
		t.Fatal("expired session accepted")
	}
}

func TestSessionAuthorizesAPI(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.user(t, "u1", "Alice", "a@example.com", 10)
		srv := prefixed(t, e, "/monitor", Options{})
		b := newBrowser(t, srv.URL, "/monitor")
		b.login()
		if p := b.get("/api/v1/users"); p.resp.StatusCode != 200 || !strings.Contains(p.body, `"u1"`) {
			t.Fatalf("GET with a session: %d %s", p.resp.StatusCode, p.body)
		}
		put := func(header ...string) page {
			return b.do("PUT", b.base+"/api/v1/users/u1/balance", "application/json", `{"balance":"12.5"}`, header...)
		}
		if p := put(); p.resp.StatusCode != 403 || !strings.Contains(p.body, "X-CSRF-Token") {
			t.Fatalf("PUT without csrf: %d %s", p.resp.StatusCode, p.body)
		}
		if p := put("X-CSRF-Token", "wrong"); p.resp.StatusCode != 403 {
			t.Fatalf("PUT with a wrong csrf: %d", p.resp.StatusCode)
		}
		if p := put("X-CSRF-Token", b.csrf()); p.resp.StatusCode != 200 || !strings.Contains(p.body, `"balance":12.5`) {
			t.Fatalf("PUT with csrf: %d %s", p.resp.StatusCode, p.body)
		}
		// The bearer token needs no CSRF token; no credentials stay a 401.
		anon := newBrowser(t, srv.URL, "/monitor")
		if p := anon.do("PUT", anon.base+"/api/v1/users/u1/balance", "application/json", `{"balance":1}`); p.resp.StatusCode != 401 || p.body != `{"error":"Unauthorized"}` {
			t.Fatalf("no credentials: %d %s", p.resp.StatusCode, p.body)
		}
		if p := anon.do("PUT", anon.base+"/api/v1/users/u1/balance", "application/json", `{"balance":1}`, "Authorization", "Bearer "+token); p.resp.StatusCode != 200 {
			t.Fatalf("bearer: %d %s", p.resp.StatusCode, p.body)
		}
		// A forged cookie is no session.
		forged := newBrowser(t, srv.URL, "/monitor")
		if p := forged.get("/api/v1/users", "Cookie", sessionCookie+"=forged"); p.resp.StatusCode != 401 {
			t.Fatalf("forged cookie: %d", p.resp.StatusCode)
		}
	})
}

var linkAttr = regexp.MustCompile(`(?:href|src|action)="([^"]*)"`)

func TestPages(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.user(t, "u1", xss, "x@example.com", 100)
		e.user(t, "u 2", "Bob", "b@example.com", 50)
		models := []string{"gpt-4o", `<img src=x onerror=alert(2)>`, "claude"}
		for i, m := range models {
			for j, u := range []store.UserInfo{{ID: "u1", Name: xss}, {ID: "u 2", Name: "Bob"}} {
				if _, err := e.l.Charge(ctx, ledger.Answer{User: u, Model: m, InputTokens: int64(10 * (i + 1)), OutputTokens: 5,
					MessageID: m + string(rune('a'+j))}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := e.st.AdjustBalance(ctx, "u1", 5_000_000_000, "admin", "gift <b>"); err != nil {
			t.Fatal(err)
		}
		if err := e.st.RecordModel(ctx, "unpriced-model", "Unpriced", ""); err != nil {
			t.Fatal(err)
		}
		srv := prefixed(t, e, "/monitor", Options{Currency: "€"})
		b := newBrowser(t, srv.URL, "/monitor")
		b.login()
		today := time.Now().UTC().Format("2006-01-02")
		pages := []string{"/", "/?range=today", "/?range=7d&metric=calls", "/?range=month", "/?range=30d", "/?range=all",
			"/?range=custom&from=2020-01-01&to=" + today, "/users", "/users?search=bob&sort=balance&order=asc&page=1",
			"/users/u1", "/users/" + url.PathEscape("u 2"), "/models", "/records",
			"/records?users=u1&models=gpt-4o&from=2020-01-01&to=" + today + "&sortField=cost&sortOrder=ascend", "/settings"}
		checked := map[string]bool{}
		for _, path := range pages {
			p := b.get(path)
			if p.resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", path, p.resp.StatusCode, p.body)
			}
			h := p.resp.Header
			if h.Get("Content-Security-Policy") != csp || !strings.Contains(csp, "script-src 'self';") ||
				h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "same-origin" {
				t.Fatalf("%s: headers %v", path, h)
			}
			if strings.Contains(p.body, "<script>alert") || strings.Contains(p.body, "<img src=x") || strings.Contains(p.body, "<b>") {
				t.Fatalf("%s: unescaped text from OpenWebUI:\n%s", path, p.body)
			}
			if strings.Contains(p.body, token) {
				t.Fatalf("%s shows the access token", path)
			}
			// Every link, form and asset resolves below the prefix and exists.
			for _, m := range linkAttr.FindAllStringSubmatch(p.body, -1) {
				ref, err := p.url.Parse(strings.ReplaceAll(m[1], "&amp;", "&"))
				if err != nil || ref.Host != p.url.Host || !strings.HasPrefix(ref.Path, "/monitor/") {
					t.Fatalf("%s: link %q resolves to %v", path, m[1], ref)
				}
				if strings.HasSuffix(ref.Path, "/logout") || strings.HasSuffix(ref.Path, "/login") || strings.HasSuffix(ref.Path, "/lang") || checked[ref.String()] {
					continue
				}
				checked[ref.String()] = true
				if q := b.do("GET", ref.String(), "", ""); q.resp.StatusCode != 200 && q.resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("%s: link %q: %d %s", path, m[1], q.resp.StatusCode, q.body)
				}
			}
		}
		// Text from OpenWebUI is escaped where it shows.
		for path, want := range map[string]string{
			"/users": "&lt;script&gt;alert(1)&lt;/script&gt;", "/users/u1": "&lt;script&gt;alert(1)&lt;/script&gt;",
			"/?range=all": "&lt;script&gt;alert(1)&lt;/script&gt;", "/records": "&lt;img src=x onerror=alert(2)&gt;",
		} {
			if p := b.get(path); !strings.Contains(p.body, want) {
				t.Fatalf("%s lacks %s:\n%s", path, want, p.body)
			}
		}
		// The charts: a mark per model and per user, each with a tooltip.
		p := b.get("/?range=all")
		share := regexp.MustCompile(`<circle class="mark" data-testid="share-mark"[^>]*><title>([^<]+)</title>`).FindAllStringSubmatch(p.body, -1)
		if len(share) != len(models) {
			t.Fatalf("share marks %d:\n%s", len(share), p.body)
		}
		for _, m := range models {
			found := false
			for _, s := range share {
				found = found || strings.HasPrefix(s[1], strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(m)+": €")
			}
			if !found {
				t.Fatalf("no share mark for %s: %v", m, share)
			}
		}
		if n := strings.Count(p.body, `data-testid="user-mark"><title>`); n != 2 {
			t.Fatalf("user marks %d", n)
		}
		if n := regexp.MustCompile(`data-testid="day-mark"[^>]*><title>`+today+`: €`).FindAllString(p.body, -1); len(n) != 1 {
			t.Fatalf("day marks %v", n)
		}
		if p = b.get("/?range=all&metric=calls"); !strings.Contains(p.body, "<title>gpt-4o: 2 (33.3%)</title>") {
			t.Fatalf("calls metric:\n%s", p.body)
		}
		// Detail pages and the records page show what they should.
		if p = b.get("/users/u1"); !strings.Contains(p.body, `data-user-id="u1"`) || !strings.Contains(p.body, "gift &lt;b&gt;") ||
			!strings.Contains(p.body, `id="topup-form"`) || !strings.Contains(p.body, "€") {
			t.Fatalf("user page:\n%s", p.body)
		}
		if p = b.get("/users/nobody"); p.resp.StatusCode != 404 {
			t.Fatalf("missing user: %d", p.resp.StatusCode)
		}
		if p = b.get("/models"); strings.Count(p.body, `data-testid="price-row"`) != 4 || !strings.Contains(p.body, `data-model-id="unpriced-model"`) {
			t.Fatalf("models page:\n%s", p.body)
		}
		p = b.get("/records?users=u1&models=gpt-4o")
		if n := strings.Count(p.body, `data-testid="record-row"`); n != 1 {
			t.Fatalf("filtered records: %d", n)
		}
		exp := regexp.MustCompile(`href="([^"]+)" id="records-export"`).FindStringSubmatch(p.body)
		if exp == nil {
			t.Fatal("no export link")
		}
		ref, _ := p.url.Parse(strings.ReplaceAll(exp[1], "&amp;", "&"))
		q := b.do("GET", ref.String(), "", "")
		if q.resp.StatusCode != 200 || !strings.HasPrefix(q.resp.Header.Get("Content-Type"), "text/csv") || strings.Count(q.body, "\n") != 2 {
			t.Fatalf("export %s: %d %s", ref, q.resp.StatusCode, q.body)
		}
		if p = b.get("/records?to=yesterday"); p.resp.StatusCode != 400 {
			t.Fatalf("bad date: %d", p.resp.StatusCode)
		}
		if p = b.get("/settings"); !strings.Contains(p.body, e.st.Kind()) || !strings.Contains(p.body, "not configured") {
			t.Fatalf("settings:\n%s", p.body)
		}
	})
}

func TestStaticAndRoot(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		// Mounted at the root of a site (the eachBackend server).
		b := newBrowser(t, e.srv.URL, "")
		p := b.get("/static/app.css?v=" + web.Version("app.css"))
		if p.resp.StatusCode != 200 || !strings.HasPrefix(p.resp.Header.Get("Content-Type"), "text/css") ||
			!strings.Contains(p.resp.Header.Get("Cache-Control"), "immutable") {
			t.Fatalf("static: %d %v", p.resp.StatusCode, p.resp.Header)
		}
		if p = b.get("/static/nope.js"); p.resp.StatusCode != 404 {
			t.Fatalf("missing static: %d", p.resp.StatusCode)
		}
		if p = b.get("/users"); p.location() != "/login" {
			t.Fatalf("root redirect %q", p.location())
		}
		b.login()
		p = b.get("/users")
		if !strings.Contains(p.body, `href="./static/app.css?v=`) || !strings.Contains(p.body, `<script src="./static/app.js?v=`) {
			t.Fatalf("assets:\n%s", p.body)
		}
		if c := b.c.Jar.Cookies(p.url); len(c) != 1 {
			t.Fatalf("cookies %v", c)
		}
	})
}

func TestLanguage(t *testing.T) {
	e := &env{l: ledger.New(nil, ledger.Config{})}
	srv := prefixed(t, e, "/monitor", Options{})
	b := newBrowser(t, srv.URL, "/monitor")
	for accept, want := range map[string]string{
		"": "Sign in", "zh-CN,zh;q=0.9": "登录", "es-ES": "Iniciar sesión", "fr, es;q=0.5, zh;q=0.4": "Iniciar sesión",
		"de": "Sign in", "en;q=0.1, zh": "登录",
	} {
		p := b.get("/login", "Accept-Language", accept)
		if !strings.Contains(p.body, want) {
			t.Fatalf("Accept-Language %q: want %q", accept, want)
		}
	}
	p := b.get("/lang?l=es&back=" + url.QueryEscape("users?page=2"))
	c := cookieNamed(p.resp, "lang")
	if p.resp.StatusCode != http.StatusSeeOther || p.location() != "/monitor/users?page=2" || c == nil || c.Value != "es" || c.Path != "/monitor/" {
		t.Fatalf("switch: %d %q %+v", p.resp.StatusCode, p.location(), c)
	}
	if p = b.get("/login", "Accept-Language", "zh"); !strings.Contains(p.body, "Iniciar sesión") || !strings.Contains(p.body, `lang="es"`) {
		t.Fatal("the lang cookie does not win over Accept-Language")
	}
	for _, back := range []string{"//evil.example/", "https://evil.example/", `/\evil.example`, "/monitor"} {
		if p = b.get("/lang?l=zh&back=" + url.QueryEscape(back)); p.location() != "/monitor/" {
			t.Fatalf("back %q → %q", back, p.location())
		}
	}
}

// TestMessagesComplete: every language has every key, and every key the
// templates use exists.
func TestMessagesComplete(t *testing.T) {
	for lang, m := range messages {
		for k := range messages["en"] {
			if m[k] == "" {
				t.Errorf("%s lacks %s", lang, k)
			}
		}
		if len(m) != len(messages["en"]) {
			t.Errorf("%s has %d keys, en %d", lang, len(m), len(messages["en"]))
		}
	}
	used := regexp.MustCompile(`\.T "([^"]+)"`)
	files, _ := fs.Glob(web.Templates, "templates/*.html")
	for _, f := range files {
		b, _ := fs.ReadFile(web.Templates, f)
		for _, m := range used.FindAllStringSubmatch(string(b), -1) {
			if _, ok := messages["en"][m[1]]; !ok {
				t.Errorf("%s uses the unknown key %s", f, m[1])
			}
		}
	}
	for _, p := range append(append([]string{}, presets...), "cost", "calls", "login", "overview", "users", "user", "models", "records", "settings") {
		_, r := messages["en"]["range."+p]
		_, mt := messages["en"]["metric."+p]
		_, n := messages["en"]["nav."+p]
		if !r && !mt && !n {
			t.Errorf("no message for %s", p)
		}
	}
}

func TestFormatting(t *testing.T) {
	for in, want := range map[int64]string{0: "$0.00", 1_500_000_000: "$1.50", -2_000_000_000: "-$2.00",
		1_234_567_000_000_000: "$1,234,567.00", 150: "$0.00000015"} {
		if got := formatMoney("$", money.Amount(in)); got != want {
			t.Errorf("formatMoney(%d) = %q, want %q", in, got, want)
		}
	}
	if formatInt(1234567) != "1,234,567" || formatInt(-1000) != "-1,000" || formatInt(999) != "999" {
		t.Error("formatInt")
	}
	for path, want := range map[string]string{"/": "./", "/users": "./", "/users/u1": "../", "/users/a%2Fb": "../"} {
		r := httptest.NewRequest("GET", path, nil)
		if got := base(r); got != want {
			t.Errorf("base(%s) = %q, want %q", path, got, want)
		}
	}
}

// TestSettingsSayWhetherOpenWebUIAnswers asks a real (fake) OpenWebUI, then
// one that is gone.
func TestSettingsSayWhetherOpenWebUIAnswers(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		p := fakeowui.NewProvider(t)
		o := fakeowui.NewOpenWebUI(t, p)
		_, key := o.AddUser("admin", "admin@example.com", "Admin", "admin")
		srv := prefixed(t, e, "/monitor", Options{OpenWebUI: o.URL(), OpenWebUIAPIKey: key, FunctionAPIKey: "sk-function"})
		b := newBrowser(t, srv.URL, "/monitor")
		b.login()
		page := b.get("/settings")
		if !strings.Contains(page.body, `data-testid="settings-owui-answers">answers`) || !strings.Contains(page.body, `value="sk-function"`) {
			t.Fatalf("settings page:\n%s", page.body)
		}
		// The README's promise: the function's key is there to copy; the
		// other secrets are not.
		for _, secret := range []string{token, key} {
			if strings.Contains(page.body, secret) {
				t.Fatalf("the settings page shows a secret")
			}
		}
		o.Close()
		if page := b.get("/settings"); !strings.Contains(page.body, "does not answer") {
			t.Fatalf("a closed OpenWebUI still answers:\n%s", page.body)
		}
	})
}

func TestUsersPageStatusFilter(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.user(t, "u1", "Active Annie", "a@example.com", 1)
		e.user(t, "u2", "Blocked Bob", "b@example.com", 1)
		if err := e.st.SetBlocked(context.Background(), "u2", true); err != nil {
			t.Fatal(err)
		}
		srv := prefixed(t, e, "/monitor", Options{})
		b := newBrowser(t, srv.URL, "/monitor")
		b.login()
		for status, want := range map[string][2]bool{"": {true, true}, "active": {true, false}, "blocked": {false, true}} {
			body := b.get("/users?status=" + status).body
			if strings.Contains(body, "Active Annie") != want[0] || strings.Contains(body, "Blocked Bob") != want[1] {
				t.Fatalf("status %q: annie %v bob %v", status, strings.Contains(body, "Active Annie"), strings.Contains(body, "Blocked Bob"))
			}
		}
	})
}
