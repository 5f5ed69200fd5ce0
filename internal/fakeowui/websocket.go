package fakeowui

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// A minimal RFC 6455 WebSocket, both roles, for the fake socket.io server
// and its test client: masking, fragmentation, ping/pong/close, 16- and
// 64-bit lengths and permessage-deflate (RFC 7692). It is written
// independently of the proxy's reader (internal/wstap) on purpose.

const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xA
)

// wsAccept is Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func wsKey() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// wsDeflate is a negotiated permessage-deflate; the zero value is none.
type wsDeflate struct {
	on                bool
	noContextOutgoing bool // this side resets its compressor per message
	noContextIncoming bool // the peer resets its compressor per message
}

// offersDeflate says a Sec-WebSocket-Extensions request header offers
// permessage-deflate.
func offersDeflate(h string) bool {
	for ext := range strings.SplitSeq(h, ",") {
		name, _, _ := strings.Cut(ext, ";")
		if strings.EqualFold(strings.TrimSpace(name), "permessage-deflate") {
			return true
		}
	}
	return false
}

// wsConn is one end of a websocket.
type wsConn struct {
	conn   net.Conn
	br     *bufio.Reader
	client bool // the client masks what it sends
	frag   int  // split sent messages into frames of at most frag bytes (0: never)

	wmu   sync.Mutex
	w     io.Writer // conn, or a recorder in front of it
	defl  wsDeflate
	fw    *flate.Writer
	fbuf  bytes.Buffer
	dict  []byte // the peer's window, with context takeover
	inMsg []byte
	// closeSent: a close frame went out; nothing more is sent.
	closeSent bool
}

func newWSConn(conn net.Conn, br *bufio.Reader, w io.Writer, client bool, d wsDeflate) *wsConn {
	c := &wsConn{conn: conn, br: br, w: w, client: client, defl: d}
	if d.on {
		c.fw, _ = flate.NewWriter(&c.fbuf, flate.DefaultCompression)
	}
	return c
}

// writeMessage sends one message, compressed when deflate is on (text and
// binary only), split into frames of c.frag bytes when set.
func (c *wsConn) writeMessage(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return errWSClosed
	}
	if op == wsClose {
		c.closeSent = true
	}
	rsv := byte(0)
	if c.defl.on && (op == wsText || op == wsBinary) {
		c.fbuf.Reset()
		if c.defl.noContextOutgoing {
			c.fw.Reset(&c.fbuf)
		}
		c.fw.Write(payload)
		c.fw.Flush()
		payload = bytes.TrimSuffix(c.fbuf.Bytes(), []byte{0, 0, 0xff, 0xff})
		rsv = 0x40
	}
	if c.frag <= 0 || op >= wsClose || len(payload) <= c.frag {
		return c.writeFrame(true, rsv, op, payload)
	}
	for i := 0; i < len(payload); i += c.frag {
		end := min(i+c.frag, len(payload))
		fop := byte(wsContinuation)
		if i == 0 {
			fop = op
		} else {
			rsv = 0
		}
		if err := c.writeFrame(end == len(payload), rsv, fop, payload[i:end]); err != nil {
			return err
		}
	}
	return nil
}

func (c *wsConn) writeFrame(fin bool, rsv, op byte, payload []byte) error {
	hdr := make([]byte, 0, 14)
	b0 := op | rsv
	if fin {
		b0 |= 0x80
	}
	hdr = append(hdr, b0)
	var m byte
	if c.client {
		m = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		hdr = append(hdr, m|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, m|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, m|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	out := payload
	if c.client {
		var key [4]byte
		rand.Read(key[:])
		hdr = append(hdr, key[:]...)
		out = make([]byte, len(payload))
		for i, b := range payload {
			out[i] = b ^ key[i&3]
		}
	}
	_, err := c.w.Write(append(hdr, out...))
	return err
}

var errWSClosed = errors.New("websocket closed")

// readMessage returns the next text or binary message, answering pings and
// closes on the way; errWSClosed after a close frame.
func (c *wsConn) readMessage() (op byte, payload []byte, err error) {
	c.inMsg = c.inMsg[:0]
	var msgOp byte
	var compressed bool
	for {
		fin, rsv1, fop, data, err := c.readFrame()
		if err != nil {
			return 0, nil, err
		}
		switch fop {
		case wsPing:
			c.writeMessage(wsPong, data)
			continue
		case wsPong:
			continue
		case wsClose:
			c.writeMessage(wsClose, data)
			return 0, nil, errWSClosed
		case wsText, wsBinary:
			if msgOp != 0 {
				return 0, nil, errors.New("websocket: new message inside a fragmented one")
			}
			msgOp, compressed = fop, rsv1
		case wsContinuation:
			if msgOp == 0 {
				return 0, nil, errors.New("websocket: continuation without a message")
			}
		default:
			return 0, nil, fmt.Errorf("websocket: opcode %d", fop)
		}
		c.inMsg = append(c.inMsg, data...)
		if !fin {
			continue
		}
		if !compressed {
			return msgOp, c.inMsg, nil
		}
		if !c.defl.on {
			return 0, nil, errors.New("websocket: compressed message without permessage-deflate")
		}
		plain, err := c.inflate(c.inMsg)
		return msgOp, plain, err
	}
}

func (c *wsConn) readFrame() (fin, rsv1 bool, op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return
	}
	fin, rsv1, op = h[0]&0x80 != 0, h[0]&0x40 != 0, h[0]&0x0f
	if h[0]&0x30 != 0 {
		err = errors.New("websocket: RSV2/RSV3 set")
		return
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(c.br, b[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(c.br, b[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 64<<20 {
		err = fmt.Errorf("websocket: frame of %d bytes", n)
		return
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(c.br, key[:]); err != nil {
			return
		}
	}
	if masked == c.client {
		err = errors.New("websocket: wrong masking for this direction")
		return
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(c.br, payload); err != nil {
		return
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i&3]
		}
	}
	return
}

// inflate reads one compressed message (RFC 7692 §7.2.2), keeping the
// peer's window with context takeover.
func (c *wsConn) inflate(data []byte) ([]byte, error) {
	in := io.MultiReader(bytes.NewReader(data), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff"))
	var dict []byte
	if !c.defl.noContextIncoming {
		dict = c.dict
	}
	r := flate.NewReaderDict(in, dict)
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("websocket: inflate: %w", err)
	}
	if !c.defl.noContextIncoming {
		c.dict = append(c.dict, out...)
		if len(c.dict) > 32<<10 {
			c.dict = append([]byte(nil), c.dict[len(c.dict)-32<<10:]...)
		}
	}
	return out, nil
}

// recorder keeps a copy of every byte that passes, up to a cap.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
	cap int
}

func (r *recorder) keep(p []byte) {
	r.mu.Lock()
	if room := r.cap - r.buf.Len(); room > 0 {
		r.buf.Write(p[:min(len(p), room)])
	}
	r.mu.Unlock()
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

// recordingWriter writes to w and keeps what was written.
type recordingWriter struct {
	w   io.Writer
	rec *recorder
}

// Bytes are kept before they are written, so that once a client has read
// them, SocketWire has them too.
func (rw recordingWriter) Write(p []byte) (int, error) {
	rw.rec.keep(p)
	return rw.w.Write(p)
}

// recordingReader reads from r and keeps what was read.
type recordingReader struct {
	r   io.Reader
	rec *recorder
}

func (rr recordingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.rec.keep(p[:n])
	return n, err
}
