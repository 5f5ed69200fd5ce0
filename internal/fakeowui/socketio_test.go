package fakeowui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

func dial(t *testing.T, o *OpenWebUI, opts DialOptions) *SocketClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := DialSocketIO(ctx, o.URL(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// chatEvents waits for the done (or cancel) event of chatID and returns
// the chat events received up to it, as JSON payloads.
func chatEvents(t *testing.T, c *SocketClient, chatID string) []gjson.Result {
	t.Helper()
	_, ok := c.WaitEvent(5*time.Second, func(e ClientEvent) bool {
		p := gjson.ParseBytes(e.Payload())
		return e.Name == "events" && p.Get("chat_id").String() == chatID &&
			(p.Get("data.data.done").Bool() || p.Get("data.type").String() == "chat:tasks:cancel")
	})
	if !ok {
		t.Fatalf("no end event for %s; got %d events", chatID, len(c.Events()))
	}
	var out []gjson.Result
	for _, e := range c.Events() {
		if p := gjson.ParseBytes(e.Payload()); e.Name == "events" && p.Get("chat_id").String() == chatID {
			out = append(out, p)
			if p.Get("data.data.done").Bool() || p.Get("data.type").String() == "chat:tasks:cancel" {
				break
			}
		}
	}
	return out
}

func startChat(t *testing.T, o *OpenWebUI, jwt, chatID, messageID string, extra string) {
	t.Helper()
	resp := post(t, o.URL()+"/api/chat/completions", `{"model":"m","stream":true,`+extra+`"session_id":"s","chat_id":"`+chatID+`","id":"`+messageID+`",
		"messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer "+jwt)
	if body := readAll(t, resp); resp.StatusCode != 200 || !gjson.Get(body, "status").Bool() {
		t.Fatalf("chat answered %d %s", resp.StatusCode, body)
	}
}

func TestSocketIOWebSocketChat(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "user")
	p.SetReply(Reply{Text: "Grüße, world!", Chunks: 3, Usage: Usage{PromptTokens: 9, CompletionTokens: 4}})
	o.SetOptions(OpenWebUIOptions{RunBackground: true})
	c := dial(t, o, DialOptions{Token: jwt})

	// The handshake, as python-engineio and python-socketio send it.
	pk := c.Packets()
	if len(pk) < 2 || !strings.HasPrefix(pk[0], `0{"sid":"`+c.SID+`","upgrades":[],"pingTimeout":20000,"pingInterval":25000,"maxPayload":1000000}`) ||
		!strings.HasPrefix(pk[1], `40{"sid":"`) || len(c.SID) != 20 {
		t.Fatalf("handshake packets %q (sid %q)", pk, c.SID)
	}
	if got := o.Sockets("u1"); len(got) != 1 || got[0] != c.SID {
		t.Fatalf("room user:u1 = %v", got)
	}

	startChat(t, o, jwt, "c1", "a1", `"stream_options":{"include_usage":true},`)
	got := chatEvents(t, c, "c1")
	o.WaitBackground()
	sent := o.Events()
	if len(got) != len(sent)-1 { // chat:active false comes after done
		t.Fatalf("received %d events, sent %d", len(got), len(sent))
	}
	for i, g := range got {
		var want map[string]any
		json.Unmarshal(mustJSON(sent[i].Payload), &want)
		var have map[string]any
		json.Unmarshal([]byte(g.Raw), &have)
		if string(mustJSON(have)) != string(mustJSON(want)) {
			t.Errorf("event %d = %s, want %s", i, g.Raw, mustJSON(want))
		}
	}
	last := got[len(got)-1]
	if last.Get("data.data.usage.input_tokens").Int() != 9 || last.Get("data.data.output.0.content.0.text").String() != "Grüße, world!" {
		t.Errorf("done event %s", last.Raw)
	}
	// The wire text: python's compact, ASCII-only JSON, OpenWebUI's key order.
	var wire string
	for _, s := range c.Packets() {
		if strings.Contains(s, `"done":true`) {
			wire = s
		}
	}
	if !strings.HasPrefix(wire, `42["events",{"chat_id":"c1","message_id":"a1","data":{"type":"chat:completion","data":{"done":true,`) ||
		!strings.Contains(wire, `Gr\u00fc\u00dfe, world!`) {
		t.Errorf("wire text %s", wire)
	}
	if strings.ContainsAny(wire, "\n\t") || strings.Contains(wire, `": `) || strings.Contains(wire, `, "`) {
		t.Errorf("not compact: %s", wire)
	}
}

func TestSocketIOEveryTabOfTheUser(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt1, _ := o.AddUser("u1", "a@example.com", "A", "user")
	jwt2, _ := o.AddUser("u2", "b@example.com", "B", "user")
	o.SetOptions(OpenWebUIOptions{RunBackground: true})
	tabs := []*SocketClient{
		dial(t, o, DialOptions{Token: jwt1}),
		dial(t, o, DialOptions{Token: jwt1, Polling: true}),
		dial(t, o, DialOptions{Token: jwt1, NoUserJoin: true}), // CONNECT auth alone joins
	}
	other := dial(t, o, DialOptions{Token: jwt2})
	anon := dial(t, o, DialOptions{})
	if n := len(o.Sockets("u1")); n != 3 {
		t.Fatalf("%d sockets in user:u1", n)
	}
	startChat(t, o, jwt1, "c1", "a1", "")
	var texts []string
	for i, tab := range tabs {
		evs := chatEvents(t, tab, "c1")
		var s []string
		for _, e := range evs {
			s = append(s, e.Raw)
		}
		texts = append(texts, strings.Join(s, "\n"))
		if i > 0 && texts[i] != texts[0] {
			t.Errorf("tab %d got other events:\n%s\n---\n%s", i, texts[i], texts[0])
		}
	}
	o.WaitBackground()
	time.Sleep(50 * time.Millisecond)
	for _, c := range []*SocketClient{other, anon} {
		for _, e := range c.Events() {
			if e.Name == "events" {
				t.Errorf("another socket got %s", e.Payload())
			}
		}
	}
}

func TestSocketIOPolling(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "a@example.com", "A", "user")
	o.SetOptions(OpenWebUIOptions{RunBackground: true})
	o.SetSocketIO(SocketIOOptions{Transports: []string{"polling"}, PingInterval: 100 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	c := dial(t, o, DialOptions{Token: jwt, Polling: true})
	startChat(t, o, jwt, "c1", "a1", `"stream_options":{"include_usage":true},`)
	evs := chatEvents(t, c, "c1")
	if !evs[len(evs)-1].Get("data.data.done").Bool() {
		t.Fatalf("last event %s", evs[len(evs)-1].Raw)
	}
	// Pings come and are answered: the session lives past several timeouts.
	time.Sleep(700 * time.Millisecond)
	pings := 0
	for _, s := range c.Packets() {
		if s == "2" {
			pings++
		}
	}
	if pings < 3 || len(o.Sockets("u1")) != 1 {
		t.Errorf("%d pings, sockets %v, err %v", pings, o.Sockets("u1"), c.Err())
	}
	// The server recorded the bodies it sent; the client got the same.
	if w := o.SocketWire(c.SID); !bytes.Equal(w, c.Wire()) || !bytes.Contains(w, []byte("\x1e42[\"events\"")) {
		t.Errorf("wire differs:\n%q\n%q", w, c.Wire())
	}
	// Websocket is refused when OpenWebUI runs polling only.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := DialSocketIO(ctx, o.URL(), DialOptions{Token: jwt}); err == nil || !strings.Contains(err.Error(), `400 "Invalid transport"`) {
		t.Errorf("websocket dial: %v", err)
	}
	c.Close()
	if len(o.Sockets("u1")) != 0 {
		t.Error("closed session still in the room")
	}
}

func TestSocketIOPingTimeout(t *testing.T) {
	o := NewOpenWebUI(t, nil)
	jwt, _ := o.AddUser("u1", "a@example.com", "A", "user")
	o.SetSocketIO(SocketIOOptions{PingInterval: 50 * time.Millisecond, PingTimeout: 50 * time.Millisecond})
	// A raw websocket that never answers pings.
	conn, br := rawUpgrade(t, o, "")
	defer conn.Close()
	ws := newWSConn(conn, br, conn, true, wsDeflate{})
	ws.writeMessage(wsText, []byte(`40{"token":"`+jwt+`"}`))
	var got []string
	for {
		_, msg, err := ws.readMessage()
		if err != nil {
			break
		}
		got = append(got, string(msg))
	}
	if len(got) != 3 || got[2] != "2" || len(o.Sockets("u1")) != 0 {
		t.Errorf("packets before the close: %q", got)
	}
}

// rawUpgrade opens a websocket to the fake by hand.
func rawUpgrade(t *testing.T, o *OpenWebUI, ext string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(o.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	key := wsKey()
	req := "GET /ws/socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"
	if ext != "" {
		req += "Sec-WebSocket-Extensions: " + ext + "\r\n"
	}
	io.WriteString(conn, req+"\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Sec-Websocket-Accept") != wsAccept(key) {
		t.Fatalf("upgrade: %v %+v", err, resp)
	}
	return conn, br
}

func TestSocketIOBadRequests(t *testing.T) {
	o := NewOpenWebUI(t, nil)
	cases := []struct {
		method, query string
		header        []string
		want          string
	}{
		{"GET", "EIO=3&transport=polling", nil, `"The client is using an unsupported version of the Socket.IO or Engine.IO protocols"`},
		{"GET", "EIO=4&transport=websocket", nil, `"Invalid websocket upgrade"`},
		{"GET", "EIO=4&transport=flash", nil, `"Invalid transport"`},
		{"GET", "EIO=4&transport=polling&sid=nope", nil, `"Invalid session nope"`},
		{"POST", "EIO=4&transport=polling&sid=nope", nil, `"Invalid session nope"`},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, o.URL()+"/ws/socket.io/?"+c.query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 400 || body != c.want {
			t.Errorf("%s %s: %d %s", c.method, c.query, resp.StatusCode, body)
		}
	}
	// A polling handshake answers the open packet alone, as text/plain.
	resp := get(t, o.URL()+"/ws/socket.io/?EIO=4&transport=polling&t=abc")
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.HasPrefix(body, `0{"sid":"`) || strings.Contains(body, "\x1e") ||
		resp.Header.Get("Content-Type") != "text/plain; charset=UTF-8" {
		t.Errorf("handshake %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestSocketIOAuth(t *testing.T) {
	o := NewOpenWebUI(t, nil)
	jwt, key := o.AddUser("u1", "a@example.com", "Alice", "user")
	pendingJWT, _ := o.AddUser("u2", "p@example.com", "P", "pending")
	for name, opts := range map[string]DialOptions{
		"api key":      {Token: key},
		"pending user": {Token: pendingJWT},
		"bad token":    {Token: jwt + "x"},
	} {
		c := dial(t, o, opts)
		if len(o.Sockets("u1"))+len(o.Sockets("u2")) != 0 {
			t.Errorf("%s: joined a room", name)
		}
		c.Close()
	}
	// The cookie alone identifies nobody to OpenWebUI's socket.io.
	raw := dialRawConnect(t, o, jwt)
	if len(o.Sockets("u1")) != 0 {
		t.Error("the token cookie joined a room")
	}
	raw.Close()
	// user-join with an ack id is answered with the user.
	c := dial(t, o, DialOptions{Token: "", NoUserJoin: true})
	c.sendPacket(`421["user-join",{"auth":{"token":"` + jwt + `"}}]`)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && !containsPacket(c, `431[{"id":"u1","name":"Alice"}]`) {
		time.Sleep(5 * time.Millisecond)
	}
	if !containsPacket(c, `431[{"id":"u1","name":"Alice"}]`) || len(o.Sockets("u1")) != 1 {
		t.Errorf("packets %q, room %v", c.Packets(), o.Sockets("u1"))
	}
	// Revoked: a new connection does not join.
	o.Revoke("u1")
	dial(t, o, DialOptions{Token: jwt})
	if len(o.Sockets("u1")) != 1 {
		t.Errorf("room %v", o.Sockets("u1"))
	}
}

// dialRawConnect connects with the token cookie but an empty CONNECT.
func dialRawConnect(t *testing.T, o *OpenWebUI, jwt string) *wsConn {
	t.Helper()
	conn, br := rawUpgradeCookie(t, o, jwt)
	ws := newWSConn(conn, br, conn, true, wsDeflate{})
	ws.readMessage() // open
	ws.writeMessage(wsText, []byte("40"))
	if _, msg, err := ws.readMessage(); err != nil || !strings.HasPrefix(string(msg), `40{"sid":`) {
		t.Fatalf("CONNECT answer %q %v", msg, err)
	}
	ws.writeMessage(wsText, []byte(`42["heartbeat",{}]`))
	time.Sleep(20 * time.Millisecond)
	return ws
}

func rawUpgradeCookie(t *testing.T, o *OpenWebUI, jwt string) (net.Conn, *bufio.Reader) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(o.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	key := wsKey()
	io.WriteString(conn, "GET /ws/socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\nCookie: token="+jwt+"\r\n\r\n")
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade %v", err)
	}
	return conn, br
}

func (c *wsConn) Close() { c.writeMessage(wsClose, nil); c.conn.Close() }

func containsPacket(c *SocketClient, p string) bool {
	for _, s := range c.Packets() {
		if s == p {
			return true
		}
	}
	return false
}

func TestSocketIOWireDeflateFragmentsBinary(t *testing.T) {
	o := NewOpenWebUI(t, nil)
	jwt, _ := o.AddUser("u1", "a@example.com", "A", "user")
	big := strings.Repeat("0123456789", 20000) // 200 kB: 64-bit lengths
	bin := make([]byte, 70000)
	for i := range bin {
		bin[i] = byte(i * 31)
	}
	for _, opts := range []SocketIOOptions{
		{},
		{FragmentSize: 1000},
		{Deflate: true},
		{Deflate: true, DeflateNoContextTakeover: true, FragmentSize: 333},
		{ForceDeflate: true},
	} {
		t.Run(fmt.Sprintf("%+v", opts), func(t *testing.T) {
			o.SetSocketIO(opts)
			c := dial(t, o, DialOptions{Token: jwt, OfferDeflate: opts.Deflate})
			wantExt := opts.Deflate || opts.ForceDeflate
			if (c.Extensions != "") != wantExt {
				t.Fatalf("extensions %q", c.Extensions)
			}
			payload := map[string]any{"chat_id": "c", "message_id": "m", "data": map[string]any{"type": "chat:completion", "data": map[string]any{"content": big}}}
			o.emit("u1", payload)
			o.EmitBinary("u1", "file", bin)
			o.emit("u1", map[string]any{"chat_id": "c", "message_id": "m", "data": map[string]any{"type": "chat:completion", "data": map[string]any{"done": true}}})
			if _, ok := c.WaitEvent(5*time.Second, func(e ClientEvent) bool { return gjson.GetBytes(e.Payload(), "data.data.done").Bool() }); !ok {
				t.Fatalf("no done event: %v", c.Err())
			}
			evs := c.Events()
			if len(evs) != 3 || gjson.GetBytes(evs[0].Payload(), "data.data.content").String() != big ||
				evs[1].Name != "file" || len(evs[1].Attachments) != 1 || !bytes.Equal(evs[1].Attachments[0], bin) {
				t.Fatalf("events %d", len(evs))
			}
			// What the server wrote is what the client read, byte for byte.
			sw := o.SocketWire(c.SID)
			if cw := c.Wire(); !bytes.Equal(sw, cw[:min(len(cw), len(sw))]) || !wantExt && len(sw) < len(big)+len(bin) {
				t.Fatalf("wire: server %d bytes, client %d", len(sw), len(cw))
			}
			frames, continued := countFrames(t, sw)
			if opts.FragmentSize > 0 != continued || opts.FragmentSize == 0 && frames > 8 || opts.FragmentSize > 0 && !wantExt && frames < 200 {
				t.Errorf("%d frames, continuation frames %v", frames, continued)
			}
			if wantExt && len(sw) > len(big)/4 {
				t.Errorf("compressed wire of %d bytes", len(sw))
			}
			c.Close()
		})
	}
}

// countFrames walks the server's (unmasked) frames.
func countFrames(t *testing.T, b []byte) (n int, continued bool) {
	for len(b) > 0 {
		if len(b) < 2 {
			t.Fatalf("truncated frame")
		}
		l, h := int(b[1]&0x7f), 2
		switch l {
		case 126:
			l, h = int(b[2])<<8|int(b[3]), 4
		case 127:
			l, h = 0, 10
			for _, c := range b[2:10] {
				l = l<<8 | int(c)
			}
		}
		if b[1]&0x80 != 0 || len(b) < h+l {
			t.Fatalf("bad frame")
		}
		continued = continued || b[0]&0x0f == wsContinuation
		b = b[h+l:]
		n++
	}
	return n, continued
}

func TestSocketIOLegacyNameAndStop(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "a@example.com", "A", "user")
	p.SetReply(Reply{Text: "a b c d e f", Chunks: 6, Delay: 100 * time.Millisecond})
	o.SetOptions(OpenWebUIOptions{RunBackground: true})
	o.SetSocketIO(SocketIOOptions{LegacyEventName: true})
	c := dial(t, o, DialOptions{Token: jwt})
	startChat(t, o, jwt, "c9", "a9", "")
	if _, ok := c.WaitEvent(3*time.Second, func(e ClientEvent) bool {
		return e.Name == "chat-events" && gjson.GetBytes(e.Payload(), "data.data.output").Exists()
	}); !ok {
		t.Fatalf("no chat-events: %q", c.Packets())
	}
	post(t, o.URL()+"/api/tasks/chat/c9/stop", ``, "Authorization", "Bearer "+jwt).Body.Close()
	if _, ok := c.WaitEvent(3*time.Second, func(e ClientEvent) bool {
		return gjson.GetBytes(e.Payload(), "data.type").String() == "chat:tasks:cancel"
	}); !ok {
		t.Fatal("no cancel event")
	}
	o.WaitBackground()
	for _, e := range c.Events() {
		if gjson.GetBytes(e.Payload(), "data.data.done").Bool() {
			t.Error("done after stop")
		}
	}
}

func TestSocketIOClosesWithTheFake(t *testing.T) {
	o := NewOpenWebUI(nil, nil)
	jwt, _ := o.AddUser("u1", "a@example.com", "A", "user")
	ws := dial(t, o, DialOptions{Token: jwt})
	poll := dial(t, o, DialOptions{Token: jwt, Polling: true})
	done := make(chan struct{})
	go func() { o.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on open sockets")
	}
	for _, c := range []*SocketClient{ws, poll} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("client not closed")
		}
	}
	o.emit("u1", map[string]any{"chat_id": "c"}) // after Close: nothing, no panic
}

func TestPyJSON(t *testing.T) {
	cases := map[string]any{
		`"caf\u00e9 \ud83d\ude00 <b>&"`:         "café 😀 <b>&",
		`{"a":[1,2.5,null,true],"b":{"c":"d"}}`: map[string]any{"b": map[string]any{"c": "d"}, "a": []any{1, 2.5, nil, true}},
		`"line\nbreak \"q\" \\"`:                "line\nbreak \"q\" \\",
	}
	for want, v := range cases {
		if got := pyJSON(v); got != want {
			t.Errorf("pyJSON(%v) = %s, want %s", v, got, want)
		}
	}
	got := eventJSON(map[string]any{"data": map[string]any{"data": map[string]any{"z": 1, "a": 2}, "type": "t"}, "message_id": "m", "chat_id": "c", "internal": true})
	if want := `{"chat_id":"c","message_id":"m","internal":true,"data":{"type":"t","data":{"a":2,"z":1}}}`; got != want {
		t.Errorf("eventJSON = %s", got)
	}
}
