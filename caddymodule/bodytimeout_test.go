package caddymodule

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
)

// withServerTimeouts is startEdge's extra with Caddy's global server
// timeouts as well: extra sits at the end of the global openwebui_monitor
// block, so it closes that block and opens `servers`, which the harness's
// closing brace then closes.
func withServerTimeouts(extra, timeouts string) string {
	return extra + "\n\t}\n\tservers {\n\t\ttimeouts {\n\t\t\t" + timeouts + "\n\t\t}"
}

const declared32MiB = 32 << 20

// stallBody opens a connection, sends a POST's headers declaring a 32 MiB
// body and its first bytes, then nothing.
func stallBody(t *testing.T, base, path, token string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"model\":",
		path, strings.TrimPrefix(base, "http://"), token, declared32MiB)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// vmRSS is the process's resident set in bytes (0 where /proc is missing).
func vmRSS() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb uint64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}

// TestIdleBodiesHoldLittleMemory (issue 12): 30 connections that declare
// 32 MiB bodies and send nothing more cost this process (Caddy, the gate
// and the test, in one) little memory, on a model call with a user's key
// and on the function's outlet. The old reader grew its buffer to the
// declared length first: about 1 GiB per 30 connections.
func TestIdleBodiesHoldLittleMemory(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "") // body_timeout at its default: the bodies stay stalled
	// Warm up: the user's key is resolved and cached, statements prepared.
	resp := e.do(t, context.Background(), "/api/chat/completions", e.key, fmt.Sprintf(chatBody, false))
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("warm-up: %d", resp.StatusCode)
	}
	const conns = 30
	for _, c := range []struct{ name, path, token string }{
		{"chat completions, user key", "/api/chat/completions", e.key},
		{"outlet, function key", "/api/v1/outlet", testAPIKey},
	} {
		heapBefore, rssBefore := heap(), vmRSS()
		var stalled []net.Conn
		for range conns {
			stalled = append(stalled, stallBody(t, e.url, c.path, c.token))
		}
		// Give every handler time to reach its body and allocate for it.
		time.Sleep(time.Second)
		heapAfter, rssAfter := heap(), vmRSS()
		grown := int64(heapAfter) - int64(heapBefore)
		t.Logf("%s: %d stalled connections declaring 32 MiB: heap in use %+.1f MiB (%.1f → %.1f MiB), VmRSS %+.1f MiB",
			c.name, conns, float64(grown)/(1<<20), float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20),
			(float64(rssAfter)-float64(rssBefore))/(1<<20))
		if grown > 50<<20 {
			t.Errorf("%s: %d stalled bodies grew the heap by %d MiB, want under 50 MiB", c.name, conns, grown>>20)
		}
		// Still stalled, not answered: the measurement was of waiting bodies.
		for _, conn := range stalled {
			conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			if n, err := conn.Read(make([]byte, 1)); n > 0 || !isTimeout(err) {
				t.Fatalf("%s: a stalled request was answered early (%d bytes, %v)", c.name, n, err)
			}
			conn.Close()
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestStalledBodyTimesOut: with body_timeout 1s, a body that stops
// arriving is answered 408 with a JSON error naming the limit about a
// second later, on every route that reads bodies, and the connection is
// closed rather than left waiting for the rest.
func TestStalledBodyTimesOut(t *testing.T) {
	const adminToken = "admin-secret-token"
	e := startEdge(t, sqliteDB(t), "body_timeout 1s\n\t\taccess_token "+adminToken)
	routes := []struct{ name, path, token, message string }{
		{"chat completions", "/api/chat/completions", e.key, "error.message"},
		{"outlet", "/api/v1/outlet", testAPIKey, "error"},
		{"inlet", "/api/v1/inlet", testAPIKey, "error"},
		{"admin prices", "/monitor/api/v1/models/price", adminToken, "error"},
	}
	var wg sync.WaitGroup
	for _, r := range routes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			conn := stallBody(t, e.url, r.path, r.token)
			conn.SetDeadline(time.Now().Add(15 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Errorf("%s: no answer: %v", r.name, err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			took := time.Since(start)
			msg := gjson.GetBytes(b, r.message).Str
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(msg, "not received within 1s (body_timeout)") ||
				!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("%s: %d %s, want 408 naming body_timeout", r.name, resp.StatusCode, b)
			}
			if took < 900*time.Millisecond || took > 4*time.Second {
				t.Errorf("%s: answered after %v, body_timeout 1s", r.name, took)
			}
			if !resp.Close {
				t.Errorf("%s: the connection is kept for a body that never came", r.name)
			}
			if n, err := conn.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("%s: connection open after the 408 (%d, %v)", r.name, n, err)
			}
		}()
	}
	wg.Wait()
}

// TestLongAnswerOutlivesReadBody: Caddy's read_body and body_timeout bound
// the request body only. An answer that streams through the gate for
// three times as long as both, and one that passes untouched, arrive whole.
func TestLongAnswerOutlivesReadBody(t *testing.T) {
	slow := fakeowui.NewProvider(t) // an upstream the gate does not meter
	reply := fakeowui.DefaultReply()
	reply.Text = "one two three four five six"
	reply.Chunks, reply.Delay = 6, 600*time.Millisecond
	slow.SetReply(reply)
	for _, timeout := range []string{"read_body 1s", "read_body_idle 1s"} {
		t.Run(timeout, func(t *testing.T) { longAnswer(t, slow, reply, timeout) })
	}
}

func longAnswer(t *testing.T, slow *fakeowui.Provider, reply fakeowui.Reply, timeout string) {
	e := startEdgeWith(t, sqliteDB(t), withServerTimeouts("body_timeout 1s", timeout),
		"reverse_proxy /v1/* "+slow.URL())
	e.provider.SetReply(reply)
	for _, c := range []struct{ name, path, token string }{
		{"metered, API key", "/api/chat/completions", e.key},
		{"metered, web UI", "/api/chat/completions", e.jwt},
		{"not metered", "/v1/chat/completions", ""},
	} {
		start := time.Now()
		resp := e.do(t, context.Background(), c.path, c.token, fmt.Sprintf(chatBody, true))
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: status %d: %s", c.name, resp.StatusCode, b)
		}
		data, _ := readSSE(t, resp)
		var text strings.Builder
		for _, d := range data {
			text.WriteString(gjson.Get(d, "choices.0.delta.content").Str)
		}
		took := time.Since(start)
		if text.String() != reply.Text || len(data) == 0 || data[len(data)-1] != "[DONE]" {
			t.Fatalf("%s: cut after %v: got %q", c.name, took, text.String())
		}
		if took < 3*time.Second {
			t.Fatalf("%s: the answer took %v, want a stream longer than read_body", c.name, took)
		}
	}
}

// TestWebsocketOutlivesReadBody: a websocket through the tap keeps working
// both ways long after Caddy's read_body has passed.
func TestWebsocketOutlivesReadBody(t *testing.T) {
	for _, timeout := range []string{"read_body 1s", "read_body_idle 1s"} {
		t.Run(timeout, func(t *testing.T) { websocketOutlives(t, timeout) })
	}
}

func websocketOutlives(t *testing.T, timeout string) {
	hello := wsFrame(true, 1, []byte(`0{"sid":"s1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`))
	reply := wsFrame(true, 1, []byte(`42["pong"]`))
	up := wsUpstreamFunc(t, func(conn net.Conn) {
		conn.Write(hello)
		// Wait for the browser's frame, then answer it.
		if _, err := io.ReadAtLeast(conn, make([]byte, 16), 1); err != nil {
			return
		}
		conn.Write(reply)
	})
	e := startEdgeWith(t, sqliteDB(t), withServerTimeouts("body_timeout 1s", timeout), "reverse_proxy /ws/* "+up.URL)
	conn, br, _ := dialWebsocket(t, e.url, e.jwt)
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(hello))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != string(hello) {
		t.Fatalf("handshake frame %q, %v", got, err)
	}
	time.Sleep(2500 * time.Millisecond) // past read_body
	// A masked text frame, as browsers send: 42["ping"].
	payload, mask := []byte(`42["ping"]`), []byte{1, 2, 3, 4}
	frame := append([]byte{0x81, 0x80 | byte(len(payload))}, mask...)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len(reply))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != string(reply) {
		t.Fatalf("after read_body: got %q, %v", got, err)
	}
}
