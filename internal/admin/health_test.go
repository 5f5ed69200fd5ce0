package admin

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/journal"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
)

// TestHealthAndBanner: /healthz answers without credentials, 200 while the
// store takes writes and 503 with the reason once it does not; the
// dashboard then shows a banner saying whether calls are admitted.
func TestHealthAndBanner(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		j, err := journal.Open(filepath.Join(t.TempDir(), "journal"), journal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		l := ledger.New(e.st, ledger.Config{Durable: ledger.NewDurable(j, true, slog.New(slog.DiscardHandler)),
			DefaultPrice: pricing.Price{Input: money.Units(1), Output: money.Units(1), PerMessage: -1}})
		srv := httptest.NewServer(mounted(New(l, Options{AccessToken: token, MaxBodyBytes: 1 << 20,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}), "/monitor"))
		t.Cleanup(srv.Close)
		health := func() (int, ledger.Health) {
			t.Helper()
			resp, err := http.Get(srv.URL + "/monitor/healthz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var h ledger.Health
			if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, h
		}
		if status, h := health(); status != 200 || h.Status != "ok" || !h.StoreOK || h.StoreOutage != "fail_open" || !h.JournalOK {
			t.Fatalf("healthy: %d %+v", status, h)
		}
		b := newBrowser(t, srv.URL, "/monitor")
		b.login()
		if page := b.get("/settings"); strings.Contains(page.body, "health-banner") {
			t.Fatalf("a banner while healthy:\n%s", page.body)
		}

		e.st.Close()                        // the fault
		time.Sleep(1100 * time.Millisecond) // health probes the store at most once a second
		status, h := health()
		if status != http.StatusServiceUnavailable || h.StoreOK || h.StoreError == "" || h.Status != "degraded" || !h.Admitting {
			t.Fatalf("store down: %d %+v", status, h)
		}
		page := b.get("/settings")
		if !strings.Contains(page.body, `data-testid="health-banner"`) || !strings.Contains(page.body, "kept in the journal") {
			t.Fatalf("no banner while the store is down:\n%s", page.body)
		}
	})
}
