package caddymodule

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// seedBreakdown adds to seed's records calls of several purposes and paths,
// with cached and reasoning tokens, a failed call (counted), a hold netted
// by its charge and a hold still pending (not counted).
func seedBreakdown(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	day := time.Now().UTC().AddDate(0, 0, -2) // a whole day, from the rollups
	for i, r := range []store.Record{
		{UserID: "u1", Model: "gpt-4o", Purpose: "chat", Source: ledger.SourceEdge, InputTokens: 2000, OutputTokens: 900,
			CachedTokens: 1500, ReasoningTokens: 400, Cost: money.Amount(9_000_000)},
		{UserID: "u1", Model: "gpt-4o", Purpose: "title", Source: ledger.SourceFunction, InputTokens: 300, OutputTokens: 12,
			Cost: money.Amount(700_000)},
		{UserID: "u2", Model: "llama3", Purpose: "tags", Source: ledger.SourceWebsocket, InputTokens: 250, OutputTokens: 8,
			Cost: money.Amount(258_000)},
		{UserID: "u2", Model: "llama3", Purpose: "follow_ups", Source: ledger.SourceProvider, InputTokens: 400,
			OutputTokens: 60, CachedTokens: 100, Cost: money.Amount(460_000), CreatedAt: day},
		{UserID: "u1", Model: "text-embedding-3-small", Purpose: "embeddings", Source: ledger.SourceProvider,
			InputTokens: 5000, Cost: money.Amount(100_000), CreatedAt: day},
		{UserID: "u2", Model: "gpt-4o", Purpose: "chat", Source: ledger.SourceEdge, InputTokens: 50, Status: ledger.StatusFailed},
	} {
		r.Key = fmt.Sprint("breakdown/", i)
		if _, err := st.Charge(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{"hold/netted", "hold/pending"} {
		if _, err := st.Reserve(ctx, store.Reservation{Rule: store.ReserveAlways, Record: store.Record{UserID: "u2",
			Model: "gpt-4o", Purpose: "chat", Source: ledger.SourceWebsocket, Key: key, InputTokens: 999,
			Cost: money.Amount(5_000_000), ExpiresAt: ptr(time.Now().Add(time.Hour))}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Charge(ctx, store.Record{Key: "hold/netted", Purpose: "tool_round", InputTokens: 700, OutputTokens: 70,
		ReasoningTokens: 30, Cost: money.Amount(1_300_000)}); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestOverviewBreakdownInChromium checks in a real browser that the
// overview and a user's page show usage by purpose and by path, and the
// token kinds, with the figures the store has.
func TestOverviewBreakdownInChromium(t *testing.T) {
	exe := chromium(t)
	s := startSite(t, "sqlite://"+filepath.Join(t.TempDir(), "ui.db"), "access_token admin-secret")
	st := activeStore(t)
	ctx := context.Background()
	seed(t, st)
	seedBreakdown(t, st)

	bctx := openBrowser(t, exe, 1280, 900, 90*time.Second)
	base := s.url + "/monitor/"
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	run("login",
		chromedp.Navigate(base+"login"), chromedp.WaitVisible(`#login-token`, chromedp.ByQuery),
		chromedp.SendKeys(`#login-token`, "admin-secret", chromedp.ByQuery),
		chromedp.Click(`#login-submit`, chromedp.ByQuery),
		chromedp.WaitVisible(`[data-testid="totals"]`, chromedp.ByQuery))

	// rows reads a breakdown table: key, calls, input, output, cost.
	rows := func(kind string) [][]string {
		var out [][]string
		run("read "+kind, chromedp.Evaluate(`Array.from(document.querySelectorAll('[data-testid="breakdown-`+kind+
			`"] tbody tr')).map(tr => [tr.dataset.key, tr.querySelector('[data-testid=kind-calls]').textContent,
			tr.querySelector('[data-testid=kind-input]').textContent, tr.querySelector('[data-testid=kind-output]').textContent,
			tr.querySelector('[data-testid=kind-cost]').textContent, tr.cells[0].textContent])`, &out))
		return out
	}
	check := func(page string, want store.Usage) {
		t.Helper()
		for _, g := range []struct {
			kind string
			want []store.KindUsage
		}{{"purpose", want.ByPurpose}, {"source", want.BySource}} {
			got := rows(g.kind)
			if len(got) != len(g.want) || len(got) < 2 {
				t.Fatalf("%s: %s rows %q, want %+v", page, g.kind, got, g.want)
			}
			for i, k := range g.want { // most cost first, as the store orders them
				r := got[i]
				if r[0] != k.Key || r[1] != thousands(k.Calls) || r[2] != thousands(k.InputTokens) ||
					r[3] != thousands(k.OutputTokens) || r[4] == "" || r[5] == "" {
					t.Fatalf("%s: %s row %d is %q, want %+v", page, g.kind, i, r, k)
				}
			}
		}
		var tok []string
		run("read tokens", chromedp.Evaluate(`['input','output','cached','reasoning'].map(k =>
			document.querySelector('[data-testid="tokens-'+k+'"]').textContent)`, &tok))
		if w := []string{thousands(want.Total.InputTokens), thousands(want.Total.OutputTokens), thousands(want.CachedTokens),
			thousands(want.ReasoningTokens)}; fmt.Sprint(tok) != fmt.Sprint(w) {
			t.Fatalf("%s: tokens %q, want %q", page, tok, w)
		}
	}

	all, err := st.UsageBetween(ctx, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// The seed's figures, as the records say (seed's own three have no purpose).
	if all.Total.Calls != 10 || len(all.ByPurpose) != 7 || len(all.BySource) != 4 || all.CachedTokens != 1600 ||
		all.ReasoningTokens != 430 {
		t.Fatalf("store: %+v", all)
	}
	run("overview, all time", chromedp.Navigate(base+"?range=all"),
		chromedp.WaitVisible(`[data-testid="breakdown-purpose"]`, chromedp.ByQuery))
	check("overview (all)", all)
	var label string
	run("read a label", chromedp.Text(`[data-testid="breakdown-purpose"] tr[data-key="follow_ups"] td`, &label, chromedp.ByQuery))
	if label != "follow-ups" {
		t.Fatalf("the follow_ups row is labelled %q", label)
	}
	var png []byte
	run("screenshot", chromedp.FullScreenshot(&png, 100))
	if d := os.Getenv("OWMON_SCREENSHOTS"); d != "" {
		if err := os.WriteFile(filepath.Join(d, "overview-breakdown-en.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The default range (7 days, today a partial day from the records).
	from := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -6)
	week, err := st.UsageBetween(ctx, from, from.AddDate(0, 0, 7))
	if err != nil {
		t.Fatal(err)
	}
	run("overview", chromedp.Navigate(base), chromedp.WaitVisible(`[data-testid="breakdown-source"]`, chromedp.ByQuery))
	check("overview (7 days)", week)

	// A user's page: that user's usage only.
	u2, err := st.UserUsageBetween(ctx, "u2", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	run("user page", chromedp.Navigate(base+"users/u2"), chromedp.WaitVisible(`[data-testid="breakdown"]`, chromedp.ByQuery))
	check("user u2", u2)
	if u2.Total.Calls != 6 || u2.CachedTokens != 100 || u2.ReasoningTokens != 30 {
		t.Fatalf("u2: %+v", u2)
	}
}
