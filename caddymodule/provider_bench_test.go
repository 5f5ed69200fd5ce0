package caddymodule

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
)

// BenchmarkProvider compares openwebui_meter (in front of reverse_proxy)
// with plain reverse_proxy to the same stand-in provider in one run, at
// concurrency 64, with calls as OpenWebUI sends them (shared key, plain
// forwarded user headers, chat and message ids; 100 users):
//
//	go test -run '^$' -bench BenchmarkProvider -benchtime 1x ./caddymodule
func BenchmarkProvider(b *testing.B) {
	up := benchUpstream(b)
	pm, pp := freePort(b), freePort(b)
	run(b, fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		output discard
	}
	openwebui_monitor {
		database sqlite://%s
		provider_key %s
		init_balance 1000000000
	}
}

:%d {
	openwebui_meter
	reverse_proxy %s
}

:%d {
	reverse_proxy %s
}
`, filepath.Join(b.TempDir(), "bench.db"), sharedKey, pm, up.URL, pp, up.URL))
	metered, plain := fmt.Sprintf("http://127.0.0.1:%d", pm), fmt.Sprintf("http://127.0.0.1:%d", pp)

	bodies := completionBodies(4000)
	for _, latency := range benchLatencies {
		b.Run("completions-upstream-"+latency, func(b *testing.B) {
			p, m := compare(b, 4, 64, 1000, func(site string, i int) error {
				user := fmt.Sprintf("user-%03d", i%100)
				return send(http.MethodPost, site+"/v1/chat/completions", sharedKey, bodies[i%len(bodies)],
					"X-Bench-Latency", latency,
					"X-OpenWebUI-User-Id", user, "X-OpenWebUI-User-Email", user+"@example.com",
					"X-OpenWebUI-User-Name", user, "X-OpenWebUI-User-Role", "user",
					"X-OpenWebUI-Chat-Id", fmt.Sprintf("chat-%d", i%500), "X-OpenWebUI-Message-Id", fmt.Sprintf("msg-%d-%s", i, site[len(site)-5:]))
			}, metered, plain)
			report(b, p, m)
		})
	}
}
