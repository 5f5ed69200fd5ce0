package caddymodule

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// TestBudgetsPageBrowser: on the Budgets page an admin picks a synced
// group and adds a limit for it, adds an add-grant for the same group
// (applied at once to its members' balances), sees a wrong amount named
// in the form, and finds both on the page, in the group's row and in the
// JSON API; then deletes the limit. The page fits a phone's width.
func TestBudgetsPageBrowser(t *testing.T) {
	exe := chromium(t)
	s := startSite(t, "sqlite://"+filepath.Join(t.TempDir(), "budgets.db"), "access_token admin-secret")
	st := activeStore(t)
	ctx := context.Background()
	for _, id := range []string{"u1", "u2", "u3"} {
		if _, err := st.UpsertUser(ctx, store.UserInfo{ID: id, Name: id, Email: id + "@example.com", Role: "user"}, money.Units(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetGroups(ctx, []budget.Group{
		{ID: "grp-staff", Name: "Staff", Members: []string{"u1", "u2"}},
		{ID: "grp-guests", Name: "Guests", Members: []string{"u3"}},
	}); err != nil {
		t.Fatal(err)
	}
	shots := screenshots(t)

	bctx := openBrowser(t, exe, 1280, 900, 90*time.Second)
	base := s.url + "/monitor/"
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// choose sets a select's value as a person would: with a change event.
	choose := func(sel, value string) chromedp.Action {
		return chromedp.Evaluate(`(() => { const e = document.querySelector(`+jsString(sel)+`); e.value = `+jsString(value)+
			`; e.dispatchEvent(new Event('change', {bubbles: true})); return e.value; })()`, nil)
	}
	text := func(sel string) string {
		t.Helper()
		var s string
		run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
		return strings.Join(strings.Fields(s), " ")
	}

	run("login",
		chromedp.Navigate(base+"login"), chromedp.WaitVisible(`#login-token`, chromedp.ByQuery),
		chromedp.SendKeys(`#login-token`, "admin-secret", chromedp.ByQuery),
		chromedp.Click(`#login-submit`, chromedp.ByQuery),
		chromedp.WaitVisible(`[data-testid="totals"]`, chromedp.ByQuery))
	run("open budgets from the navigation",
		chromedp.Click(`[data-testid="nav-budgets"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#limit-form`, chromedp.ByQuery))
	if got := text(`[data-testid="limits-none"]`); got != "No limits: usage is bounded by balances only." {
		t.Fatalf("empty limits say %q", got)
	}

	// A limit for the group Staff, chosen from the synced groups.
	run("limit for a group",
		choose(`#limit-scope-kind`, "group"),
		chromedp.WaitVisible(`#limit-scope-group`, chromedp.ByQuery),
		choose(`#limit-scope-group`, "grp-staff"),
		choose(`#limit-measure`, "cost"),
		chromedp.SendKeys(`#limit-amount`, "abc", chromedp.ByQuery),
		chromedp.SetValue(`#limit-window`, "week", chromedp.ByQuery),
		chromedp.Click(`#limit-shared`, chromedp.ByQuery),
		chromedp.Click(`#limit-submit`, chromedp.ByQuery),
		waitJS(`document.querySelector('[data-testid="limit-result"]').textContent !== ''`))
	if got := text(`[data-testid="limit-result"]`); !strings.HasPrefix(got, "Amount: ") {
		t.Fatalf("a wrong amount says %q", got)
	}
	if ls, _ := st.Limits(ctx); len(ls) != 0 {
		t.Fatalf("a refused limit was stored: %+v", ls)
	}
	run("fix the amount",
		chromedp.SetValue(`#limit-amount`, "4.5", chromedp.ByQuery),
		clickAndReload(`#limit-submit`),
		chromedp.WaitVisible(`tr[data-scope="group:grp-staff"]`, chromedp.ByQuery))
	ls, err := st.Limits(ctx)
	if err != nil || len(ls) != 1 || ls[0].Scope.String() != "group:grp-staff" || ls[0].Measure != budget.Cost ||
		ls[0].Amount != 4_500_000_000 || ls[0].Window.Calendar != "week" || !ls[0].Shared {
		t.Fatalf("stored limits %+v %v", ls, err)
	}
	row := `tr[data-scope="group:grp-staff"] `
	for sel, want := range map[string]string{
		row + `[data-testid="limit-scope"]`:  "Group Staff",
		row + `[data-testid="limit-amount"]`: "$4.50",
		row + `[data-testid="limit-window"]`: "Week",
		row + `[data-testid="limit-models"]`: "every model",
		row + `[data-testid="limit-shared"]`: "one shared pool",
	} {
		if got := text(sel); got != want {
			t.Errorf("%s shows %q, want %q", sel, got, want)
		}
	}

	// A grant for the same group: add 3 a month, up to 10; applied at once.
	run("grant for a group",
		choose(`#grant-scope-kind`, "group"),
		chromedp.WaitVisible(`#grant-scope-group`, chromedp.ByQuery),
		choose(`#grant-scope-group`, "grp-staff"),
		choose(`#grant-mode`, "add"),
		chromedp.WaitVisible(`#grant-cap`, chromedp.ByQuery),
		chromedp.SendKeys(`#grant-amount`, "3", chromedp.ByQuery),
		chromedp.SendKeys(`#grant-cap`, "10", chromedp.ByQuery),
		choose(`#grant-window`, "month"),
		clickAndReload(`#grant-submit`),
		chromedp.WaitVisible(`tr[data-scope="group:grp-staff"][data-testid="grant-row"]`, chromedp.ByQuery))
	gs, err := st.Grants(ctx)
	if err != nil || len(gs) != 1 || gs[0].Mode != "add" || gs[0].Amount != money.Units(3) || gs[0].Cap != money.Units(10) ||
		gs[0].Window.Calendar != "month" || gs[0].LastWindow.IsZero() {
		t.Fatalf("stored grants %+v %v", gs, err)
	}
	for id, want := range map[string]money.Amount{"u1": money.Units(4), "u2": money.Units(4), "u3": money.Units(1)} {
		if u, _ := st.User(ctx, id); u.Balance != want {
			t.Errorf("%s's balance after the grant: %s, want %s", id, u.Balance, want)
		}
	}
	grow := `tr[data-testid="grant-row"] `
	for sel, want := range map[string]string{
		grow + `[data-testid="grant-scope"]`:  "Group Staff",
		grow + `[data-testid="grant-mode"]`:   "Add the amount",
		grow + `[data-testid="grant-amount"]`: "$3.00",
		grow + `[data-testid="grant-cap"]`:    "$10.00",
		grow + `[data-testid="grant-window"]`: "Month",
	} {
		if got := text(sel); got != want {
			t.Errorf("%s shows %q, want %q", sel, got, want)
		}
	}
	if got := text(grow + `[data-testid="grant-last"]`); got == "not yet" || got == "" {
		t.Errorf("the grant's last window shows %q", got)
	}
	// The groups, with their member counts and the group's limit.
	srow := `tr[data-group-id="grp-staff"] `
	if got := text(srow + `[data-testid="group-members"]`); got != "2" {
		t.Errorf("Staff shows %q members", got)
	}
	if got := text(srow + `[data-testid="group-limits"]`); !strings.Contains(got, "$4.50") || !strings.Contains(got, "Week") {
		t.Errorf("Staff's limits show %q", got)
	}
	if got := text(`tr[data-group-id="grp-guests"] [data-testid="group-members"]`); got != "1" {
		t.Errorf("Guests show %q members", got)
	}
	var png []byte
	run("screenshot", chromedp.FullScreenshot(&png, 100))
	if err := os.WriteFile(filepath.Join(shots, "budgets-en.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	// The JSON API shows the same.
	get := func(path string) gjson.Result {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer admin-secret")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return gjson.ParseBytes(b)
	}
	if r := get("api/v1/limits"); r.Get("limits.#").Int() != 1 || r.Get("limits.0.scope").Str != "group:grp-staff" ||
		r.Get("limits.0.amount").Raw != `"4.5"` || r.Get("limits.0.window").Str != "week" || !r.Get("limits.0.shared").Bool() {
		t.Errorf("API limits %s", r.Raw)
	}
	if r := get("api/v1/grants"); r.Get("grants.#").Int() != 1 || r.Get("grants.0.scope").Str != "group:grp-staff" ||
		r.Get("grants.0.amount").Str != "3" || r.Get("grants.0.cap").Str != "10" || r.Get("grants.0.last_window").Str == "" {
		t.Errorf("API grants %s", r.Raw)
	}
	if r := get("api/v1/groups"); r.Get(`groups.#(id=="grp-staff").members.#`).Int() != 2 ||
		r.Get(`groups.#(id=="grp-staff").limits.0.amount`).Str != "4.5" || r.Get(`groups.#(id=="grp-guests").limits.#`).Int() != 0 {
		t.Errorf("API groups %s", r.Raw)
	}
	if r := get("api/v1/users/u1/limits"); r.Get("limits.#").Int() != 1 || r.Get("limits.0.scope").Str != "group:grp-staff" ||
		r.Get("limits.0.remaining").Str != "4.5" || r.Get("limits.0.resets_at").Str == "" {
		t.Errorf("API u1's limits %s", r.Raw)
	}

	// On a phone the page does not scroll sideways.
	run("phone", emulation.SetDeviceMetricsOverride(390, 844, 2, true), chromedp.Reload(),
		chromedp.WaitVisible(`#limit-form`, chromedp.ByQuery))
	var width int
	run("measure", chromedp.Evaluate(`document.documentElement.scrollWidth`, &width))
	if width != 390 {
		var wide []string
		run("find", chromedp.Evaluate(`[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 391 && !e.closest(".table")).slice(0, 8).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))`, &wide))
		t.Errorf("the Budgets page is %d px wide on a 390 px screen (%v)", width, wide)
	}
	run("phone screenshot", chromedp.FullScreenshot(&png, 100))
	if err := os.WriteFile(filepath.Join(shots, "budgets-phone-en.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	run("desktop", emulation.ClearDeviceMetricsOverride())

	// Delete the limit.
	run("delete the limit", chromedp.Reload(), chromedp.WaitVisible(row+`[data-testid="limit-delete"]`, chromedp.ByQuery),
		clickAndReload(row+`[data-testid="limit-delete"]`),
		chromedp.WaitVisible(`[data-testid="limits-none"]`, chromedp.ByQuery))
	if ls, _ := st.Limits(ctx); len(ls) != 0 {
		t.Fatalf("limits after the delete: %+v", ls)
	}
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
