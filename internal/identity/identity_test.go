package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestCredential(t *testing.T) {
	cases := []struct {
		name    string
		header  []string
		token   string
		source  string
		comment string
	}{
		{"none", nil, "", "", ""},
		{"bearer", []string{"Authorization", "Bearer A"}, "A", SourceBearer, ""},
		{"bearer lower case", []string{"Authorization", "bearer A"}, "A", SourceBearer, ""},
		{"bearer over cookie and key", []string{"Authorization", "Bearer A", "Cookie", "token=B", "X-Api-Key", "C"}, "A", SourceBearer, ""},
		{"cookie", []string{"Cookie", "x=1; token=B; y=2"}, "B", SourceCookie, ""},
		{"quoted cookie", []string{"Cookie", `token="B"`}, "B", SourceCookie, ""},
		{"cookie over key", []string{"Cookie", "token=B", "X-Api-Key", "C"}, "B", SourceCookie, ""},
		{"last token in cookie", []string{"Cookie", "token=B1; token=B2"}, "B2", SourceCookie, "Starlette keeps the last"},
		{"first cookie header", []string{"Cookie", "token=B1", "Cookie", "token=B2"}, "B1", SourceCookie, "Starlette reads one header"},
		{"empty cookie", []string{"Cookie", "token=", "X-Api-Key", "C"}, "", SourceCookie, "OpenWebUI rejects"},
		{"x-api-key", []string{"X-Api-Key", "C"}, "C", SourceHeader, ""},
		{"other scheme", []string{"Authorization", "Basic D", "X-Api-Key", "C"}, "D", SourceAuthorization, "middleware fallback"},
		{"bearer without token", []string{"Authorization", "Bearer", "X-Api-Key", "C"}, "C", SourceHeader, ""},
		{"three parts", []string{"Authorization", "Token a b", "X-Api-Key", "C"}, "C", SourceHeader, ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "/api/chat/completions", nil)
		for i := 0; i+1 < len(c.header); i += 2 {
			r.Header.Add(c.header[i], c.header[i+1])
		}
		tok, src := Credential(r, "")
		if tok != c.token || src != c.source {
			t.Errorf("%s: got (%q, %q), want (%q, %q) %s", c.name, tok, src, c.token, c.source, c.comment)
		}
	}
}

// TestCredentialCustomHeader: OpenWebUI reads API keys from the header
// CUSTOM_API_KEY_HEADER names (AuthTokenMiddleware, since 0.9.4), and then
// no longer from x-api-key.
func TestCredentialCustomHeader(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/api/chat/completions", nil)
	r.Header.Set("X-OpenWebUI-Key", "sk-custom")
	if tok, src := Credential(r, "X-OpenWebUI-Key"); tok != "sk-custom" || src != SourceHeader {
		t.Errorf("custom header: (%q, %q)", tok, src)
	}
	if tok, _ := Credential(r, ""); tok != "" {
		t.Errorf("the default header found %q in a custom one", tok)
	}
	r.Header.Set("X-Api-Key", "sk-default")
	if tok, _ := Credential(r, "x-openwebui-key"); tok != "sk-custom" {
		t.Errorf("with both headers, the custom one (any case) is read: %q", tok)
	}
}

// Credential and the fake OpenWebUI must pick the same user from requests
// carrying several credentials.
func TestCredentialAgreesWithOpenWebUI(t *testing.T) {
	o := fakeowui.NewOpenWebUI(t, nil)
	jwtA, _ := o.AddUser("a", "a@x", "A", "user")
	jwtB, _ := o.AddUser("b", "b@x", "B", "user")
	_, keyC := o.AddUser("c", "c@x", "C", "user")
	res := NewResolver(Config{OpenWebUI: o.URL(), SecretKey: o.Secret()})
	for _, h := range [][]string{
		{"Authorization", "Bearer " + jwtA, "Cookie", "token=" + jwtB, "X-Api-Key", keyC},
		{"Cookie", "token=" + jwtA + "; token=" + jwtB, "X-Api-Key", keyC},
		{"Cookie", "token=" + jwtB, "X-Api-Key", keyC},
		{"Authorization", "Basic " + jwtA, "X-Api-Key", keyC},
		{"Authorization", "Bearer", "X-Api-Key", keyC},
	} {
		r, _ := http.NewRequest(http.MethodGet, o.URL()+"/api/v1/auths/", nil)
		for i := 0; i+1 < len(h); i += 2 {
			r.Header.Add(h[i], h[i+1])
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ ID string }
		decode(t, resp, &v)
		tok, _ := Credential(r, "")
		u, err := res.Resolve(context.Background(), tok)
		if err != nil || u.ID != v.ID {
			t.Errorf("%v: OpenWebUI says %q, we say %q (%v)", h, v.ID, u.ID, err)
		}
	}
}

func decode(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func sign(secret, header, payload string) string {
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(s))
	return s + "." + enc.EncodeToString(mac.Sum(nil))
}

func TestVerifyHS256(t *testing.T) {
	const secret = "s3cr3t"
	now := time.Unix(1_700_000_000, 0)
	hs := `{"alg":"HS256","typ":"JWT"}`
	good := sign(secret, hs, `{"id":"u1","exp":1700000100,"jti":"j","iat":1699999000}`)
	enc := base64.RawURLEncoding
	parts := func(tok string) (string, string, string) {
		var p [3]string
		for i, j := 0, 0; i < 3; i++ {
			k := j
			for k < len(tok) && tok[k] != '.' {
				k++
			}
			p[i], j = tok[j:k], k+1
		}
		return p[0], p[1], p[2]
	}
	h, p, s := parts(good)
	tampered := h + "." + enc.EncodeToString([]byte(`{"id":"admin","exp":1700000100}`)) + "." + s

	cases := []struct {
		name  string
		token string
		id    string
		err   error
	}{
		{"good", good, "u1", nil},
		{"no exp", sign(secret, hs, `{"id":"u1","jti":"j"}`), "u1", nil},
		{"padded", good + "=", "u1", nil},
		{"float exp", sign(secret, hs, `{"id":"u1","exp":1700000100.5}`), "u1", nil},
		{"expired", sign(secret, hs, `{"id":"u1","exp":1699999999}`), "", errExpired},
		{"expires now", sign(secret, hs, `{"id":"u1","exp":1700000000}`), "", errExpired},
		{"bad signature", h + "." + p + "." + enc.EncodeToString([]byte("nope")), "", errSignature},
		{"tampered payload", tampered, "", errSignature},
		{"wrong secret", sign("other", hs, `{"id":"u1"}`), "", errSignature},
		{"alg none", enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + p + ".", "", errAlg},
		{"alg HS512", sign(secret, `{"alg":"HS512"}`, `{"id":"u1"}`), "", errAlg},
		{"alg missing", sign(secret, `{"typ":"JWT"}`, `{"id":"u1"}`), "", errAlg},
		{"no id", sign(secret, hs, `{"sub":"u1"}`), "", errNoID},
		{"numeric id", sign(secret, hs, `{"id":5}`), "", errNoID},
		{"two parts", h + "." + p, "", errMalformed},
		{"four parts", good + ".x", "", errMalformed},
		{"empty", "", "", errMalformed},
		{"header not base64", "!!." + p + "." + s, "", errMalformed},
		{"header not JSON", enc.EncodeToString([]byte("x")) + "." + p + "." + s, "", errMalformed},
		{"payload not JSON", sign(secret, hs, `not json`), "", errMalformed},
		{"exp not a number", sign(secret, hs, `{"id":"u1","exp":"soon"}`), "", errMalformed},
	}
	for _, c := range cases {
		cl, err := verifyHS256(c.token, secret, now)
		if !errors.Is(err, c.err) || cl.ID != c.id {
			t.Errorf("%s: got (%q, %v), want (%q, %v)", c.name, cl.ID, err, c.id, c.err)
		}
	}
}

func setup(t *testing.T, withSecret bool) (*fakeowui.OpenWebUI, *Resolver, *clock) {
	o := fakeowui.NewOpenWebUI(t, nil)
	c := newClock()
	cfg := Config{OpenWebUI: o.URL() + "/", TTL: 30 * time.Second, Now: c.Now}
	if withSecret {
		cfg.SecretKey = o.Secret()
	}
	return o, NewResolver(cfg), c
}

func TestResolveJWT(t *testing.T) {
	ctx := context.Background()
	for _, withSecret := range []bool{true, false} {
		t.Run(fmt.Sprint("secret=", withSecret), func(t *testing.T) {
			o, r, _ := setup(t, withSecret)
			jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "admin")
			u, err := r.Resolve(ctx, jwt)
			want := User{ID: "u1", Email: "alice@example.com", Name: "Alice", Role: "admin"}
			if err != nil || u != want {
				t.Fatalf("got %+v, %v", u, err)
			}
			if u, err := r.Resolve(ctx, o.IssueToken("u1", time.Time{})); err != nil || u.ID != "u1" {
				t.Errorf("token without exp: %+v, %v", u, err)
			}
			for name, tok := range map[string]string{
				"expired":      o.IssueToken("u1", time.Now().Add(-time.Minute)),
				"wrong secret": fakeowui.SignJWT("other", map[string]any{"id": "u1"}),
				"alg none":     base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"id":"u1"}`)) + ".",
				"malformed":    "not-a-jwt",
				"empty":        "",
			} {
				if u, err := r.Resolve(ctx, tok); !errors.Is(err, ErrUnauthenticated) || u != (User{}) {
					t.Errorf("%s: got %+v, %v", name, u, err)
				}
			}
			// A token that fails local verification is asked of OpenWebUI
			// (PyJWT may accept what we cannot verify), and its refusal is
			// remembered briefly.
			bad := fakeowui.SignJWT("other", map[string]any{"id": "u2"})
			n := o.Lookups()
			r.Resolve(ctx, bad)
			r.Resolve(ctx, bad)
			if o.Lookups() != n+1 {
				t.Errorf("a badly signed JWT was looked up %d times, want once", o.Lookups()-n)
			}
		})
	}
}

func TestResolveAPIKey(t *testing.T) {
	ctx := context.Background()
	o, r, _ := setup(t, true)
	_, key := o.AddUser("u2", "bob@example.com", "Bob", "pending")
	u, err := r.Resolve(ctx, key)
	if want := (User{ID: "u2", Email: "bob@example.com", Name: "Bob", Role: "pending", APIKey: true}); err != nil || u != want {
		t.Fatalf("got %+v, %v", u, err)
	}
	if _, err := r.Resolve(ctx, "sk-unknown"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("unknown key: %v", err)
	}
}

func TestCoalescing(t *testing.T) {
	for _, withSecret := range []bool{true, false} {
		o, r, _ := setup(t, withSecret)
		jwt, key := o.AddUser("u1", "a@x", "A", "user")
		o.SetOptions(fakeowui.OpenWebUIOptions{AuthDelay: 100 * time.Millisecond})
		for _, tok := range []string{jwt, key} {
			before := o.Lookups()
			var wg sync.WaitGroup
			errs := make(chan error, 100)
			for range 100 {
				wg.Go(func() {
					u, err := r.Resolve(context.Background(), tok)
					if err == nil && u.ID != "u1" {
						err = fmt.Errorf("user %+v", u)
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if n := o.Lookups() - before; n != 1 {
				t.Errorf("secret=%v: %d lookups for 100 concurrent resolves", withSecret, n)
			}
		}
	}
}

// A caller that gives up does not spoil the lookup for the others.
func TestCoalescingCancel(t *testing.T) {
	o, r, _ := setup(t, false)
	_, key := o.AddUser("u1", "a@x", "A", "user")
	o.SetOptions(fakeowui.OpenWebUIOptions{AuthDelay: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	done := make(chan error)
	go func() {
		_, err := r.Resolve(ctx, key)
		done <- err
	}()
	time.Sleep(5 * time.Millisecond)
	u, err := r.Resolve(context.Background(), key)
	if err != nil || u.ID != "u1" {
		t.Errorf("patient caller: %+v, %v", u, err)
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("impatient caller: %v", err)
	}
	if n := o.Lookups(); n != 1 {
		t.Errorf("%d lookups", n)
	}
}

func TestTTL(t *testing.T) {
	ctx := context.Background()
	o, r, c := setup(t, true)
	jwt, key := o.AddUser("u1", "a@x", "A", "admin")
	for _, tok := range []string{jwt, key} {
		if u, err := r.Resolve(ctx, tok); err != nil || u.Role != "admin" {
			t.Fatalf("%+v %v", u, err)
		}
	}
	o.SetRole("u1", "user")
	c.Advance(29 * time.Second)
	if u, _ := r.Resolve(ctx, jwt); u.Role != "admin" || o.Lookups() != 2 {
		t.Errorf("within TTL: %+v, %d lookups", u, o.Lookups())
	}
	c.Advance(2 * time.Second)
	for _, tok := range []string{jwt, key} {
		if u, err := r.Resolve(ctx, tok); err != nil || u.Role != "user" {
			t.Errorf("after TTL: %+v %v", u, err)
		}
	}

	o.Revoke("u1")
	c.Advance(31 * time.Second)
	for _, tok := range []string{jwt, key} {
		if _, err := r.Resolve(ctx, tok); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("revoked: %v", err)
		}
	}
	// The refusal is cached briefly.
	n := o.Lookups()
	r.Resolve(ctx, key)
	if o.Lookups() != n {
		t.Errorf("refusal not cached")
	}
	c.Advance(6 * time.Second)
	r.Resolve(ctx, key)
	if o.Lookups() != n+1 {
		t.Errorf("refusal cached too long")
	}
}

// A cached JWT is not trusted past its expiry, even within the TTL: the
// next call asks OpenWebUI again (whose own clock then decides).
func TestTokenExpiresWhileCached(t *testing.T) {
	o, r, c := setup(t, true)
	o.AddUser("u1", "a@x", "A", "user")
	tok := o.IssueToken("u1", c.Now().Add(10*time.Second))
	if _, err := r.Resolve(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	n := o.Lookups()
	c.Advance(5 * time.Second)
	r.Resolve(context.Background(), tok)
	if o.Lookups() != n {
		t.Fatalf("looked up again before the token expired")
	}
	c.Advance(6 * time.Second)
	r.Resolve(context.Background(), tok)
	if o.Lookups() != n+1 {
		t.Errorf("an expired token was served from the cache")
	}
}

func TestFailuresNotCached(t *testing.T) {
	ctx := context.Background()
	for _, withSecret := range []bool{false, true} {
		o, r, _ := setup(t, withSecret)
		jwt, key := o.AddUser("u1", "a@x", "A", "admin")
		o.SetOptions(fakeowui.OpenWebUIOptions{AuthStatus: 502})
		u, err := r.Resolve(ctx, jwt)
		if withSecret {
			// Verified locally: the id is known, the rest is not.
			if err != nil || u != (User{ID: "u1", Role: "user"}) {
				t.Errorf("degraded: %+v, %v", u, err)
			}
		} else if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnauthenticated) || u != (User{}) {
			t.Errorf("no secret: %+v, %v", u, err)
		}
		if u, err := r.Resolve(ctx, key); !errors.Is(err, ErrUnavailable) || u != (User{}) {
			t.Errorf("API key: %+v, %v", u, err)
		}
		o.SetOptions(fakeowui.OpenWebUIOptions{})
		for _, tok := range []string{jwt, key} {
			if u, err := r.Resolve(ctx, tok); err != nil || u.Role != "admin" || u.Email != "a@x" {
				t.Errorf("secret=%v: after recovery %+v, %v", withSecret, u, err)
			}
		}
	}
}

func TestUnreachable(t *testing.T) {
	o := fakeowui.NewOpenWebUI(t, nil)
	jwt, key := o.AddUser("u1", "a@x", "A", "user")
	o.Close()
	for _, secret := range []string{"", o.Secret()} {
		r := NewResolver(Config{OpenWebUI: o.URL(), SecretKey: secret})
		if u, err := r.Resolve(context.Background(), key); !errors.Is(err, ErrUnavailable) || u != (User{}) {
			t.Errorf("API key: %+v, %v", u, err)
		}
		u, err := r.Resolve(context.Background(), jwt)
		if secret == "" && (!errors.Is(err, ErrUnavailable) || u != (User{})) {
			t.Errorf("JWT: %+v, %v", u, err)
		}
	}
}

func TestBadAnswers(t *testing.T) {
	cases := map[string]struct {
		status int
		body   string
		want   error
	}{
		"forbidden":    {403, `{"detail":"x"}`, ErrForbidden},
		"not found":    {404, `{"detail":"Not Found"}`, ErrUnavailable},
		"html":         {200, `<html>`, ErrUnavailable},
		"no id":        {200, `{"email":"a@x"}`, ErrUnavailable},
		"redirect":     {307, ``, ErrUnavailable},
		"another user": {200, `{"id":"u2","role":"admin"}`, nil},
	}
	for name, c := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c.status == 307 {
				w.Header().Set("Location", "/elsewhere")
			}
			w.WriteHeader(c.status)
			w.Write([]byte(c.body))
		}))
		r := NewResolver(Config{OpenWebUI: srv.URL, SecretKey: "k"})
		u, err := r.Resolve(context.Background(), fakeowui.SignJWT("k", map[string]any{"id": "u1"}))
		if name == "another user" {
			// OpenWebUI serves the call as the user it names: that one pays.
			if err != nil || u.ID != "u2" {
				t.Errorf("%s: %+v %v", name, u, err)
			}
		} else if _, err := r.Resolve(context.Background(), "sk-x"); !errors.Is(err, c.want) {
			t.Errorf("%s: %v", name, err)
		}
		srv.Close()
	}
}

// The lookup's Set-Cookie must not stick to the resolver's client.
func TestSetCookieIgnored(t *testing.T) {
	o := fakeowui.NewOpenWebUI(t, nil)
	jwt, _ := o.AddUser("u1", "a@x", "A", "user")
	_, key := o.AddUser("u2", "b@x", "B", "user")
	jar, _ := cookiejar.New(nil)
	r := NewResolver(Config{OpenWebUI: o.URL(), Client: &http.Client{Jar: jar}})
	r.Resolve(context.Background(), jwt)
	if u, err := r.Resolve(context.Background(), key); err != nil || u.ID != "u2" {
		t.Fatalf("%+v %v", u, err)
	}
	for _, req := range o.Requests() {
		if req.Header.Get("Cookie") != "" {
			t.Errorf("lookup sent a cookie: %s", req.Header.Get("Cookie"))
		}
	}
}

func TestCacheBound(t *testing.T) {
	o, _, _ := setup(t, false)
	r := NewResolver(Config{OpenWebUI: o.URL(), MaxEntries: 16})
	for i := range 100 {
		_, key := o.AddUser(fmt.Sprint("u", i), "", "", "user")
		if _, err := r.Resolve(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		r.mu.RLock()
		n := len(r.cache)
		r.mu.RUnlock()
		if n > 16 {
			t.Fatalf("%d cache entries", n)
		}
	}
}

func TestCacheHitAllocations(t *testing.T) {
	o, r, _ := setup(t, true)
	jwt, _ := o.AddUser("u1", "a@x", "A", "user")
	ctx := context.Background()
	if _, err := r.Resolve(ctx, jwt); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { r.Resolve(ctx, jwt) }); n > 0 {
		t.Errorf("cache hit allocates %v times", n)
	}
}

func BenchmarkResolveCached(b *testing.B) {
	o := fakeowui.NewOpenWebUI(b, nil)
	jwt, _ := o.AddUser("u1", "a@x", "A", "user")
	r := NewResolver(Config{OpenWebUI: o.URL(), SecretKey: o.Secret()})
	ctx := context.Background()
	r.Resolve(ctx, jwt)
	b.ReportAllocs()
	for b.Loop() {
		r.Resolve(ctx, jwt)
	}
}
