package fakeowui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// SocketClient is a browser tab's socket.io client (socket.io-client v4 as
// OpenWebUI's frontend uses it, §5), for tests: it connects to
// /ws/socket.io/ over a websocket or long-polling, sends CONNECT with
// {"token": <JWT>} and then user-join, answers pings, and records every
// event and every byte it receives.
type SocketClient struct {
	SID        string // Engine.IO session id
	Extensions string // Sec-WebSocket-Extensions of the 101 answer

	base      string
	opts      DialOptions
	ws        *wsConn
	httpc     *http.Client
	raw       *recorder // websocket: every byte read from the connection
	hdrLen    int       // length of the 101 answer in raw
	ctx       context.Context
	cancel    context.CancelFunc
	connected chan struct{}

	mu      sync.Mutex
	events  []ClientEvent
	packets []string // Engine.IO packets received; binary ones as "b<base64>"
	bodies  [][]byte // polling: GET answer bodies
	notify  chan struct{}
	pending *ClientEvent // a binary event waiting for its attachments
	done    chan struct{}
	err     error
}

// ClientEvent is a Socket.IO event a client received.
type ClientEvent struct {
	Name        string
	Args        []json.RawMessage // the arguments after the name
	Attachments [][]byte          // binary events: the attachments
}

// Payload is the first argument, e.g. {"chat_id", "message_id", "data"}.
func (e ClientEvent) Payload() json.RawMessage {
	if len(e.Args) == 0 {
		return nil
	}
	return e.Args[0]
}

// DialOptions configure DialSocketIO.
type DialOptions struct {
	// Token is the user's JWT: sent in the CONNECT auth payload and in
	// user-join, and as the cookie "token" on every request, as a browser
	// does (the cookie is what a proxy sees).
	Token string
	// NoCookie leaves the cookie out.
	NoCookie bool
	// Polling uses the long-polling transport instead of a websocket.
	Polling bool
	// OfferDeflate offers permessage-deflate as browsers do
	// ("permessage-deflate; client_max_window_bits").
	OfferDeflate bool
	// NoUserJoin skips the user-join event the frontend emits on connect.
	NoUserJoin bool
	// Header is added to every request.
	Header http.Header
}

// DialSocketIO connects to baseURL (http://host:port) as a browser tab and
// returns once the Socket.IO CONNECT was answered (and user-join sent).
func DialSocketIO(ctx context.Context, baseURL string, opts DialOptions) (*SocketClient, error) {
	cctx, cancel := context.WithCancel(context.Background())
	c := &SocketClient{
		base: strings.TrimSuffix(baseURL, "/"), opts: opts, ctx: cctx, cancel: cancel,
		notify: make(chan struct{}, 1), done: make(chan struct{}), connected: make(chan struct{}),
	}
	var err error
	if opts.Polling {
		err = c.dialPolling(ctx)
	} else {
		err = c.dialWebSocket(ctx)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	select {
	case <-c.connected:
	case <-c.done:
		c.Close()
		return nil, fmt.Errorf("socket.io: closed before CONNECT was answered: %v", c.Err())
	case <-ctx.Done():
		c.Close()
		return nil, ctx.Err()
	}
	if !opts.NoUserJoin {
		c.Emit("user-join", map[string]any{"auth": map[string]any{"token": opts.Token}})
	}
	return c, nil
}

func (c *SocketClient) header(h http.Header) {
	for k, vs := range c.opts.Header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	if !c.opts.NoCookie && c.opts.Token != "" {
		h.Add("Cookie", "token="+c.opts.Token)
	}
}

func (c *SocketClient) dialWebSocket(ctx context.Context) error {
	u, err := url.Parse(c.base + "/ws/socket.io/?EIO=4&transport=websocket")
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	key := wsKey()
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Sec-WebSocket-Version", "13")
	if c.opts.OfferDeflate {
		req.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
	}
	c.header(req.Header)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return err
	}
	c.raw = &recorder{cap: 64 << 20}
	br := bufio.NewReader(recordingReader{r: conn, rec: c.raw})
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		conn.Close()
		return fmt.Errorf("socket.io: upgrade answered %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		conn.Close()
		return errors.New("socket.io: bad Sec-WebSocket-Accept")
	}
	conn.SetDeadline(time.Time{})
	c.hdrLen = bytes.Index(c.raw.bytes(), []byte("\r\n\r\n")) + 4
	c.Extensions = resp.Header.Get("Sec-WebSocket-Extensions")
	var defl wsDeflate
	if strings.Contains(strings.ToLower(c.Extensions), "permessage-deflate") {
		// The client compresses nothing; it reads what the server sends.
		defl = wsDeflate{on: true, noContextIncoming: strings.Contains(c.Extensions, "server_no_context_takeover")}
	}
	c.ws = newWSConn(conn, br, conn, true, defl)
	go c.readWebSocket()
	return nil
}

func (c *SocketClient) readWebSocket() {
	var err error
	for {
		var op byte
		var msg []byte
		op, msg, err = c.ws.readMessage()
		if err != nil {
			break
		}
		c.packet(op == wsBinary, msg)
	}
	c.finish(err)
}

func (c *SocketClient) pollURL() string {
	u := c.base + "/ws/socket.io/?EIO=4&transport=polling"
	if c.SID != "" {
		u += "&sid=" + url.QueryEscape(c.SID)
	}
	return u
}

func (c *SocketClient) dialPolling(ctx context.Context) error {
	c.httpc = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	body, err := c.poll(ctx)
	if err != nil {
		return err
	}
	open, _, _ := bytes.Cut(body, []byte{0x1e})
	var hs struct {
		SID string `json:"sid"`
	}
	if len(open) == 0 || open[0] != '0' || json.Unmarshal(open[1:], &hs) != nil || hs.SID == "" {
		return fmt.Errorf("socket.io: no open packet in %q", body)
	}
	c.SID = hs.SID
	c.packets = append(c.packets, string(open))
	if err := c.post(ctx, `40{"token":`+pyJSON(c.opts.Token)+`}`); err != nil {
		return err
	}
	go func() {
		var err error
		for {
			var body []byte
			body, err = c.poll(c.ctx)
			if err != nil {
				break
			}
			for p := range bytes.SplitSeq(body, []byte{0x1e}) {
				if len(p) > 0 && p[0] == 'b' {
					bin, _ := base64.StdEncoding.DecodeString(string(p[1:]))
					c.packet(true, bin)
				} else {
					c.packet(false, p)
				}
			}
		}
		c.finish(err)
	}()
	return nil
}

func (c *SocketClient) poll(ctx context.Context) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.pollURL(), nil)
	c.header(req.Header)
	resp, err := c.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("socket.io: poll answered %d %s", resp.StatusCode, body)
	}
	c.mu.Lock()
	c.bodies = append(c.bodies, body)
	c.mu.Unlock()
	return body, nil
}

func (c *SocketClient) post(ctx context.Context, packets ...string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.pollURL(), strings.NewReader(strings.Join(packets, "\x1e")))
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	c.header(req.Header)
	resp, err := c.httpc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("socket.io: post answered %d", resp.StatusCode)
	}
	return nil
}

// sendPacket sends one Engine.IO text packet.
func (c *SocketClient) sendPacket(p string) error {
	if c.ws != nil {
		return c.ws.writeMessage(wsText, []byte(p))
	}
	return c.post(c.ctx, p)
}

// Emit sends a Socket.IO event 42["name", data].
func (c *SocketClient) Emit(name string, data any) error {
	return c.sendPacket("42[" + pyJSON(name) + "," + pyJSON(data) + "]")
}

// packet handles one Engine.IO packet: text, or a binary message.
func (c *SocketClient) packet(binary bool, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.signal()
	if binary {
		bin := data
		c.packets = append(c.packets, "b"+base64.StdEncoding.EncodeToString(bin))
		if c.pending != nil {
			c.pending.Attachments = append(c.pending.Attachments, bytes.Clone(bin))
			if len(c.pending.Attachments) == cap(c.pending.Attachments) {
				c.events = append(c.events, *c.pending)
				c.pending = nil
			}
		}
		return
	}
	text := data
	c.packets = append(c.packets, string(text))
	if len(text) == 0 {
		return
	}
	switch text[0] {
	case '0': // open: then CONNECT with the auth payload
		var hs struct {
			SID string `json:"sid"`
		}
		json.Unmarshal(text[1:], &hs)
		if c.ws != nil && c.SID == "" {
			c.SID = hs.SID
			go c.sendPacket(`40{"token":` + pyJSON(c.opts.Token) + `}`)
		}
	case '2':
		go c.sendPacket("3")
	case '1':
		go c.Close()
	case '4':
		c.socketIO(text[1:])
	}
}

// socketIO handles a Socket.IO packet from the server (namespace "/").
func (c *SocketClient) socketIO(p []byte) {
	if len(p) == 0 {
		return
	}
	typ, rest := p[0], p[1:]
	attachments := 0
	if typ == '5' {
		n, after, ok := bytes.Cut(rest, []byte("-"))
		if !ok {
			return
		}
		fmt.Sscan(string(n), &attachments)
		rest = after
	}
	for len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
		rest = rest[1:] // an ack id
	}
	switch typ {
	case '0':
		select {
		case <-c.connected:
		default:
			close(c.connected)
		}
	case '2', '5':
		var args []json.RawMessage
		if json.Unmarshal(rest, &args) != nil || len(args) == 0 {
			return
		}
		var name string
		json.Unmarshal(args[0], &name)
		ev := ClientEvent{Name: name, Args: args[1:]}
		if typ == '5' && attachments > 0 {
			ev.Attachments = make([][]byte, 0, attachments)
			c.pending = &ev
			return
		}
		c.events = append(c.events, ev)
	}
}

func (c *SocketClient) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *SocketClient) finish(err error) {
	c.mu.Lock()
	if c.err == nil && err != nil && !errors.Is(err, errWSClosed) && !errors.Is(err, context.Canceled) {
		c.err = err
	}
	c.mu.Unlock()
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.signal()
}

// Events returns the events received so far.
func (c *SocketClient) Events() []ClientEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ClientEvent(nil), c.events...)
}

// Packets returns the Engine.IO packets received so far, in order (binary
// ones as "b<base64>").
func (c *SocketClient) Packets() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.packets...)
}

// Wire returns what the client received: on a websocket, every byte after
// the 101 answer, exactly as read; when polling, the GET answer bodies one
// after the other.
func (c *SocketClient) Wire() []byte {
	if c.raw != nil {
		return c.raw.bytes()[c.hdrLen:]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.bodies, nil)
}

// Bodies returns the polling GET answer bodies received, in order.
func (c *SocketClient) Bodies() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.bodies...)
}

// WaitEvent waits until an event satisfies match, and returns it.
func (c *SocketClient) WaitEvent(timeout time.Duration, match func(ClientEvent) bool) (ClientEvent, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		c.mu.Lock()
		evs := c.events[seen:]
		c.mu.Unlock()
		for _, ev := range evs {
			if match(ev) {
				return ev, true
			}
		}
		seen += len(evs)
		select {
		case <-c.notify:
		case <-deadline.C:
			return ClientEvent{}, false
		}
	}
}

// Done is closed when the connection ended.
func (c *SocketClient) Done() <-chan struct{} { return c.done }

// Err is why the connection ended abnormally, if it did.
func (c *SocketClient) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close leaves: a close frame on a websocket, an Engine.IO close packet
// when polling. Idempotent.
func (c *SocketClient) Close() error {
	select {
	case <-c.done: // the server hung up: nothing to say, only to let go
		c.cancel()
		if c.ws != nil {
			c.ws.conn.Close()
		}
		return nil
	default:
	}
	if c.ws != nil {
		c.ws.writeMessage(wsClose, []byte{0x03, 0xe8})
		select {
		case <-c.done:
		case <-time.After(2 * time.Second):
		}
		c.ws.conn.Close()
	} else if c.SID != "" {
		c.post(context.Background(), "1")
	}
	c.cancel()
	<-c.done
	return nil
}
