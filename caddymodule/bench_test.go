package caddymodule

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/testpg"
)

// history is a conversation of about 2,000 tokens (o200k) that every
// benchmark request repeats, as chats do turn after turn.
func history() []map[string]string {
	para := "The quarterly report shows revenue growth across all regions, with the strongest gains in " +
		"the northern markets where new distribution agreements took effect. Operating costs rose " +
		"moderately because of hiring in engineering and support, while marketing spend stayed flat. "
	msgs := []map[string]string{{"role": "system", "content": "You are a careful financial analyst. Answer precisely."}}
	for i := 0; i < 8; i++ {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, map[string]string{"role": role, "content": fmt.Sprintf("Part %d. %s", i, strings.Repeat(para, 4))})
	}
	return msgs
}

// completionBodies returns n non-streaming chat completions that repeat
// history() and ask a different last question each.
func completionBodies(n int) []string {
	history := history()
	bodies := make([]string, n)
	for i := range bodies {
		msgs := append(slices.Clone(history), map[string]string{"role": "user", "content": fmt.Sprintf("Question %d: and region %d?", i, i%17)})
		m, _ := json.Marshal(msgs)
		bodies[i] = fmt.Sprintf(`{"model":"gpt-4o","stream":false,"messages":%s}`, m)
	}
	return bodies
}

// BenchmarkOutlet measures /api/v1/outlet through a real Caddy on each
// backend at concurrency 1, 8 and 64. Usage is absent, so every request
// counts its tokens; the last question and the reply differ per request.
// Run with a fixed count, for example:
//
//	go test -run '^$' -bench BenchmarkOutlet -benchtime 4000x ./caddymodule
func BenchmarkOutlet(b *testing.B) {
	base := history()
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, workers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/c%d", kind, workers), func(b *testing.B) {
				db := "sqlite://" + filepath.Join(b.TempDir(), "monitor.db")
				if kind == "postgres" {
					db = testpg.DurableDSN(b)
				}
				s := startSite(b, db, "")
				bodies := make([]string, b.N)
				for i := range bodies {
					msgs := append(slices.Clone(base),
						map[string]string{"role": "user", "content": fmt.Sprintf("Question %d: what changed in region %d?", i, i%17)},
						map[string]string{"role": "assistant", "content": fmt.Sprintf("Answer %d: region %d grew by %d.%d percent, mostly from new agreements.", i, i%17, i%13, i%7)})
					m, _ := json.Marshal(msgs)
					bodies[i] = fmt.Sprintf(`{"user":{"id":"user-%d","email":"u%d@example.com","name":"User %d","role":"user"},"body":{"model":"gpt-4o","chat_id":"chat-%d","id":"msg-%d-%d","messages":%s}}`,
						i%100, i%100, i%100, i%100, i, time.Now().UnixNano(), m)
				}
				latencies := make([]time.Duration, b.N)
				var next atomic.Int64
				var failures atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := int(next.Add(1) - 1)
							if i >= b.N {
								return
							}
							t0 := time.Now()
							status, _, err := post(s.url+"/api/v1/outlet", bodies[i])
							latencies[i] = time.Since(t0)
							if err != nil || status != 200 {
								failures.Add(1)
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				if failures.Load() > 0 {
					b.Fatalf("%d requests failed", failures.Load())
				}
				slices.Sort(latencies)
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
				b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
			})
		}
	}
}
