package fakeowui

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The fake's socket.io server, as OpenWebUI runs python-socketio on
// python-engineio (§5, §8): Engine.IO v4 (EIO=4) on /ws/socket.io/, over a
// websocket (GET …&transport=websocket with Upgrade) or long-polling
// (GET/POST …&transport=polling&sid=…, packets separated by 0x1e, binary
// ones as "b<base64>"). The open packet is
//
//	0{"sid":…,"upgrades":[],"pingTimeout":20000,"pingInterval":25000,"maxPayload":1000000}
//
// then the server pings ("2") every pingInterval and closes a socket whose
// pong ("3") does not come within pingTimeout. Socket.IO v5 on top:
// CONNECT 40{"token":<JWT>} (the auth payload; always accepted, answered
// 40{"sid":…}, as always_connect=True does) puts the socket in the room
// user:{id} when the token is a valid JWT of a user or admin, and so does
// the event 42["user-join",{"auth":{"token":…}}] (acknowledged with
// 43<id>[{"id","name"}] when it has an ack id). Chat events go to every
// socket in the user's room as
//
//	42["events",{"chat_id":…,"message_id":…,"data":{"type":…,"data":{…}}}]
//
// encoded as python's json.dumps(separators=(',', ':')) does: compact,
// non-ASCII as \uXXXX, "<>&" as is. Like OpenWebUI, the server reads no
// cookie: identity comes only from the socket.io auth payload (a proxy
// in front has only the token cookie of the upgrade to go by, §2a).

// SocketIOOptions change the fake's socket.io server.
type SocketIOOptions struct {
	// Transports accepted: "websocket" and/or "polling"; both when empty.
	// OpenWebUI accepts only "websocket" (ENABLE_WEBSOCKET_SUPPORT, the
	// default) or only "polling". Upgrades from polling are never offered.
	Transports []string
	// PingInterval and PingTimeout default to 25 s and 20 s.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// Deflate negotiates permessage-deflate when the client offers it, as
	// uvicorn does by default, and compresses every data message (context
	// takeover unless DeflateNoContextTakeover, which adds
	// server_no_context_takeover to the answer).
	Deflate                  bool
	DeflateNoContextTakeover bool
	// ForceDeflate compresses even when the client did not offer it (an
	// upstream that ignores the proxy's request), announcing
	// permessage-deflate in the 101 answer anyway.
	ForceDeflate bool
	// FragmentSize, when > 0, sends every websocket message longer than it
	// as frames of at most FragmentSize bytes (continuation frames).
	FragmentSize int
	// LegacyEventName emits chat events as "chat-events" (OpenWebUI up to
	// 0.6.32) instead of "events".
	LegacyEventName bool
}

// sioServers holds each fake's socket.io state (the OpenWebUI struct is
// defined elsewhere; its context ends the state with it).
var sioServers sync.Map // *OpenWebUI -> *sioServer

type sioServer struct {
	o       *OpenWebUI
	mu      sync.Mutex
	opts    SocketIOOptions
	sockets map[string]*sioSocket          // by Engine.IO sid
	rooms   map[string]map[*sioSocket]bool // user id -> sockets
	closed  map[string]*sioSocket          // ended sockets, for their wire record
	running sync.WaitGroup
}

// sio is the fake's socket.io state; a closed fake has an empty one.
func (o *OpenWebUI) sio() *sioServer {
	if s, ok := sioServers.Load(o); ok {
		return s.(*sioServer)
	}
	return &sioServer{o: o, sockets: map[string]*sioSocket{}, rooms: map[string]map[*sioSocket]bool{}, closed: map[string]*sioSocket{}}
}

// mountSocketIO adds the socket.io routes (/ws/socket.io/) to mux.
func (o *OpenWebUI) mountSocketIO(mux *http.ServeMux) {
	s := &sioServer{o: o, sockets: map[string]*sioSocket{}, rooms: map[string]map[*sioSocket]bool{}, closed: map[string]*sioSocket{}}
	sioServers.Store(o, s)
	context.AfterFunc(o.ctx, func() {
		s.mu.Lock()
		list := make([]*sioSocket, 0, len(s.sockets))
		for _, k := range s.sockets {
			list = append(list, k)
		}
		s.mu.Unlock()
		for _, k := range list {
			k.close()
		}
		s.running.Wait()
		sioServers.Delete(o)
	})
	mux.HandleFunc("/ws/socket.io/", s.serve)
	mux.HandleFunc("/ws/socket.io", s.serve)
}

// SetSocketIO replaces the socket.io options for connections made from
// now on.
func (o *OpenWebUI) SetSocketIO(opts SocketIOOptions) {
	s := o.sio()
	s.mu.Lock()
	s.opts = opts
	s.mu.Unlock()
}

// Sockets returns the Engine.IO session ids of the sockets in the room of
// userID (those that authenticated as that user), sorted.
func (o *OpenWebUI) Sockets(userID string) []string {
	s := o.sio()
	s.mu.Lock()
	defer s.mu.Unlock()
	var sids []string
	for k := range s.rooms[userID] {
		sids = append(sids, k.sid)
	}
	sort.Strings(sids)
	return sids
}

// SocketWire returns the bytes the server wrote on the websocket of
// session sid after its 101 answer (frames exactly as sent, up to 64 MiB),
// or, for a polling session, its GET answer bodies one after the other.
// It stays available after the socket closed, until the fake closes.
func (o *OpenWebUI) SocketWire(sid string) []byte {
	s := o.sio()
	s.mu.Lock()
	k := s.sockets[sid]
	if k == nil {
		k = s.closed[sid]
	}
	s.mu.Unlock()
	if k == nil {
		return nil
	}
	return k.wire.bytes()
}

// emit sends payload as 42["events", payload] to every socket of the user.
func (o *OpenWebUI) emit(userID string, payload map[string]any) {
	s := o.sio()
	s.mu.Lock()
	name := "events"
	if s.opts.LegacyEventName {
		name = "chat-events"
	}
	s.mu.Unlock()
	o.EmitRaw(userID, "42["+pyJSON(name)+","+eventJSON(payload)+"]")
}

// EmitRaw sends one Engine.IO text packet (e.g. `42["events",{…}]`) as is
// to every socket of the user.
func (o *OpenWebUI) EmitRaw(userID, packet string) {
	for _, k := range o.sio().room(userID) {
		k.send(outPacket{text: packet})
	}
}

// EmitBinary sends a Socket.IO binary event to every socket of the user:
// 51-["<event>",{"_placeholder":true,"num":0}] and then data as a binary
// message (a binary frame, or "b<base64>" when polling).
func (o *OpenWebUI) EmitBinary(userID, event string, data []byte) {
	head := "451-[" + pyJSON(event) + `,{"_placeholder":true,"num":0}]`
	for _, k := range o.sio().room(userID) {
		k.send(outPacket{text: head}, outPacket{bin: bytes.Clone(data), binary: true})
	}
}

func (s *sioServer) room(userID string) []*sioSocket {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*sioSocket, 0, len(s.rooms[userID]))
	for k := range s.rooms[userID] {
		list = append(list, k)
	}
	return list
}

// eventJSON encodes an event payload in OpenWebUI's key order (chat_id,
// message_id, internal, data{type, data}); deeper keys sorted.
func eventJSON(p map[string]any) string {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	field := func(k, v string) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(pyJSON(k) + ":" + v)
	}
	seen := map[string]bool{}
	for _, k := range []string{"chat_id", "message_id", "internal"} {
		if v, ok := p[k]; ok {
			field(k, pyJSON(v))
			seen[k] = true
		}
	}
	if d, ok := p["data"].(map[string]any); ok {
		var db strings.Builder
		db.WriteByte('{')
		dfirst := true
		dfield := func(k string, v any) {
			if !dfirst {
				db.WriteByte(',')
			}
			dfirst = false
			db.WriteString(pyJSON(k) + ":" + pyJSON(v))
		}
		for _, k := range []string{"type", "data"} {
			if v, ok := d[k]; ok {
				dfield(k, v)
			}
		}
		for _, k := range sortedKeys(d) {
			if k != "type" && k != "data" {
				dfield(k, d[k])
			}
		}
		db.WriteByte('}')
		field("data", db.String())
		seen["data"] = true
	}
	for _, k := range sortedKeys(p) {
		if !seen[k] {
			field(k, pyJSON(p[k]))
		}
	}
	b.WriteByte('}')
	return b.String()
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// pyJSON encodes v as python's json.dumps(v, separators=(',', ':')) does:
// compact, ASCII only (\uXXXX, surrogate pairs above U+FFFF), no HTML
// escaping.
func pyJSON(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only JSON-able shapes are emitted
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	var b strings.Builder
	for len(out) > 0 {
		r, n := utf8.DecodeRune(out)
		switch {
		case r < utf8.RuneSelf:
			b.WriteByte(out[0])
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		out = out[n:]
	}
	return b.String()
}

// outPacket is one Engine.IO packet to send: text, or a binary message.
type outPacket struct {
	text   string
	bin    []byte
	binary bool
}

// sioSocket is one Engine.IO session.
type sioSocket struct {
	srv       *sioServer
	sid       string // Engine.IO session id
	nsid      string // Socket.IO id in namespace "/"
	transport string
	ws        *wsConn
	wire      recorder
	pong      chan struct{}

	mu      sync.Mutex
	queue   []outPacket
	ready   chan struct{} // signalled when the queue grows
	done    chan struct{} // closed when the socket ends
	ended   bool
	user    string // the room it joined
	polling bool   // a polling GET is waiting
}

// engineioID makes a session id like python-engineio's generate_id: 15
// bytes in base64 with "-" and "_", 20 characters.
func engineioID() string {
	var b [15]byte
	rand.Read(b[:])
	return base64.URLEncoding.EncodeToString(b[:])
}

func (s *sioServer) newSocket(transport string) *sioSocket {
	k := &sioSocket{
		srv: s, sid: engineioID(), nsid: engineioID(), transport: transport,
		pong: make(chan struct{}, 1), ready: make(chan struct{}, 1), done: make(chan struct{}),
	}
	k.wire.cap = 64 << 20
	s.mu.Lock()
	s.sockets[k.sid] = k
	opts := s.opts
	s.mu.Unlock()
	interval, timeout := opts.PingInterval, opts.PingTimeout
	if interval <= 0 {
		interval = 25 * time.Second
	}
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	open := fmt.Sprintf(`0{"sid":%s,"upgrades":[],"pingTimeout":%d,"pingInterval":%d,"maxPayload":1000000}`,
		pyJSON(k.sid), timeout.Milliseconds(), interval.Milliseconds())
	k.send(outPacket{text: open})
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		k.pinger(interval, timeout)
	}()
	return k
}

// pinger sends a ping every interval and closes the socket when its pong
// does not come within timeout, as python-engineio does.
func (k *sioSocket) pinger(interval, timeout time.Duration) {
	for {
		select {
		case <-time.After(interval):
		case <-k.done:
			return
		}
		select {
		case <-k.pong: // a stray pong
		default:
		}
		k.send(outPacket{text: "2"})
		select {
		case <-k.pong:
		case <-time.After(timeout):
			k.close()
			return
		case <-k.done:
			return
		}
	}
}

func (k *sioSocket) send(ps ...outPacket) {
	k.mu.Lock()
	if !k.ended {
		k.queue = append(k.queue, ps...)
	}
	k.mu.Unlock()
	select {
	case k.ready <- struct{}{}:
	default:
	}
}

// take waits for queued packets (up to wait, or until the socket ends)
// and returns them all.
func (k *sioSocket) take(wait time.Duration) []outPacket {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		k.mu.Lock()
		if len(k.queue) > 0 {
			q := k.queue
			k.queue = nil
			k.mu.Unlock()
			return q
		}
		k.mu.Unlock()
		select {
		case <-k.ready:
		case <-k.done:
			return nil
		case <-timer.C:
			return nil
		}
	}
}

func (k *sioSocket) close() {
	k.mu.Lock()
	if k.ended {
		k.mu.Unlock()
		return
	}
	k.ended = true
	close(k.done)
	ws := k.ws
	k.mu.Unlock()
	s := k.srv
	s.mu.Lock()
	delete(s.sockets, k.sid)
	s.closed[k.sid] = k
	s.leave(k)
	s.mu.Unlock()
	if ws != nil {
		ws.writeMessage(wsClose, []byte{0x03, 0xe8})
		ws.conn.Close()
	}
}

// leave takes k out of its room (under s.mu).
func (s *sioServer) leave(k *sioSocket) {
	if k.user == "" {
		return
	}
	delete(s.rooms[k.user], k)
	if len(s.rooms[k.user]) == 0 {
		delete(s.rooms, k.user)
	}
	k.user = ""
}

// badRequest answers like python-engineio: 400, a JSON string.
func badRequest(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusBadRequest)
	io.WriteString(w, pyJSON(msg))
}

func (s *sioServer) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	transport := q.Get("transport")
	if transport == "" {
		transport = "polling"
	}
	s.mu.Lock()
	opts := s.opts
	s.mu.Unlock()
	allowed := len(opts.Transports) == 0
	for _, t := range opts.Transports {
		allowed = allowed || t == transport
	}
	if !allowed || (transport != "polling" && transport != "websocket") {
		badRequest(w, "Invalid transport")
		return
	}
	sid := q.Get("sid")
	if sid == "" && q.Get("EIO") != "4" {
		badRequest(w, "The client is using an unsupported version of the Socket.IO or Engine.IO protocols")
		return
	}
	switch {
	case r.Method == http.MethodGet && sid == "" && transport == "websocket":
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !headerHasToken(r.Header, "Connection", "upgrade") {
			badRequest(w, "Invalid websocket upgrade")
			return
		}
		s.serveWebSocket(w, r, opts)
	case r.Method == http.MethodGet && sid == "":
		k := s.newSocket("polling")
		s.answerPoll(w, k, opts)
	case sid != "":
		s.mu.Lock()
		k := s.sockets[sid]
		s.mu.Unlock()
		if k == nil {
			badRequest(w, "Invalid session "+sid)
			return
		}
		if k.transport != transport {
			badRequest(w, "Invalid transport")
			return
		}
		switch r.Method {
		case http.MethodGet:
			s.answerPoll(w, k, opts)
		case http.MethodPost:
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1000001))
			for p := range bytes.SplitSeq(body, []byte{0x1e}) {
				k.receive(p)
			}
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "OK")
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	default:
		badRequest(w, "Bad Request")
	}
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// answerPoll answers a polling GET with every queued packet, waiting up
// to pingInterval + pingTimeout for one.
func (s *sioServer) answerPoll(w http.ResponseWriter, k *sioSocket, opts SocketIOOptions) {
	wait := opts.PingInterval + opts.PingTimeout
	if wait <= 0 {
		wait = 45 * time.Second
	}
	ps := k.take(wait)
	if len(ps) == 0 {
		k.close()
		badRequest(w, "Bad Request")
		return
	}
	var body bytes.Buffer
	for i, p := range ps {
		if i > 0 {
			body.WriteByte(0x1e)
		}
		if p.binary {
			body.WriteString("b" + base64.StdEncoding.EncodeToString(p.bin))
		} else {
			body.WriteString(p.text)
		}
	}
	k.wire.keep(body.Bytes())
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Write(body.Bytes())
}

func (s *sioServer) serveWebSocket(w http.ResponseWriter, r *http.Request, opts SocketIOOptions) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" || r.Header.Get("Sec-WebSocket-Version") != "13" {
		badRequest(w, "Invalid websocket upgrade")
		return
	}
	var d wsDeflate
	ext := ""
	if opts.ForceDeflate || opts.Deflate && offersDeflate(r.Header.Get("Sec-WebSocket-Extensions")) {
		d = wsDeflate{on: true, noContextOutgoing: opts.DeflateNoContextTakeover}
		ext = "permessage-deflate"
		if opts.DeflateNoContextTakeover {
			ext += "; server_no_context_takeover"
		}
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wsAccept(key) + "\r\n"
	if ext != "" {
		resp += "Sec-WebSocket-Extensions: " + ext + "\r\n"
	}
	if _, err := io.WriteString(conn, resp+"\r\n"); err != nil {
		conn.Close()
		return
	}
	k := s.newSocket("websocket")
	ws := newWSConn(conn, brw.Reader, recordingWriter{w: conn, rec: &k.wire}, false, d)
	ws.frag = opts.FragmentSize
	// The pinger may already close k: set ws under k.mu, as close reads it.
	k.mu.Lock()
	k.ws = ws
	ended := k.ended
	k.mu.Unlock()
	if ended {
		conn.Close()
		return
	}

	s.running.Add(1)
	go func() { // writer
		defer s.running.Done()
		for {
			ps := k.take(time.Hour)
			if ps == nil {
				select {
				case <-k.done:
					return
				default:
					continue
				}
			}
			for _, p := range ps {
				var err error
				if p.binary {
					err = k.ws.writeMessage(wsBinary, p.bin)
				} else {
					err = k.ws.writeMessage(wsText, []byte(p.text))
				}
				if err != nil {
					k.close()
					return
				}
			}
		}
	}()
	for {
		op, msg, err := k.ws.readMessage()
		if err != nil {
			break
		}
		if op == wsText {
			k.receive(msg)
		}
	}
	k.close()
}

// receive handles one Engine.IO packet from the client.
func (k *sioSocket) receive(p []byte) {
	if len(p) == 0 {
		return
	}
	switch p[0] {
	case '3':
		select {
		case k.pong <- struct{}{}:
		default:
		}
	case '1':
		k.close()
	case '4':
		k.socketIO(p[1:])
	}
}

// socketIO handles one Socket.IO packet from the client (namespace "/").
func (k *sioSocket) socketIO(p []byte) {
	if len(p) == 0 {
		return
	}
	typ, rest := p[0], p[1:]
	if len(rest) > 0 && rest[0] == '/' {
		nsp, after, _ := bytes.Cut(rest, []byte(","))
		if string(nsp) != "/" {
			k.send(outPacket{text: "44" + string(nsp) + `,{"message":"Unable to connect"}`})
			return
		}
		rest = after
	}
	id := -1
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i > 0 {
		id, _ = strconv.Atoi(string(rest[:i]))
		rest = rest[i:]
	}
	switch typ {
	case '0': // CONNECT, with the auth payload
		var auth struct {
			Token string `json:"token"`
		}
		json.Unmarshal(rest, &auth)
		k.join(auth.Token)
		k.send(outPacket{text: `40{"sid":` + pyJSON(k.nsid) + `}`})
	case '1': // DISCONNECT
		k.srv.mu.Lock()
		k.srv.leave(k)
		k.srv.mu.Unlock()
	case '2': // EVENT
		var args []json.RawMessage
		json.Unmarshal(rest, &args)
		var name string
		if len(args) > 0 {
			json.Unmarshal(args[0], &name)
		}
		ack := "[]"
		if name == "user-join" && len(args) > 1 {
			var data struct {
				Auth struct {
					Token string `json:"token"`
				} `json:"auth"`
			}
			json.Unmarshal(args[1], &data)
			if u, ok := k.join(data.Auth.Token); ok {
				ack = "[" + pyJSON(map[string]string{"id": u.id, "name": u.name}) + "]"
			}
		}
		if id >= 0 {
			k.send(outPacket{text: "43" + strconv.Itoa(id) + ack})
		}
	}
}

// join puts the socket in the room of the token's user, as connect and
// user-join do with get_verified_user_by_token: JWTs only, roles user and
// admin.
func (k *sioSocket) join(token string) (fakeUser, bool) {
	if token == "" || strings.HasPrefix(token, "sk-") {
		return fakeUser{}, false
	}
	o := k.srv.o
	id, _, err := verifyJWT(token, o.secret, time.Now())
	if err != nil {
		return fakeUser{}, false
	}
	o.mu.Lock()
	u := o.users[id]
	var user fakeUser
	if u != nil {
		user = *u
	}
	o.mu.Unlock()
	if u == nil || user.revoked || user.role != "user" && user.role != "admin" {
		return fakeUser{}, false
	}
	s := k.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-k.done: // closed (close takes k out of its room after this)
		return fakeUser{}, false
	default:
	}
	s.leave(k)
	k.user = user.id
	if s.rooms[user.id] == nil {
		s.rooms[user.id] = map[*sioSocket]bool{}
	}
	s.rooms[user.id][k] = true
	return user, true
}
