package caddymodule

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
)

// BenchmarkJournal measures what the journal costs on the hot path: the
// gate (each admitted call is journaled, fsynced in groups, and its output
// journaled as it streams) and the function's outlet, each with the
// journal on and off, against plain reverse_proxy to the same upstream.
// One Caddy config holds one journal setting, so the two configs take
// turns round by round (the machine is noisy), each with its own plain site:
//
//	go test -run '^$' -bench BenchmarkJournal -benchtime 1x ./caddymodule
func BenchmarkJournal(b *testing.B) {
	up := benchUpstream(b)
	const secret = "bench-secret"
	jwt := fakeowui.SignJWT(secret, map[string]any{"id": "bench", "exp": time.Now().Add(time.Hour).Unix()})
	dir := b.TempDir()
	pm, pp := freePort(b), freePort(b)
	config := func(journal string) string {
		return fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		output discard
	}
	openwebui_monitor {
		database sqlite://%s
		openwebui %s
		webui_secret_key %s
		api_key %s
		init_balance 1000000000
		journal %s
	}
}

:%d {
	openwebui_monitor
	reverse_proxy %s
}

:%d {
	reverse_proxy %s
}
`, filepath.Join(dir, "bench-"+filepath.Base(journal)+".db"), up.URL, secret, testAPIKey, journal, pm, up.URL, pp, up.URL)
	}
	on, off := filepath.Join(dir, "journal"), "off"
	metered, plain := fmt.Sprintf("http://127.0.0.1:%d", pm), fmt.Sprintf("http://127.0.0.1:%d", pp)
	bodies := completionBodies(4000)
	outlet := func(i int) error {
		body := fmt.Sprintf(`{"user":{"id":"user-%d","email":"u%d@example.com","name":"User %d","role":"user"},
			"body":{"model":"gpt-4o","chat_id":"chat-%d","id":"msg-%d-%d","messages":[{"role":"user","content":"Question %d?"},
			{"role":"assistant","content":"Answer %d.","usage":{"prompt_tokens":20,"completion_tokens":5}}]}}`,
			i%100, i%100, i%100, i%100, i, time.Now().UnixNano(), i, i)
		return send(http.MethodPost, metered+"/api/v1/outlet", testAPIKey, body)
	}
	cases := []struct {
		name    string
		workers int
		n       int
		do      func(site string, i int) error
	}{
		{"gate-upstream-50ms-150ms", 64, 1000, func(site string, i int) error {
			return send(http.MethodPost, site+"/api/chat/completions", jwt, bodies[i%len(bodies)], "X-Bench-Latency", "50ms-150ms")
		}},
		{"gate-upstream-0s", 64, 1000, func(site string, i int) error {
			return send(http.MethodPost, site+"/api/chat/completions", jwt, bodies[i%len(bodies)], "X-Bench-Latency", "0s")
		}},
		{"gate-streams", 64, 500, func(site string, i int) error {
			return send(http.MethodPost, site+"/api/chat/completions", jwt,
				`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Tell me a story."}]}`)
		}},
	}
	// use loads a config; connections to the one before are gone.
	use := func(journal string) {
		run(b, config(journal))
		client.CloseIdleConnections()
	}
	const rounds = 3
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			res := map[string]*loadResult{}
			for _, k := range []string{"plain-on", "on", "plain-off", "off"} {
				res[k] = &loadResult{}
			}
			for r := range rounds {
				for _, j := range []string{on, off} {
					use(j)
					suffix := "on"
					if j == off {
						suffix = "off"
					}
					// Warm up: connections, the tokenizer, the user.
					load(b, c.workers, 2*c.workers, func(i int) error { return c.do(metered, i) })
					for _, site := range []string{plain, metered} {
						got := load(b, c.workers, c.n, func(i int) error { return c.do(site, r*c.n+i) })
						k := suffix
						if site == plain {
							k = "plain-" + suffix
						}
						add(res[k], got, rounds)
					}
				}
			}
			journalReport(b, res)
		})
	}
	b.Run("outlet", func(b *testing.B) {
		res := map[string]*loadResult{"on": {}, "off": {}}
		for r := range rounds {
			for _, j := range []string{on, off} {
				use(j)
				load(b, 8, 64, outlet)
				k := "on"
				if j == off {
					k = "off"
				}
				add(res[k], load(b, 8, 2000, func(i int) error { return outlet(r*2000 + i) }), rounds)
			}
		}
		for _, k := range []string{"on", "off"} {
			slices.Sort(res[k].latencies)
		}
		b.ReportMetric(res["on"].rps, "journal-req/s")
		b.ReportMetric(res["off"].rps, "nojournal-req/s")
		b.ReportMetric(100*res["on"].rps/res["off"].rps, "journal-vs-off-%")
		b.ReportMetric(float64((res["on"].p(0.99)-res["off"].p(0.99)).Microseconds())/1000, "added-p99-ms")
	})
}

func add(dst *loadResult, r loadResult, rounds int) {
	dst.rps += r.rps / float64(rounds)
	dst.cpu += r.cpu / time.Duration(rounds)
	dst.latencies = append(dst.latencies, r.latencies...)
}

func journalReport(b *testing.B, res map[string]*loadResult) {
	for _, r := range res {
		slices.Sort(r.latencies)
	}
	b.ReportMetric(100*res["on"].rps/res["plain-on"].rps, "journal-throughput-%")
	b.ReportMetric(100*res["off"].rps/res["plain-off"].rps, "nojournal-throughput-%")
	b.ReportMetric(float64((res["on"].p(0.99)-res["plain-on"].p(0.99)).Microseconds())/1000, "journal-added-p99-ms")
	b.ReportMetric(float64((res["off"].p(0.99)-res["plain-off"].p(0.99)).Microseconds())/1000, "nojournal-added-p99-ms")
	b.ReportMetric(float64((res["on"].cpu - res["off"].cpu).Microseconds()), "journal-cpu-µs/call")
}
