package wstap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Opcode is a WebSocket frame opcode (RFC 6455 §5.2).
type Opcode byte

// The opcodes RFC 6455 defines.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

func (op Opcode) control() bool { return op&0x8 != 0 }

func (op Opcode) String() string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return fmt.Sprintf("opcode(%d)", byte(op))
}

// DefaultMaxMessage is the default cap on one message's payload: on the
// wire (all fragments together) and, when compressed, after inflating.
const DefaultMaxMessage = 4 << 20

// Message is one whole WebSocket message, or one control frame.
type Message struct {
	Op Opcode // OpText, OpBinary, OpClose, OpPing or OpPong
	// Data is the payload, unmasked and inflated. It is only valid during
	// the handler call: the reader reuses or releases it afterwards. It is
	// nil when Skipped.
	Data []byte
	// Compressed says the message came with RSV1 set (permessage-deflate).
	Compressed bool
	// Skipped says the message was over the cap and was not kept.
	Skipped bool
	// Size is the payload size on the wire, all fragments together
	// (before inflating).
	Size int64
}

// FrameConfig configures a FrameReader.
type FrameConfig struct {
	// MaxMessage caps one message (see DefaultMaxMessage, the default when
	// zero or less). Control frames are at most 125 bytes anyway.
	MaxMessage int
	// Extensions is the Sec-WebSocket-Extensions header of the server's
	// 101 response: what the connection negotiated. Empty means none.
	// Only permessage-deflate is understood; any other extension, or
	// parameters outside RFC 7692, leave the reader broken from the start
	// (it cannot know what RSV bits mean).
	Extensions string
	// ClientToServer reads the browser's direction: with permessage-deflate
	// it uses client_no_context_takeover and client_max_window_bits instead
	// of the server_ ones. Masking is accepted either way.
	ClientToServer bool
}

// Errors that leave a FrameReader broken.
var (
	ErrProtocol     = errors.New("wstap: websocket protocol violation")
	ErrExtension    = errors.New("wstap: unsupported websocket extension")
	ErrInflate      = errors.New("wstap: permessage-deflate data does not inflate")
	ErrContextLost  = errors.New("wstap: compressed message over the cap with context takeover; later messages cannot be inflated")
	errFrameTooLong = fmt.Errorf("%w: 64-bit length with the top bit set", ErrProtocol)
)

const (
	stHeader = iota
	stPayload
)

// FrameReader reads WebSocket frames from bytes fed with Write, in pieces
// of any size, and calls its handler for every whole message and every
// control frame, in stream order. Control frames in the middle of a
// fragmented message are handed out when they arrive. After a close frame
// it reads nothing more. On a protocol violation it stops for good: Err
// says why, and Write keeps accepting (and ignoring) bytes.
//
// A FrameReader is not safe for concurrent use. It holds no buffer while
// idle between messages (except the inflate window with context
// takeover, at most 32 KiB).
type FrameReader struct {
	handle func(Message)
	max    int

	state int
	hdr   [14]byte
	hlen  int // bytes of hdr collected
	hneed int // header length once known, else 0

	// The current frame.
	fin    bool
	op     Opcode
	masked bool
	mask   [4]byte
	remain uint64 // payload bytes still to come
	fpos   uint64 // payload bytes of this frame seen so far

	// The message being assembled (data frames); msgOp is 0 when none.
	msgOp         Opcode
	msgCompressed bool
	msgSkip       bool
	msgSize       int64
	msgBuf        *[]byte

	ctl    [125]byte
	ctlLen int

	deflate *inflater // nil without permessage-deflate
	closed  bool
	err     error
}

// NewFrameReader returns a reader that calls h for each message. h must
// not keep Message.Data after it returns.
func NewFrameReader(cfg FrameConfig, h func(Message)) *FrameReader {
	r := &FrameReader{handle: h, max: cfg.MaxMessage}
	if r.max <= 0 {
		r.max = DefaultMaxMessage
	}
	p, err := ParseExtensions(cfg.Extensions)
	switch {
	case err != nil:
		r.err = err
	case p.Enabled:
		noCtx, bits := p.ServerNoContextTakeover, p.ServerMaxWindowBits
		if cfg.ClientToServer {
			noCtx, bits = p.ClientNoContextTakeover, p.ClientMaxWindowBits
		}
		r.deflate = &inflater{noContext: noCtx, window: 1 << bits}
	}
	return r
}

// Err is why the reader stopped, or nil while it reads.
func (r *FrameReader) Err() error { return r.err }

// Closed says a close frame was read; nothing after it is read.
func (r *FrameReader) Closed() bool { return r.closed }

// buffered is how many payload bytes the reader holds now (for tests).
func (r *FrameReader) buffered() int {
	n := 0
	if r.msgBuf != nil {
		n += cap(*r.msgBuf)
	}
	if r.deflate != nil {
		n += cap(r.deflate.dict)
	}
	return n
}

// Write reads p. It never fails and never keeps p: it returns len(p), nil,
// so it can sit behind an io.MultiWriter or an io.TeeReader.
func (r *FrameReader) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && r.err == nil && !r.closed {
		if r.state == stPayload {
			k := len(p)
			if uint64(k) > r.remain {
				k = int(r.remain)
			}
			r.payload(p[:k])
			p = p[k:]
			continue
		}
		if r.hlen == 0 {
			// Fast path: the whole header is in p.
			if hl := headerLen(p); hl > 0 && len(p) >= hl {
				if !r.startFrame(p[:hl]) {
					break
				}
				p = p[hl:]
				if n := r.remain; r.state == stPayload && uint64(len(p)) >= n && r.direct(p[:n]) {
					p = p[n:]
				}
				continue
			}
		}
		// Slow path: collect the header byte by byte across writes.
		for len(p) > 0 {
			r.hdr[r.hlen] = p[0]
			r.hlen++
			p = p[1:]
			if r.hneed == 0 && r.hlen >= 2 {
				r.hneed = headerLen(r.hdr[:2])
			}
			if r.hneed > 0 && r.hlen == r.hneed {
				hl := r.hlen
				r.hlen, r.hneed = 0, 0
				r.startFrame(r.hdr[:hl])
				break
			}
		}
	}
	return n, nil
}

// headerLen is the length of the frame header that starts b, from its
// first two bytes; 0 when b is shorter than two bytes.
func headerLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	return n
}

func (r *FrameReader) fail(err error) bool {
	r.err = err
	r.release()
	return false
}

// startFrame checks a whole header and sets up the frame; false when the
// reader broke.
func (r *FrameReader) startFrame(h []byte) bool {
	b0, b1 := h[0], h[1]
	fin := b0&0x80 != 0
	rsv1 := b0&0x40 != 0
	op := Opcode(b0 & 0x0f)
	masked := b1&0x80 != 0
	length := uint64(b1 & 0x7f)
	i := 2
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:4]))
		i = 4
	case 127:
		length = binary.BigEndian.Uint64(h[2:10])
		i = 10
		if length>>63 != 0 {
			return r.fail(errFrameTooLong)
		}
	}
	if masked {
		copy(r.mask[:], h[i:i+4])
	}
	if b0&0x30 != 0 {
		return r.fail(fmt.Errorf("%w: RSV2 or RSV3 set", ErrProtocol))
	}
	switch op {
	case OpText, OpBinary:
		if r.msgOp != 0 {
			return r.fail(fmt.Errorf("%w: new %v message inside a fragmented one", ErrProtocol, op))
		}
		if rsv1 && r.deflate == nil {
			return r.fail(fmt.Errorf("%w: RSV1 set without permessage-deflate", ErrProtocol))
		}
		r.msgOp, r.msgCompressed, r.msgSkip, r.msgSize = op, rsv1, false, 0
	case OpContinuation:
		if r.msgOp == 0 {
			return r.fail(fmt.Errorf("%w: continuation frame without a message", ErrProtocol))
		}
		if rsv1 {
			return r.fail(fmt.Errorf("%w: RSV1 set on a continuation frame", ErrProtocol))
		}
	case OpClose, OpPing, OpPong:
		if !fin || length > 125 || rsv1 {
			return r.fail(fmt.Errorf("%w: fragmented, long or compressed %v frame", ErrProtocol, op))
		}
		r.ctlLen = 0
	default:
		return r.fail(fmt.Errorf("%w: reserved opcode %d", ErrProtocol, byte(op)))
	}
	r.fin, r.op, r.masked, r.remain, r.fpos = fin, op, masked, length, 0
	if length == 0 {
		r.endFrame()
	} else {
		r.state = stPayload
	}
	return r.err == nil
}

// direct handles a whole frame payload that is entirely in the caller's
// buffer without copying it, when that is possible: an unmasked control
// frame, or an unmasked data frame that is a whole message.
func (r *FrameReader) direct(b []byte) bool {
	if r.masked {
		return false
	}
	switch {
	case r.op.control():
	case r.op != OpContinuation && r.fin && len(b) <= r.max:
	default:
		return false
	}
	r.state = stHeader
	r.remain = 0
	if r.op.control() {
		r.control(b)
		return true
	}
	r.msgSize = int64(len(b))
	r.deliver(b)
	return true
}

// payload reads the next piece of the current frame's payload.
func (r *FrameReader) payload(b []byte) {
	if r.op.control() {
		dst := r.ctl[r.ctlLen : r.ctlLen+len(b)]
		copy(dst, b)
		r.unmask(dst)
		r.ctlLen += len(b)
	} else {
		r.msgSize += int64(len(b))
		switch {
		case r.msgSkip:
		case r.msgSize > int64(r.max):
			r.msgSkip = true
			putBuf(r.msgBuf)
			r.msgBuf = nil
			if r.msgCompressed && !r.deflate.noContext {
				r.fail(ErrContextLost)
				return
			}
		default:
			if r.msgBuf == nil && r.fin && r.op != OpContinuation {
				// A whole message in one frame: its size is known.
				r.msgBuf = getBuf(int(min(r.remain, uint64(r.max))))
			}
			r.msgBuf = growBuf(r.msgBuf, len(b))
			start := len(*r.msgBuf)
			*r.msgBuf = append(*r.msgBuf, b...)
			r.unmask((*r.msgBuf)[start:])
		}
	}
	r.fpos += uint64(len(b))
	r.remain -= uint64(len(b))
	if r.remain == 0 {
		r.state = stHeader
		r.endFrame()
	}
}

func (r *FrameReader) unmask(b []byte) {
	if !r.masked {
		return
	}
	k := r.fpos
	for i := range b {
		b[i] ^= r.mask[(k+uint64(i))&3]
	}
}

func (r *FrameReader) endFrame() {
	if r.op.control() {
		r.control(r.ctl[:r.ctlLen])
		return
	}
	if !r.fin {
		return
	}
	var data []byte
	if r.msgBuf != nil {
		data = *r.msgBuf
	}
	r.deliver(data)
}

func (r *FrameReader) control(b []byte) {
	if r.op == OpClose {
		r.closed = true
	}
	r.handle(Message{Op: r.op, Data: b, Size: int64(len(b))})
}

// deliver ends the current data message, whose payload is b (nil when it
// was skipped), inflating it if needed.
func (r *FrameReader) deliver(b []byte) {
	m := Message{Op: r.msgOp, Compressed: r.msgCompressed, Size: r.msgSize, Skipped: r.msgSkip}
	if b == nil && !m.Skipped {
		b = []byte{}
	}
	var out *[]byte
	if m.Compressed && !m.Skipped {
		var skipped bool
		var err error
		out, skipped, err = r.deflate.inflate(b, r.max)
		if err != nil {
			r.fail(err)
			return
		}
		b, m.Skipped = nil, skipped
		if !skipped {
			b = *out
		}
	} else if m.Compressed && !r.deflate.noContext {
		r.fail(ErrContextLost)
		return
	}
	if m.Skipped {
		b = nil
	}
	m.Data = b
	r.msgOp, r.msgCompressed, r.msgSkip, r.msgSize = 0, false, false, 0
	r.handle(m)
	putBuf(out)
	r.release()
}

// release drops the message buffer.
func (r *FrameReader) release() {
	putBuf(r.msgBuf)
	r.msgBuf = nil
}
