package caddymodule

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// chromium finds the browser. A missing one is a failure, never a skip: the
// test command installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("OWMON_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium not found: run scripts/test, which installs it (Debian: apt-get install chromium)")
	return ""
}

// screenshots is where page screenshots go: docs/screenshots when
// OWMON_SCREENSHOTS is set (to refresh the committed ones), else a temp dir.
func screenshots(t *testing.T) string {
	if d := os.Getenv("OWMON_SCREENSHOTS"); d != "" {
		return d
	}
	return t.TempDir()
}

// TestDashboardInChromium drives the dashboard in a real browser, in
// English and in Chinese: log in, change a price, top up, block and
// unblock, filter records and export them, each checked against the store.
func TestDashboardInChromium(t *testing.T) {
	exe := chromium(t)
	s := startSite(t, "sqlite://"+filepath.Join(t.TempDir(), "ui.db"), "access_token admin-secret")
	st := activeStore(t)
	ctx := context.Background()
	seed(t, st)
	shots := screenshots(t)

	for _, lang := range []string{"en", "zh"} {
		t.Run(lang, func(t *testing.T) {
			bctx := openBrowser(t, exe, 1280, 900, 90*time.Second)
			base := s.url + "/monitor/"
			run := func(what string, actions ...chromedp.Action) {
				t.Helper()
				if err := chromedp.Run(bctx, actions...); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			shot := func(name string) {
				t.Helper()
				var png []byte
				run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
				if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("%s-%s.png", name, lang)), png, 0o644); err != nil {
					t.Fatal(err)
				}
			}

			// Log in.
			run("login page", chromedp.Navigate(base+"login"), chromedp.WaitVisible(`#login-token`, chromedp.ByQuery))
			if lang == "en" {
				shot("login")
			}
			run("login",
				chromedp.SendKeys(`#login-token`, "admin-secret", chromedp.ByQuery),
				chromedp.Click(`#login-submit`, chromedp.ByQuery),
				chromedp.WaitVisible(`[data-testid="totals"]`, chromedp.ByQuery))
			if lang == "zh" {
				run("switch to Chinese", chromedp.Click(`[data-testid="lang-zh"]`, chromedp.ByQuery),
					chromedp.WaitVisible(`[data-testid="totals"]`, chromedp.ByQuery))
			}
			var nav string
			run("read nav", chromedp.Text(`[data-testid="nav-users"]`, &nav, chromedp.ByQuery))
			if want := map[string]string{"en": "Users", "zh": "用户"}[lang]; strings.TrimSpace(nav) != want {
				t.Fatalf("nav says %q, want %q", nav, want)
			}
			var calls string
			run("read totals", chromedp.Text(`[data-testid="total-calls"]`, &calls, chromedp.ByQuery))
			if !strings.Contains(calls, "3") {
				t.Fatalf("overview shows %q calls", calls)
			}
			shot("overview")

			// Change a model price.
			price := map[string]string{"en": "3.25", "zh": "4.5"}[lang]
			row := `tr[data-model-id="gpt-4o"] `
			run("edit price",
				chromedp.Navigate(base+"models"),
				chromedp.WaitVisible(row+`[data-testid="price-input"]`, chromedp.ByQuery),
				chromedp.SetValue(row+`[data-testid="price-input"]`, price, chromedp.ByQuery),
				chromedp.Click(row+`[data-testid="price-save"]`, chromedp.ByQuery))
			waitFor(t, func() bool {
				p, err := st.ModelPrice(ctx, "gpt-4o")
				return err == nil && p.Input.String() == price
			}, "the new price in the store")
			shot("models")

			// Top up a user, then block and unblock them.
			before, _ := st.User(ctx, "u1")
			run("top up",
				chromedp.Navigate(base+"users/u1"),
				chromedp.WaitVisible(`#topup-amount`, chromedp.ByQuery),
				chromedp.SendKeys(`#topup-amount`, "5.5", chromedp.ByQuery),
				chromedp.SendKeys(`#topup-reason`, "browser test", chromedp.ByQuery),
				clickAndReload(`#topup-submit`))
			waitFor(t, func() bool {
				u, _ := st.User(ctx, "u1")
				return u.Balance == before.Balance+money.Amount(5_500_000_000)
			}, "the top-up in the store")
			changes, _ := st.BalanceChanges(ctx, "u1", 1)
			if len(changes) != 1 || changes[0].Reason != "browser test" || changes[0].NewBalance-changes[0].OldBalance != money.Amount(5_500_000_000) {
				t.Fatalf("audit record %+v", changes)
			}
			run("block", chromedp.Navigate(base+"users/u1"), chromedp.WaitVisible(`#block-toggle`, chromedp.ByQuery),
				clickAndReload(`#block-toggle`))
			waitFor(t, func() bool { u, _ := st.User(ctx, "u1"); return u.Blocked }, "the block in the store")
			shot("user")
			run("unblock", chromedp.WaitVisible(`#block-toggle`, chromedp.ByQuery), clickAndReload(`#block-toggle`))
			waitFor(t, func() bool { u, _ := st.User(ctx, "u1"); return !u.Blocked }, "the unblock in the store")
			run("users page", chromedp.Navigate(base+"users"), chromedp.WaitVisible(`[data-testid="users-table"]`, chromedp.ByQuery))
			shot("users")

			// Filter records and export the filtered set.
			var rows []string
			run("filter records",
				chromedp.Navigate(base+"records"),
				chromedp.WaitVisible(`#records-users`, chromedp.ByQuery),
				chromedp.SetValue(`#records-users`, "u2", chromedp.ByQuery),
				chromedp.Click(`#records-apply`, chromedp.ByQuery),
				waitJS(`location.search.includes("users=u2") && document.readyState === "complete"`),
				chromedp.WaitVisible(`[data-testid="records-table"]`, chromedp.ByQuery),
				chromedp.Evaluate(`Array.from(document.querySelectorAll('[data-testid="record-row"]')).map(r => r.textContent)`, &rows))
			_, total, _ := st.ListRecords(ctx, store.RecordQuery{Users: []string{"u2"}})
			if int64(len(rows)) != total || total != 2 {
				t.Fatalf("%d rows shown for u2, store has %d", len(rows), total)
			}
			shot("records")
			var href string
			var ok bool
			var cookies []*network.Cookie
			run("export link", chromedp.AttributeValue(`#records-export`, "href", &href, &ok, chromedp.ByQuery),
				chromedp.ActionFunc(func(ctx context.Context) error {
					var err error
					cookies, err = network.GetCookies().Do(ctx)
					return err
				}))
			if !ok || !strings.Contains(href, "users=u2") {
				t.Fatalf("export link %q", href)
			}
			var exported [][]string
			run("export", chromedp.Evaluate(`document.getElementById('records-export').href`, &href))
			req, _ := http.NewRequest(http.MethodGet, href, nil)
			for _, c := range cookies {
				req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			exported, err = csv.NewReader(resp.Body).ReadAll()
			resp.Body.Close()
			if err != nil || len(exported) != 3 || exported[1][1] != "u2" || exported[2][1] != "u2" {
				t.Fatalf("exported %q %v", exported, err)
			}
			var key string
			run("settings", chromedp.Navigate(base+"settings"), chromedp.WaitVisible(`[data-testid="settings"]`, chromedp.ByQuery),
				chromedp.Value(`#settings-apikey`, &key, chromedp.ByQuery))
			if key != testAPIKey {
				t.Fatalf("settings show the function key %q", key)
			}
			shot("settings")
		})
	}
}

func seed(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	for _, u := range []store.UserInfo{{ID: "u1", Name: "Alice", Email: "alice@example.com"}, {ID: "u2", Name: "Bob", Email: "bob@example.com"}} {
		if _, err := st.UpsertUser(ctx, u, money.Units(50)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []store.ModelPrice{{ID: "gpt-4o", Name: "GPT-4o", Input: money.Units(2), Output: money.Units(8), PerMessage: -1}, {ID: "llama3", Name: "Llama 3", Input: money.Units(1), Output: money.Units(1), PerMessage: -1}} {
		if _, err := st.PutModelPrice(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range []store.Record{
		{UserID: "u1", Nickname: "Alice", Model: "gpt-4o", InputTokens: 1200, OutputTokens: 300, Cost: money.Amount(4_800_000)},
		{UserID: "u2", Nickname: "Bob", Model: "gpt-4o", InputTokens: 800, OutputTokens: 100, Cost: money.Amount(2_400_000)},
		{UserID: "u2", Nickname: "Bob", Model: "llama3", InputTokens: 500, OutputTokens: 500, Cost: money.Amount(1_000_000)},
	} {
		r.Source, r.Key = ledger.SourceFunction, fmt.Sprint("seed/", i)
		if _, err := st.Charge(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitJS waits until a JavaScript expression is true in the page.
func waitJS(expr string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for {
			var ok bool
			if err := chromedp.Evaluate(expr, &ok).Do(ctx); err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

// clickAndReload clicks an element whose action ends with the page
// reloading itself, and waits for the new page.
func clickAndReload(sel string) chromedp.Action {
	return chromedp.Tasks{
		chromedp.Evaluate(`window.__owmonOld = true`, nil),
		chromedp.Click(sel, chromedp.ByQuery),
		waitJS(`window.__owmonOld === undefined && document.readyState === "complete"`),
	}
}

// openBrowser starts headless Chromium (exe) with a profile of its own, the
// flags that keep it off this machine's closed network, a window of
// width×height, and a deadline of limit; the browser and its profile go
// when the test ends.
func openBrowser(t *testing.T, exe string, width, height int, limit time.Duration) context.Context {
	t.Helper()
	profile, err := os.MkdirTemp("", "owmon-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(profile), chromedp.WindowSize(width, height))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	bctx, cancelLimit := context.WithTimeout(bctx, limit)
	t.Cleanup(func() {
		cancelLimit()
		cancelBrowser()
		cancelAlloc()
		os.RemoveAll(profile) // after the browser is gone
	})
	return bctx
}
