package caddymodule

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/wstap"
)

// benchEventStream is what the stand-in OpenWebUI sends on each websocket:
// the Engine.IO and Socket.IO handshakes, then events of one answer, each
// stamped with the time it is sent, in bursts of 10 spaced by gap (a
// model streams about that fast), then done with usage.
func benchEventStream(events int, gap time.Duration) func(conn net.Conn) {
	return func(conn net.Conn) {
		conn.Write(wsFrame(true, 1, []byte(`0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`)))
		conn.Write(wsFrame(true, 1, []byte(`40{"sid":"n"}`)))
		text := bytes.Repeat([]byte("token "), 30)
		for i := 0; i < events; i++ {
			ev := event("bench-chat", "bench-msg", fmt.Sprintf(`{"content":%q,"ts":%d}`, text, time.Now().UnixNano()))
			if _, err := conn.Write(wsFrame(true, 1, ev)); err != nil {
				return
			}
			if gap > 0 && i%10 == 9 {
				time.Sleep(gap)
			}
		}
		conn.Write(wsFrame(true, 1, event("bench-chat", "bench-msg", `{"done":true,"usage":{"prompt_tokens":10,"completion_tokens":10}}`)))
	}
}

// wsScripted is a websocket server that runs script on every connection
// and then waits for the client to leave.
func wsScripted(b *testing.B, script func(net.Conn)) string {
	srv := wsUpstreamFunc(b, script)
	return srv.URL
}

// BenchmarkWebsocket relays 10,000 socket.io events to a browser through
// the websocket tap and through plain reverse_proxy, in the same run, and
// measures each event's delay from the upstream's write to the client's
// read; then the memory an idle tapped websocket costs over a plain one:
//
//	go test -run '^$' -bench BenchmarkWebsocket -benchtime 1x ./caddymodule
func BenchmarkWebsocket(b *testing.B) {
	owui := fakeowui.NewOpenWebUI(b, nil)
	jwt, _ := owui.AddUser("bench", "bench@example.com", "Bench", "user")

	b.Run("events", func(b *testing.B) {
		up := wsScripted(b, benchEventStream(10_000, time.Millisecond))
		metered, plain := wsSites(b, up, owui)
		delays := map[string][]time.Duration{}
		for round := 0; round < 3; round++ {
			for _, site := range []string{plain, metered} {
				delays[site] = append(delays[site], readEventDelays(b, site, jwt, 10_000)...)
			}
		}
		for _, site := range []string{plain, metered} {
			slices.Sort(delays[site])
		}
		q := func(d []time.Duration, f float64) float64 {
			return float64(d[int(float64(len(d)-1)*f)].Microseconds()) / 1000
		}
		b.ReportMetric(q(delays[plain], 0.5), "plain-p50-ms")
		b.ReportMetric(q(delays[metered], 0.5), "tapped-p50-ms")
		b.ReportMetric(q(delays[plain], 0.99), "plain-p99-ms")
		b.ReportMetric(q(delays[metered], 0.99), "tapped-p99-ms")
		b.ReportMetric(q(delays[metered], 0.99)-q(delays[plain], 0.99), "added-p99-ms")
	})

	b.Run("idle-memory", func(b *testing.B) {
		up := wsScripted(b, benchEventStream(0, 0))
		metered, plain := wsSites(b, up, owui)
		const n = 300
		perConn := map[string]float64{}
		for _, site := range []string{plain, metered} {
			before := heap()
			conns := make([]net.Conn, 0, n)
			for i := 0; i < n; i++ {
				conn, br, _ := dialWebsocket(b, site, jwt)
				// Wait for the handshakes and the done event.
				if _, err := io.ReadFull(br, make([]byte, 2+len(`0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`))); err != nil {
					b.Fatal(err)
				}
				conns = append(conns, conn)
			}
			time.Sleep(200 * time.Millisecond)
			perConn[site] = float64(heap()-before) / n
			for _, c := range conns {
				c.Close()
			}
			time.Sleep(200 * time.Millisecond)
		}
		b.ReportMetric(perConn[plain]/1024, "plain-KiB/conn")
		b.ReportMetric(perConn[metered]/1024, "tapped-KiB/conn")
		b.ReportMetric((perConn[metered]-perConn[plain])/1024, "added-KiB/conn")
	})
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// wsSites runs one Caddy with a tapped site and a plain one, both sending
// /ws/* to up.
func wsSites(b *testing.B, up string, owui *fakeowui.OpenWebUI) (metered, plain string) {
	pm, pp := freePort(b), freePort(b)
	run(b, fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		output discard
	}
	openwebui_monitor {
		database sqlite://%s
		openwebui %s
		webui_secret_key %s
	}
}

:%d {
	openwebui_monitor
	reverse_proxy %s
}

:%d {
	reverse_proxy %s
}
`, filepath.Join(b.TempDir(), "bench.db"), owui.URL(), owui.Secret(), pm, up, pp, up))
	return fmt.Sprintf("http://127.0.0.1:%d", pm), fmt.Sprintf("http://127.0.0.1:%d", pp)
}

// readEventDelays reads a websocket until n stamped events arrived and
// returns each one's delay.
func readEventDelays(b *testing.B, site, jwt string, n int) []time.Duration {
	conn, br, _ := dialWebsocket(b, site, jwt)
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	delays := make([]time.Duration, 0, n)
	fr := wstap.NewFrameReader(wstap.FrameConfig{}, func(m wstap.Message) {
		i := bytes.Index(m.Data, []byte(`"ts":`))
		if i < 0 {
			return
		}
		rest := m.Data[i+5:]
		j := bytes.IndexByte(rest, '}')
		ts, err := strconv.ParseInt(string(rest[:j]), 10, 64)
		if err == nil {
			delays = append(delays, time.Since(time.Unix(0, ts)))
		}
	})
	buf := make([]byte, 32<<10)
	for len(delays) < n {
		k, err := br.Read(buf)
		fr.Write(buf[:k])
		if err != nil {
			b.Fatalf("after %d events: %v", len(delays), err)
		}
	}
	return delays
}
