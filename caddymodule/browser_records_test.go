package caddymodule

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// TestRecordsFilterInChromium filters the records page in a real browser
// by a user's name and by a model's name, each checked against the store,
// and reads amounts rounded with the exact amount as their title.
func TestRecordsFilterInChromium(t *testing.T) {
	exe := chromium(t)
	s := startSite(t, "sqlite://"+filepath.Join(t.TempDir(), "records.db"), "access_token admin-secret")
	st := activeStore(t)
	ctx := context.Background()
	seed(t, st) // Alice (u1) and Bob (u2); GPT-4o (gpt-4o) and Llama 3 (llama3)
	if _, err := st.UpsertUser(ctx, store.UserInfo{ID: "u3", Name: "Bobby Tables", Email: "bt@example.org"}, money.Units(50)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Charge(ctx, store.Record{UserID: "u3", Nickname: "Bobby Tables", Model: "llama3", InputTokens: 7, OutputTokens: 3,
		Cost: money.Amount(42_123), Source: store.SourceEdge, Estimated: true, Purpose: "title", Key: "records/u3"}); err != nil {
		t.Fatal(err)
	}

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

	// The rows shown: each one's user link and model.
	type row struct{ User, Model, Cost, Exact string }
	rows := func(what string) []row {
		t.Helper()
		var out []row
		run(what, chromedp.Evaluate(`Array.from(document.querySelectorAll('[data-testid="record-row"]')).map(r => ({
			User: r.querySelector('a').getAttribute('href').split('/').pop(),
			Model: r.children[2].textContent.trim(),
			Cost: r.querySelector('[data-testid="record-cost"] .money').textContent,
			Exact: r.querySelector('[data-testid="record-cost"] .money').title}))`, &out))
		return out
	}
	same := func(what string, got []row, q store.RecordQuery) {
		t.Helper()
		q.PageSize, q.Descending = 500, true
		want, total, err := st.ListRecords(ctx, q)
		if err != nil || int64(len(got)) != total || len(got) != len(want) {
			t.Fatalf("%s: %d rows shown, the store has %d (%v): %+v", what, len(got), total, err, got)
		}
		for i, r := range want {
			if got[i].User != r.UserID || got[i].Model != r.Model {
				t.Fatalf("%s: row %d shows %+v, the store has %s %s", what, i, got[i], r.UserID, r.Model)
			}
		}
	}

	// The suggestions come from the data.
	var users, models []string
	run("records page", chromedp.Navigate(base+"records"), chromedp.WaitVisible(`#records-user`, chromedp.ByQuery),
		chromedp.Evaluate(`Array.from(document.querySelectorAll('#records-user-list option')).map(o => o.value + '|' + (o.label || ''))`, &users),
		chromedp.Evaluate(`Array.from(document.querySelectorAll('#records-model-list option')).map(o => o.value + '|' + (o.label || ''))`, &models))
	if strings.Join(users, ",") != "Alice|alice@example.com,Bob|bob@example.com,Bobby Tables|bt@example.org" {
		t.Fatalf("user suggestions %q", users)
	}
	if strings.Join(models, ",") != "gpt-4o|GPT-4o,llama3|Llama 3" {
		t.Fatalf("model suggestions %q", models)
	}

	// By a user's name: "bob" is Bob and Bobby Tables, in any case.
	run("filter by name",
		chromedp.SetValue(`#records-user`, "BOB", chromedp.ByQuery),
		chromedp.Click(`#records-apply`, chromedp.ByQuery),
		waitJS(`location.search.includes("user=BOB") && document.readyState === "complete"`),
		chromedp.WaitVisible(`[data-testid="records-table"]`, chromedp.ByQuery))
	got := rows("rows for bob")
	same("user=BOB", got, store.RecordQuery{UserSearch: "BOB"})
	if len(got) != 3 {
		t.Fatalf("bob: %d rows", len(got))
	}
	// By an email, exactly one user.
	run("filter by email",
		chromedp.SetValue(`#records-user`, "bt@example", chromedp.ByQuery),
		chromedp.Click(`#records-apply`, chromedp.ByQuery),
		waitJS(`location.search.includes("user=bt%40example") && document.readyState === "complete"`))
	got = rows("rows for bt@")
	same("user=bt@example", got, store.RecordQuery{UserSearch: "bt@example"})
	if len(got) != 1 || got[0].User != "u3" {
		t.Fatalf("bt@example: %+v", got)
	}
	// Tiny amounts: rounded to what matters, exact in the title; the
	// estimated mark says what it means.
	if got[0].Cost != "$0.000042" || got[0].Exact != "$0.000042123" {
		t.Fatalf("cost shown %q (title %q), want $0.000042 ($0.000042123)", got[0].Cost, got[0].Exact)
	}
	var mark, legend, purpose, source string
	var ok bool
	run("estimated mark", chromedp.AttributeValue(`[data-testid="estimated-mark"]`, "title", &mark, &ok, chromedp.ByQuery),
		chromedp.Text(`[data-testid="estimated-legend"]`, &legend, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('[data-testid="record-row"]').children[8].textContent.trim()`, &purpose),
		chromedp.Evaluate(`document.querySelector('[data-testid="record-row"]').children[7].textContent.trim()`, &source))
	if !ok || !strings.Contains(mark, "Estimated") || !strings.Contains(legend, "Estimated") {
		t.Fatalf("estimated mark %q, legend %q", mark, legend)
	}
	if purpose != "title" || source != "gate" {
		t.Fatalf("purpose %q, source %q", purpose, source)
	}

	// By a model's name (as the prices call it), with a user: Bob's on
	// Llama 3.
	run("filter by model",
		chromedp.SetValue(`#records-user`, "bob@", chromedp.ByQuery),
		chromedp.SetValue(`#records-models`, "Llama 3", chromedp.ByQuery),
		chromedp.Click(`#records-apply`, chromedp.ByQuery),
		waitJS(`location.search.includes("models=Llama") && document.readyState === "complete"`))
	got = rows("rows for bob on llama")
	same("bob@ on llama3", got, store.RecordQuery{UserSearch: "bob@", Models: []string{"llama3"}})
	if len(got) != 1 || got[0].User != "u2" || got[0].Model != "llama3" || got[0].Cost != "$0.001" || got[0].Exact != "$0.001" {
		t.Fatalf("bob@ on Llama 3: %+v", got)
	}
	// And by the model alone.
	run("filter by model alone",
		chromedp.WaitVisible(`#records-user`, chromedp.ByQuery),
		chromedp.Evaluate(`document.getElementById('records-user').value = ''; document.getElementById('records-models').value = 'gpt-4o'`, nil),
		chromedp.Click(`#records-apply`, chromedp.ByQuery),
		waitJS(`location.search.includes("models=gpt-4o") && !location.search.includes("Llama") && document.readyState === "complete"`))
	got = rows("rows for gpt-4o")
	same("gpt-4o", got, store.RecordQuery{Models: []string{"gpt-4o"}})
	if len(got) != 2 {
		t.Fatalf("gpt-4o: %+v", got)
	}
	// The export reads the same filter, with every digit.
	var href string
	run("export link", chromedp.Evaluate(`document.getElementById('records-export').href`, &href))
	if !strings.Contains(href, "models=gpt-4o") {
		t.Fatalf("export link %q", href)
	}
}
