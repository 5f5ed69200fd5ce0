package admin

// BenchmarkScale measures the dashboard's server time at scale: 1,000,000
// usage records over 1,000 users and 50 models across 90 days, on each
// backend (a SQLite file; PostgreSQL on the durable test cluster).
//
// It is a long benchmark (the seed alone takes a minute or more per
// backend) and is not run in CI: it is skipped unless OWMON_SCALE=1.
//
//	OWMON_SCALE=1 go test -run '^$' -bench BenchmarkScale -benchtime 1x -timeout 30m ./internal/admin
//
// For each page it reports the p50 and p95 of the time from sending the
// request to reading the whole response over loopback, over 60 requests
// after a few warm-up ones.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/postgres"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
	"github.com/openwebui-monitor/owmon/internal/testpg"
)

const (
	scaleRecords = 1_000_000
	scaleUsers   = 1_000
	scaleModels  = 50
	scaleDays    = 90
	scaleSamples = 60
)

// scalePurposes and scaleSources are drawn uniformly, so repeats weight
// them: half the calls chat, the rest titles, tags, follow-ups, tool
// rounds and embeddings; most through the function, then the gate.
var (
	scalePurposes = []string{"chat", "chat", "chat", "chat", "chat", "chat", "title", "tags", "follow_ups",
		"follow_ups", "tool_round", "embeddings"}
	scaleSources = []string{"function", "function", "function", "edge", "edge", "websocket", "provider"}
)

// scaleBackup is the seed: each user sticks to a few models (most traffic
// on a handful of popular ones), at random times over the last 90 days.
func scaleBackup(now time.Time) store.Backup {
	rng := rand.New(rand.NewPCG(1, 2))
	var b store.Backup
	for i := range scaleUsers {
		b.Users = append(b.Users, store.User{UserInfo: store.UserInfo{ID: fmt.Sprintf("user-%04d", i),
			Name: fmt.Sprintf("User %d", i), Email: fmt.Sprintf("user%d@example.com", i), Role: "user"},
			Balance: money.Units(100), InitialBalance: money.Units(100), CreatedAt: now.AddDate(0, 0, -scaleDays-1),
			UpdatedAt: now})
	}
	zipf := rand.NewZipf(rng, 1.2, 2, scaleModels-1)
	favourites := make([][]int, scaleUsers)
	for i := range favourites {
		for range 2 + rng.IntN(4) {
			favourites[i] = append(favourites[i], int(zipf.Uint64()))
		}
	}
	for i := range scaleModels {
		b.ModelPrices = append(b.ModelPrices, store.ModelPrice{ID: fmt.Sprintf("model-%02d", i), Name: fmt.Sprintf("Model %d", i),
			UpdatedAt: now})
	}
	start := now.AddDate(0, 0, -scaleDays)
	span := int64(now.Sub(start))
	b.Records = make([]store.Record, scaleRecords)
	for i := range b.Records {
		u := rng.IntN(scaleUsers)
		m := favourites[u][rng.IntN(len(favourites[u]))]
		in, out := rng.Int64N(4000), rng.Int64N(1000)
		status := ledger.StatusCompleted
		if rng.IntN(100) == 0 {
			status = ledger.StatusFailed
		}
		// What calls are for and how they came, roughly as OpenWebUI
		// makes them: mostly chat, its background tasks after it.
		purpose := scalePurposes[rng.IntN(len(scalePurposes))]
		source := scaleSources[rng.IntN(len(scaleSources))]
		b.Records[i] = store.Record{ID: int64(i + 1), UserID: b.Users[u].ID, Nickname: b.Users[u].Name,
			Model: b.ModelPrices[m].ID, InputTokens: in, OutputTokens: out, Cost: money.Amount(in*1000 + out*3000),
			CachedTokens: rng.Int64N(in + 1), ReasoningTokens: rng.Int64N(out/2 + 1), Purpose: purpose,
			BalanceAfter: money.Units(50), Source: source, Status: status, ChatID: "chat", MessageID: "msg",
			Key: fmt.Sprintf("key-%d", i), DurationMS: 1000,
			CreatedAt: start.Add(time.Duration(rng.Int64N(span))).Truncate(time.Millisecond)}
	}
	return b
}

func BenchmarkScale(b *testing.B) {
	if os.Getenv("OWMON_SCALE") != "1" {
		b.Skip("set OWMON_SCALE=1 to run this long benchmark (1,000,000 records per backend)")
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	seed := scaleBackup(now)
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			var st store.Store
			var err error
			if kind == "sqlite" {
				st, err = sqlite.Open(ctx, filepath.Join(b.TempDir(), "scale.db"))
			} else {
				st, err = postgres.Open(ctx, testpg.DurableDSN(b))
			}
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			t0 := time.Now()
			if err := st.Import(ctx, seed, nil); err != nil {
				b.Fatal(err)
			}
			b.Logf("%s: seeded %d records in %v", kind, len(seed.Records), time.Since(t0).Round(time.Millisecond))
			if pg, ok := st.(*postgres.Store); ok { // fresh statistics, as autovacuum would give
				if _, err := pg.Pool().Exec(ctx, `ANALYZE`); err != nil {
					b.Fatal(err)
				}
			}

			l := ledger.New(st, ledger.Config{DefaultPrice: pricing.Price{PerMessage: -1}})
			srv := httptest.NewServer(New(l, Options{AccessToken: token, MaxBodyBytes: 1 << 20,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))}))
			defer srv.Close()
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := c.PostForm(srv.URL+"/login", url.Values{"token": {token}})
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther {
				b.Fatalf("login: %d", resp.StatusCode)
			}

			get := func(path string) time.Duration {
				t := time.Now()
				resp, err := c.Get(srv.URL + path)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				d := time.Since(t)
				if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "database is unavailable") {
					b.Fatalf("GET %s: %d %.300s", path, resp.StatusCode, body)
				}
				return d
			}
			pages := []struct{ name, path string }{
				{"overview-default", "/"},
				{"overview-30d", "/?range=30d"},
				{"overview-all", "/?range=all"},
				{"records", "/records"},
				{"records-user", "/records?users=user-0042"},
				{"user", "/users/user-0042"},
			}
			lat := make([][]time.Duration, len(pages))
			for b.Loop() {
				for i, p := range pages {
					for range 3 { // warm up
						get(p.path)
					}
					for range scaleSamples {
						lat[i] = append(lat[i], get(p.path))
					}
				}
			}
			for i, p := range pages {
				slices.Sort(lat[i])
				ms := func(q float64) float64 {
					return float64(lat[i][int(q*float64(len(lat[i]))-0.5)].Microseconds()) / 1000
				}
				b.ReportMetric(ms(0.50), p.name+"-p50-ms")
				b.ReportMetric(ms(0.95), p.name+"-p95-ms")
			}
		})
	}
}
