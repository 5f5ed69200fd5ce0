package caddymodule

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
)

// benchUpstream is a fast stand-in for OpenWebUI, so the proxy is what is
// measured: it answers chat completions (JSON with usage, after the
// "X-Bench-Latency" the request names, or a stream of chunks 5ms apart)
// and everything else with a small JSON document.
func benchUpstream(b *testing.B) *httptest.Server {
	chunk := `data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"word "}}]}` + "\n\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/auths/":
			// The session user of the token, as OpenWebUI's
			// get_session_user answers (the gate checked the signature).
			id := "bench"
			if parts := strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), "."); len(parts) == 3 {
				if claims, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
					id = gjson.GetBytes(claims, "id").String()
				}
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":%q,"email":"%s@example.com","name":"Bench","role":"user","token_type":"Bearer"}`, id, id)
		case "/api/chat/completions", "/v1/chat/completions":
			body, _ := io.ReadAll(r.Body)
			if !gjson.GetBytes(body, "stream").Bool() {
				time.Sleep(benchLatency(r.Header.Get("X-Bench-Latency")))
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Four words of answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":2000,"completion_tokens":5,"total_tokens":2005}}`)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			rc := http.NewResponseController(w)
			for i := 0; i < 20; i++ {
				io.WriteString(w, chunk)
				rc.Flush()
				time.Sleep(5 * time.Millisecond)
			}
			if gjson.GetBytes(body, "stream_options.include_usage").Bool() {
				io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":2000,"completion_tokens":20,"total_tokens":2020}}`+"\n\n")
			}
			io.WriteString(w, "data: [DONE]\n\n")
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ok":true}`)
		}
	}))
	b.Cleanup(srv.Close)
	return srv
}

// benchLatencies are the upstream's answer times the completion
// benchmarks run at. At once, the proxy's CPU is the only cost, so
// throughput is the ratio of CPU per request (the worst case). A fixed
// 20ms is still far faster than any model. 50–150ms, varying per request,
// is the fastest a real model answers, and shows what a deployment sees.
var benchLatencies = []string{"0s", "20ms", "50ms-150ms"}

// benchLatency reads "X-Bench-Latency": a duration ("20ms"), or a range
// ("50ms-150ms") drawn from uniformly per request, as a model's time to
// answer varies. A fixed latency makes the 64 clients move in lockstep,
// so the proxy sees bursts of 64 at once instead of a steady flow.
func benchLatency(spec string) time.Duration {
	lo, hi, isRange := strings.Cut(spec, "-")
	min, err := time.ParseDuration(lo)
	if err != nil {
		return 0
	}
	if !isRange {
		return min
	}
	max, err := time.ParseDuration(hi)
	if err != nil || max <= min {
		return min
	}
	return min + rand.N(max-min)
}

// benchSites runs one Caddy with two sites in front of the same upstream:
// one metered by openwebui_monitor, one plain reverse_proxy.
func benchSites(b *testing.B) (metered, plain, jwt string) {
	return benchSitesOn(b, "sqlite://"+filepath.Join(b.TempDir(), "bench.db"))
}

// benchSitesOn is benchSites with the store at database.
func benchSitesOn(b *testing.B, database string) (metered, plain, jwt string) {
	up := benchUpstream(b)
	const secret = "bench-secret"
	jwt = fakeowui.SignJWT(secret, map[string]any{"id": "bench", "exp": time.Now().Add(time.Hour).Unix()})
	pm, pp := freePort(b), freePort(b)
	run(b, fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		output discard
	}
	openwebui_monitor {
		database %s
		openwebui %s
		webui_secret_key %s
		init_balance 1000000000
	}
}

:%d {
	openwebui_monitor
	reverse_proxy %s
}

:%d {
	reverse_proxy %s
}
`, database, up.URL, secret, pm, up.URL, pp, up.URL))
	return fmt.Sprintf("http://127.0.0.1:%d", pm), fmt.Sprintf("http://127.0.0.1:%d", pp), jwt
}

type loadResult struct {
	rps       float64
	cpu       time.Duration   // the process's CPU time per request: proxy, load generator and upstream
	latencies []time.Duration // sorted
}

func (r loadResult) p(q float64) time.Duration {
	return r.latencies[int(float64(len(r.latencies)-1)*q)]
}

// load sends n requests from workers concurrent clients.
func load(b *testing.B, workers, n int, do func(i int) error) loadResult {
	lat := make([]time.Duration, n)
	var next, failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), processCPU()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := do(i); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	if failed.Load() > 0 {
		b.Fatalf("%d requests failed; first: %v", failed.Load(), first.Load())
	}
	slices.Sort(lat)
	return loadResult{rps: float64(n) / elapsed.Seconds(), cpu: cpu / time.Duration(n), latencies: lat}
}

func send(method, url, token, body string, header ...string) error {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// compare runs the same load against the plain and the metered site in
// alternating rounds (the machine is noisy) and reports both.
func compare(b *testing.B, rounds, workers, perRound int, do func(site string, i int) error, metered, plain string) (p, m loadResult) {
	// Warm both sites up first (connections, the tokenizer's tables,
	// prepared statements, users): a deployment pays that once, not per call.
	for _, site := range []string{plain, metered} {
		load(b, workers, 2*workers, func(i int) error { return do(site, rounds*perRound+i) })
	}
	for r := 0; r < rounds; r++ {
		for _, site := range []string{plain, metered} {
			res := load(b, workers, perRound, func(i int) error { return do(site, r*perRound+i) })
			dst := &p
			if site == metered {
				dst = &m
			}
			dst.rps += res.rps / float64(rounds)
			dst.cpu += res.cpu / time.Duration(rounds)
			dst.latencies = append(dst.latencies, res.latencies...)
		}
	}
	slices.Sort(p.latencies)
	slices.Sort(m.latencies)
	return p, m
}

func report(b *testing.B, p, m loadResult) {
	b.ReportMetric(p.rps, "plain-req/s")
	b.ReportMetric(m.rps, "metered-req/s")
	b.ReportMetric(100*m.rps/p.rps, "throughput-%")
	b.ReportMetric(float64(p.p(0.99).Microseconds())/1000, "plain-p99-ms")
	b.ReportMetric(float64(m.p(0.99).Microseconds())/1000, "metered-p99-ms")
	b.ReportMetric(float64((m.p(0.99)-p.p(0.99)).Microseconds())/1000, "added-p99-ms")
	// The same load generator and upstream serve both sites, so the
	// difference is what the metering costs per call.
	b.ReportMetric(float64((m.cpu - p.cpu).Microseconds()), "added-cpu-µs/call")
}

// BenchmarkEdge compares the metered site with plain reverse_proxy to the
// same upstream in one run, at concurrency 64:
//
//	go test -run '^$' -bench BenchmarkEdge -benchtime 1x ./caddymodule
func BenchmarkEdge(b *testing.B) {
	metered, plain, jwt := benchSites(b)
	bodies := completionBodies(4000)
	for _, latency := range benchLatencies {
		b.Run("completions-upstream-"+latency, func(b *testing.B) {
			p, m := compare(b, 4, 64, 1000, func(site string, i int) error {
				return send(http.MethodPost, site+"/api/chat/completions", jwt, bodies[i%len(bodies)], "X-Bench-Latency", latency)
			}, metered, plain)
			report(b, p, m)
		})
	}
	b.Run("other-routes", func(b *testing.B) {
		p, m := compare(b, 4, 64, 2000, func(site string, i int) error {
			return send(http.MethodGet, site+"/api/v1/chats/?page=1", jwt, "")
		}, metered, plain)
		report(b, p, m)
	})
	b.Run("stream-gaps", func(b *testing.B) {
		// Time between consecutive chunks as the client sees them, 8 streams at once.
		gaps := map[string][]time.Duration{}
		var mu sync.Mutex
		body := fmt.Sprintf(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"%s"}]}`, strings.Repeat("word ", 100))
		for r := 0; r < 3; r++ {
			for _, site := range []string{plain, metered} {
				load(b, 8, 40, func(int) error {
					req, _ := http.NewRequest(http.MethodPost, site+"/api/chat/completions", strings.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+jwt)
					resp, err := client.Do(req)
					if err != nil {
						return err
					}
					defer resp.Body.Close()
					sc := bufio.NewScanner(resp.Body)
					var last time.Time
					var mine []time.Duration
					for sc.Scan() {
						if !strings.Contains(sc.Text(), `"content"`) {
							continue
						}
						now := time.Now()
						if !last.IsZero() {
							mine = append(mine, now.Sub(last))
						}
						last = now
					}
					if len(mine) != 19 {
						return fmt.Errorf("%d gaps", len(mine))
					}
					mu.Lock()
					gaps[site] = append(gaps[site], mine...)
					mu.Unlock()
					return nil
				})
			}
		}
		mean := func(d []time.Duration) float64 {
			var s time.Duration
			for _, x := range d {
				s += x
			}
			return float64(s.Microseconds()) / float64(len(d)) / 1000
		}
		slices.Sort(gaps[plain])
		slices.Sort(gaps[metered])
		p99 := func(d []time.Duration) float64 { return float64(d[len(d)*99/100].Microseconds()) / 1000 }
		b.ReportMetric(mean(gaps[plain]), "plain-gap-ms")
		b.ReportMetric(mean(gaps[metered]), "metered-gap-ms")
		b.ReportMetric(mean(gaps[metered])-mean(gaps[plain]), "added-gap-ms")
		b.ReportMetric(p99(gaps[metered])-p99(gaps[plain]), "added-p99-gap-ms")
	})
}
