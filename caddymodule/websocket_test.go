package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
)

// wsFrame encodes one server-to-client WebSocket frame (unmasked).
func wsFrame(fin bool, op byte, payload []byte) []byte {
	var b bytes.Buffer
	first := op
	if fin {
		first |= 0x80
	}
	b.WriteByte(first)
	switch n := len(payload); {
	case n < 126:
		b.WriteByte(byte(n))
	case n <= 0xffff:
		b.WriteByte(126)
		binary.Write(&b, binary.BigEndian, uint16(n))
	default:
		b.WriteByte(127)
		binary.Write(&b, binary.BigEndian, uint64(n))
	}
	b.Write(payload)
	return b.Bytes()
}

func event(chat, msg, data string) []byte {
	return []byte(fmt.Sprintf(`42["events",{"chat_id":%q,"message_id":%q,"data":{"type":"chat:completion","data":%s}}]`, chat, msg, data))
}

// wsUpstream is a websocket server that accepts any upgrade and sends
// script, in writes of awkward sizes, then closes. It records the
// Sec-WebSocket-Extensions the client offered.
func wsUpstream(t testing.TB, script []byte, piece int, gap time.Duration, offered chan<- string) *httptest.Server {
	return wsUpstreamFunc(t, func(conn net.Conn) {
		for rest := script; len(rest) > 0; {
			n := min(piece, len(rest))
			if _, err := conn.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
			if gap > 0 {
				time.Sleep(gap)
			}
		}
	}, offered)
}

// wsUpstreamFunc is a websocket server that accepts any upgrade, runs
// script on the connection and waits for the client to leave.
func wsUpstreamFunc(t testing.TB, script func(net.Conn), offered ...chan<- string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, o := range offered {
			if o != nil {
				o <- r.Header.Get("Sec-WebSocket-Extensions")
			}
		}
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		brw.Flush()
		script(conn)
		io.Copy(io.Discard, conn) // until the client leaves
	}))
	t.Cleanup(srv.Close)
	return srv
}

// dialWebsocket opens a websocket through url's /ws/socket.io/ with the
// session cookie, as a browser does, and returns the connection after the
// 101 answer, with what the answer said.
func dialWebsocket(t testing.TB, url, jwt string) (net.Conn, *bufio.Reader, http.Header) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(conn, "GET /ws/socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"+
		"Cookie: token=%s\r\n\r\n", base64.StdEncoding.EncodeToString(key), jwt)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d", resp.StatusCode)
	}
	return conn, br, resp.Header
}

// TestWebsocketRelaysEveryByte: what the browser receives through the tap
// is exactly what the upstream sent — large, fragmented (with a ping in
// the middle), binary and close frames, written in awkward pieces — and
// the answer those frames carry is charged once, with its usage.
func TestWebsocketRelaysEveryByte(t *testing.T) {
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			big := make([]byte, 1<<20)
			rand.Read(big)
			huge := event("c1", "m1", fmt.Sprintf(`{"content":%q}`, base64.StdEncoding.EncodeToString(big)[:1<<20]))
			usage := event("c1", "m1", `{"usage":{"prompt_tokens":30,"completion_tokens":9}}`)
			var script []byte
			for _, f := range [][]byte{
				wsFrame(true, 1, []byte(`0{"sid":"s1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`)),
				wsFrame(true, 1, []byte(`40{"sid":"n1"}`)),
				wsFrame(true, 1, huge),
				wsFrame(false, 1, usage[:10]),
				wsFrame(true, 9, []byte("ping")),
				wsFrame(false, 0, usage[10:40]),
				wsFrame(true, 0, usage[40:]),
				wsFrame(true, 2, big[:70000]),
				wsFrame(true, 1, event("c1", "m1", `{"done":true,"content":"Hi there.","usage":{"prompt_tokens":30,"completion_tokens":9}}`)),
				wsFrame(true, 8, []byte{0x03, 0xe8}),
			} {
				script = append(script, f...)
			}
			offered := make(chan string, 1)
			up := wsUpstream(t, script, 4093, 0, offered)
			e := startEdgeWith(t, db(), "", "reverse_proxy /ws/* "+up.URL)

			// The web UI's request places the hold the websocket settles.
			resp := e.do(t, context.Background(), "/api/chat/completions", e.jwt,
				`{"model":"gpt-4o","stream":true,"session_id":"s","chat_id":"c1","id":"m1","messages":[{"role":"user","content":"hi"}]}`)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("chat request %d", resp.StatusCode)
			}

			conn, br, _ := dialWebsocket(t, e.url, e.jwt)
			defer conn.Close()
			if ext := <-offered; ext != "" {
				t.Fatalf("the upstream was offered compression: %q", ext)
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			got := make([]byte, len(script))
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatalf("after %d bytes: %v", len(got), err)
			}
			if !bytes.Equal(got, script) {
				i := 0
				for i < len(got) && got[i] == script[i] {
					i++
				}
				t.Fatalf("the browser's bytes differ from the upstream's at %d of %d", i, len(script))
			}

			recs := e.webRecords(t, 1)
			if len(recs) != 1 || recs[0].Source != ledger.SourceWebsocket || recs[0].Status != ledger.StatusCompleted ||
				recs[0].InputTokens != 30 || recs[0].OutputTokens != 9 || recs[0].Estimated || recs[0].Cost != money.Units(30+2*9) {
				t.Fatalf("records %+v", recs)
			}
		})
	}
}
