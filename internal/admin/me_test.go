package admin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
)

// meServer mounts the API at /monitor with an Identify that reads the
// test header X-Who: a user id, or "none", "bad", "forbidden", "down".
func meServer(t *testing.T, identify bool) (*httptest.Server, store.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "me.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l := ledger.New(st, ledger.Config{InitBalance: money.Units(5), Budgets: &ledger.Budgets{}})
	opts := Options{AccessToken: token, MaxBodyBytes: 1 << 20, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if identify {
		opts.Identify = func(r *http.Request) (store.UserInfo, error) {
			switch who := r.Header.Get("X-Who"); who {
			case "", "none":
				return store.UserInfo{}, identity.ErrNoCredential
			case "bad":
				return store.UserInfo{}, fmt.Errorf("%w: OpenWebUI answered 401", identity.ErrUnauthenticated)
			case "forbidden":
				return store.UserInfo{}, fmt.Errorf("%w: 403", identity.ErrForbidden)
			case "down":
				return store.UserInfo{}, fmt.Errorf("%w: connection refused", identity.ErrUnavailable)
			default:
				return store.UserInfo{ID: who, Name: "Name of " + who, Email: who + "@example.com", Role: "user"}, nil
			}
		}
	}
	srv := httptest.NewServer(mounted(New(l, opts), "/monitor"))
	t.Cleanup(srv.Close)
	return srv, st
}

func meGet(t *testing.T, srv *httptest.Server, method, path string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestMeStatuses: how each outcome of the identification is answered, on
// the page (in the reader's language) and in the JSON; a user the monitor
// has not met yet starts with the initial balance; without Identify the
// page is off.
func TestMeStatuses(t *testing.T) {
	srv, st := meServer(t, true)
	for _, c := range []struct {
		who    string
		status int
		page   string
	}{
		{"none", 401, "You are not signed in to OpenWebUI."},
		{"bad", 401, "Your OpenWebUI session has expired"},
		{"forbidden", 403, "OpenWebUI would not say whose API key this is"},
		{"down", 503, "cannot reach OpenWebUI"},
	} {
		status, body, h := meGet(t, srv, http.MethodGet, "/monitor/api/v1/me", "X-Who", c.who)
		if status != c.status || gjson.Get(body, "error").Str == "" || gjson.Get(body, "user").Exists() || h.Get("Cache-Control") != "no-store" {
			t.Errorf("JSON %s: %d %s", c.who, status, body)
		}
		status, body, h = meGet(t, srv, http.MethodGet, "/monitor/me", "X-Who", c.who)
		if status != c.status || !strings.Contains(body, c.page) || !strings.Contains(body, `href="/auth?redirect=%2Fmonitor%2Fme"`) ||
			h.Get("Location") != "" || h.Get("Content-Security-Policy") == "" {
			t.Errorf("page %s: %d %v\n%s", c.who, status, h, body)
		}
	}
	// Chinese, from Accept-Language.
	if status, body, _ := meGet(t, srv, http.MethodGet, "/monitor/me", "Accept-Language", "zh-CN"); status != 401 ||
		!strings.Contains(body, "你尚未登录 OpenWebUI。") || !strings.Contains(body, "我的用量") {
		t.Errorf("Chinese: %d %s", status, body)
	}
	// A user met for the first time: created with the initial balance.
	status, body, _ := meGet(t, srv, http.MethodGet, "/monitor/api/v1/me", "X-Who", "newcomer")
	if status != 200 || gjson.Get(body, "user.id").Str != "newcomer" || gjson.Get(body, "balance").Raw != "5" ||
		gjson.Get(body, "limits.#").Int() != 0 || gjson.Get(body, "records.#").Int() != 0 || gjson.Get(body, "usage.daily.#").Int() != meDays {
		t.Fatalf("newcomer: %d %s", status, body)
	}
	if u, err := st.User(context.Background(), "newcomer"); err != nil || u.Balance != money.Units(5) || u.Name != "Name of newcomer" {
		t.Fatalf("newcomer in the store: %+v %v", u, err)
	}
	status, body, _ = meGet(t, srv, http.MethodGet, "/monitor/me", "X-Who", "newcomer")
	if status != 200 || !strings.Contains(body, `data-testid="me-nolimits"`) || !strings.Contains(body, `data-testid="me-nousage"`) ||
		!strings.Contains(body, `href="./me"`) {
		t.Fatalf("newcomer's page: %d %s", status, body)
	}
	// HEAD answers as GET does; other methods are refused.
	if status, _, _ := meGet(t, srv, http.MethodHead, "/monitor/me", "X-Who", "newcomer"); status != 200 {
		t.Errorf("HEAD: %d", status)
	}
	if status, _, h := meGet(t, srv, http.MethodPut, "/monitor/api/v1/me", "X-Who", "newcomer"); status != 405 || h.Get("Allow") != "GET, HEAD" {
		t.Errorf("PUT: %d %v", status, h)
	}

	off, _ := meServer(t, false)
	if status, body, _ := meGet(t, off, http.MethodGet, "/monitor/api/v1/me", "X-Who", "newcomer"); status != 404 || gjson.Get(body, "user").Exists() {
		t.Errorf("without Identify: %d %s", status, body)
	}
}
