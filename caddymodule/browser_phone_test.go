package caddymodule

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// TestDashboardOnAPhone opens every page at 390×844 CSS pixels (a phone
// held upright), in English and in Chinese: the page never scrolls
// sideways (document.documentElement.scrollWidth equals the viewport's
// width); wide tables scroll inside their own box. With OWMON_SCREENSHOTS
// set, it saves each page as <page>-phone-<lang>.png there.
func TestDashboardOnAPhone(t *testing.T) {
	exe := chromium(t)
	s := startSite(t, "sqlite://"+filepath.Join(t.TempDir(), "phone.db"), "access_token admin-secret")
	st := activeStore(t)
	seed(t, st)
	seedBreakdown(t, st)
	shots := os.Getenv("OWMON_SCREENSHOTS")

	pages := []struct{ name, path, ready string }{
		{"overview", "", `[data-testid="totals"]`},
		{"users", "users", `main table`},
		{"user", "users/u1", `main h1`},
		{"models", "models", `#prices-table`},
		{"records", "records", `main table`},
		{"settings", "settings", `main h1`},
		{"budgets", "budgets", `#limit-form`},
	}
	for _, lang := range []string{"en", "zh"} {
		t.Run(lang, func(t *testing.T) {
			bctx := openBrowser(t, exe, 1280, 900, 90*time.Second)
			run := func(what string, actions ...chromedp.Action) {
				t.Helper()
				if err := chromedp.Run(bctx, actions...); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			base := s.url + "/monitor/"
			run("phone viewport", emulation.SetDeviceMetricsOverride(390, 844, 2, true))
			check := func(name string) {
				t.Helper()
				var width int
				run("measure "+name, chromedp.Evaluate(`document.documentElement.scrollWidth`, &width))
				if width != 390 {
					// Name what sticks out, to fix it.
					var wide []string
					run("find "+name, chromedp.Evaluate(`[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 391 && !e.closest(".table")).slice(0, 8).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))`, &wide))
					t.Errorf("%s (%s): the page is %d px wide on a 390 px screen: it scrolls sideways (%v)", name, lang, width, wide)
				}
				if shots != "" && (name != "login" || lang == "en") { // the login page is shown before the switch
					var png []byte
					run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
					if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("%s-phone-%s.png", name, lang)), png, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			run("login page", chromedp.Navigate(base+"login"), chromedp.WaitVisible(`#login-token`, chromedp.ByQuery))
			check("login")
			run("login",
				chromedp.SendKeys(`#login-token`, "admin-secret", chromedp.ByQuery),
				chromedp.Click(`#login-submit`, chromedp.ByQuery),
				chromedp.WaitVisible(`[data-testid="totals"]`, chromedp.ByQuery))
			if lang == "zh" {
				run("switch to Chinese", chromedp.Click(`[data-testid="lang-zh"]`, chromedp.ByQuery),
					chromedp.WaitVisible(`[data-testid="totals"]`, chromedp.ByQuery))
			}
			for _, p := range pages {
				run("open "+p.name, chromedp.Navigate(base+p.path), chromedp.WaitVisible(p.ready, chromedp.ByQuery))
				check(p.name)
			}
		})
	}
}
