package caddymodule

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// TestModelsPageInChromium: a fresh install in front of a reachable
// OpenWebUI lists every model it serves with the price each is charged at
// and where that price comes from (its own, inherited from a base, the
// default); syncing from a base, one row or all, uses OpenWebUI's
// base_model_id; "Test all" ends with a summary naming the failures; and
// with OpenWebUI gone the page says so and lists what it knows.
func TestModelsPageInChromium(t *testing.T) {
	exe := chromium(t)
	provider := fakeowui.NewProvider(t)
	owui := fakeowui.NewOpenWebUI(t, provider)
	_, key := owui.AddUser("admin", "admin@example.com", "Admin", "admin")
	owui.SetModels([]fakeowui.Model{
		{ID: "gpt-4o"}, {ID: "gpt-4o-mini"}, {ID: "claude-3"}, {ID: "llama3:latest"},
		{ID: "helper", Name: "Helper", BaseModelID: "gpt-4o"},
		{ID: "writer", Name: "Writer", BaseModelID: "claude-3", SystemPrompt: "Write well."},
		{ID: "my_pipe.gpt-4o", Name: "Pipe"},
	})
	// OpenWebUI as the monitor sees it: the fake, except that it cannot
	// serve gpt-4o-mini (as a real one answers a model it cannot reach).
	target, _ := url.Parse(owui.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/api/chat/completions" {
			body, _ := io.ReadAll(r.Body)
			if gjson.GetBytes(body, "model").Str == "gpt-4o-mini" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `{"detail":"Model not found"}`)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	s := startSite(t, "sqlite://"+filepath.Join(t.TempDir(), "models.db"),
		"access_token admin-secret\n\t\topenwebui "+front.URL+"\n\t\topenwebui_api_key "+key)
	st := activeStore(t)
	ctx := context.Background()
	shots := screenshots(t)

	bctx := openBrowser(t, exe, 1280, 900, 120*time.Second)
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
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	row := func(id string) string { return `tr[data-model-id="` + id + `"] ` }
	// sources reads each row's source, its model and its input price.
	type shown struct{ Source, From, Input, Text string }
	sources := func() map[string]shown {
		t.Helper()
		var out map[string]shown
		run("read rows", chromedp.Evaluate(`Object.fromEntries(Array.from(document.querySelectorAll('tr[data-price-row]')).map(r => [
			r.dataset.modelId, {Source: r.dataset.source,
				From: (r.querySelector('[data-testid="price-source-model"]') || {}).textContent || '',
				Input: r.querySelector('[data-testid="price-input"]').value,
				Text: r.querySelector('[data-testid="price-source"]').textContent.trim()}]))`, &out))
		return out
	}

	run("login",
		chromedp.Navigate(base+"login"), chromedp.WaitVisible(`#login-token`, chromedp.ByQuery),
		chromedp.SendKeys(`#login-token`, "admin-secret", chromedp.ByQuery),
		chromedp.Click(`#login-submit`, chromedp.ByQuery),
		chromedp.WaitVisible(`[data-testid="totals"]`, chromedp.ByQuery))

	// A fresh install: OpenWebUI's seven models, each at the default price
	// (60 per 1M), and saying so.
	run("models page", chromedp.Navigate(base+"models"), chromedp.WaitVisible(`[data-testid="prices-table"]`, chromedp.ByQuery))
	got := sources()
	if len(got) != 7 {
		t.Fatalf("fresh install lists %d models: %+v", len(got), got)
	}
	for id, r := range got {
		if r.Source != "default" || r.Input != "60" || r.Text != "default price" {
			t.Errorf("fresh %s: %+v", id, r)
		}
	}
	var state string
	run("OpenWebUI state", chromedp.AttributeValue(`[data-testid="models-owui"]`, "data-state", &state, nil, chromedp.ByQuery))
	if state != "listed" {
		t.Fatalf("OpenWebUI state %q", state)
	}

	// The admin prices gpt-4o on the page; claude-3 gets a flat price.
	run("price gpt-4o",
		chromedp.SetValue(row("gpt-4o")+`[data-testid="price-input"]`, "2.5", chromedp.ByQuery),
		chromedp.SetValue(row("gpt-4o")+`[data-testid="price-output"]`, "10", chromedp.ByQuery),
		chromedp.Click(row("gpt-4o")+`[data-testid="price-save"]`, chromedp.ByQuery))
	waitFor(t, func() bool {
		p, err := st.ModelPrice(ctx, "gpt-4o")
		return err == nil && p.Priced && p.Input.String() == "2.5"
	}, "gpt-4o's price in the store")
	if _, err := st.PutModelPrice(ctx, store.ModelPrice{ID: "claude-3", Name: "claude-3", PerMessage: money.Units(1) / 50}); err != nil {
		t.Fatal(err)
	}
	run("reload", chromedp.Navigate(base+"models"), chromedp.WaitVisible(`[data-testid="prices-table"]`, chromedp.ByQuery))
	got = sources()
	for id, want := range map[string]shown{
		"gpt-4o":         {Source: "own", Input: "2.5", Text: "own price"},
		"helper":         {Source: "base", From: "gpt-4o", Input: "2.5", Text: "inherited from gpt-4o"},
		"my_pipe.gpt-4o": {Source: "base", From: "gpt-4o", Input: "2.5", Text: "inherited from gpt-4o"},
		"writer":         {Source: "base", From: "claude-3", Input: "0", Text: "inherited from claude-3"},
		"llama3:latest":  {Source: "default", Input: "60", Text: "default price"},
		"gpt-4o-mini":    {Source: "default", Input: "60", Text: "default price"},
	} {
		if got[id] != want {
			t.Errorf("%s shows %+v, want %+v", id, got[id], want)
		}
	}
	var perMsg string
	run("writer per message", chromedp.Value(row("writer")+`[data-testid="price-permsg"]`, &perMsg, chromedp.ByQuery))
	if perMsg != "0.02" {
		t.Errorf("writer's per-message price shows %q", perMsg)
	}
	shot("models-sources-en")

	// Sync one row from its base: helper takes gpt-4o's price as its own.
	run("sync helper", clickAndReload(row("helper")+`[data-testid="price-sync"]`),
		chromedp.WaitVisible(`[data-testid="prices-table"]`, chromedp.ByQuery))
	if p, err := st.ModelPrice(ctx, "helper"); err != nil || !p.Priced || p.Input.String() != "2.5" || p.BaseModelID != "gpt-4o" {
		t.Fatalf("helper after sync: %+v %v", p, err)
	}
	if r := sources()["helper"]; r.Source != "own" {
		t.Fatalf("helper after sync shows %+v", r)
	}

	// Sync all: writer and the pipe from their bases.
	run("sync all", clickAndReload(`#models-sync-all`), chromedp.WaitVisible(`[data-testid="prices-table"]`, chromedp.ByQuery))
	for id, in := range map[string]string{"writer": "0", "my_pipe.gpt-4o": "2.5"} {
		if p, err := st.ModelPrice(ctx, id); err != nil || !p.Priced || p.Input.String() != in {
			t.Errorf("%s after sync all: %+v %v", id, p, err)
		}
	}
	if p, _ := st.ModelPrice(ctx, "llama3:latest"); p.Priced {
		t.Errorf("a model with no base got a price: %+v", p)
	}

	// Test all: a summary with the failure named.
	var counts string
	var failures []string
	run("test all",
		chromedp.Click(`#models-test-all`, chromedp.ByQuery),
		chromedp.WaitVisible(`[data-testid="models-test-counts"]`, chromedp.ByQuery),
		chromedp.Text(`[data-testid="models-test-counts"]`, &counts, chromedp.ByQuery),
		chromedp.Evaluate(`Array.from(document.querySelectorAll('[data-testid="models-test-failure"]')).map(li => li.textContent)`, &failures))
	if counts != "6 passed, 1 failed" || len(failures) != 1 || !strings.HasPrefix(failures[0], "gpt-4o-mini: ") || !strings.Contains(failures[0], "Model not found") {
		t.Fatalf("test-all summary %q %q", counts, failures)
	}
	var toolbar string
	run("toolbar", chromedp.Text(`#models-toolbar-result`, &toolbar, chromedp.ByQuery))
	if toolbar != counts {
		t.Errorf("toolbar says %q", toolbar)
	}
	shot("models-testall-en")

	// OpenWebUI gone: the page says so, and lists what the monitor knows.
	front.Close()
	run("models page, OpenWebUI down", chromedp.Navigate(base+"models"), chromedp.WaitVisible(`[data-testid="models-owui"]`, chromedp.ByQuery),
		chromedp.AttributeValue(`[data-testid="models-owui"]`, "data-state", &state, nil, chromedp.ByQuery))
	var notice string
	run("notice", chromedp.Text(`[data-testid="models-owui"]`, &notice, chromedp.ByQuery))
	if state != "unreachable" || !strings.Contains(notice, "OpenWebUI could not be reached") {
		t.Fatalf("OpenWebUI down: state %q, notice %q", state, notice)
	}
	got = sources()
	if len(got) != 7 || got["gpt-4o"].Source != "own" || got["llama3:latest"].Source != "default" || got["llama3:latest"].Input != "60" {
		t.Fatalf("OpenWebUI down, the page lists %+v", got)
	}
	shot("models-unreachable-en")
}
