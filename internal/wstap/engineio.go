package wstap

import (
	"bytes"
	"encoding/base64"
)

// Engine.IO v4 packet types, as the first character of a text packet.
const (
	EIOOpen    byte = '0'
	EIOClose   byte = '1'
	EIOPing    byte = '2'
	EIOPong    byte = '3'
	EIOMessage byte = '4'
	EIOUpgrade byte = '5'
	EIONoop    byte = '6'
)

// RecordSeparator separates packets in a long-polling payload (EIO v4).
const RecordSeparator = 0x1e

// EIOPacket is one Engine.IO packet. Data aliases the input it was parsed
// from.
type EIOPacket struct {
	Type byte // EIOOpen … EIONoop
	// Binary says Data is a binary message: a websocket binary frame, or a
	// "b<base64>" polling packet (decoded). Its Type is EIOMessage.
	Binary bool
	Data   []byte
}

// ParseEngineIO reads one Engine.IO packet from a websocket text message
// (or a text packet of a polling payload): a type digit and its data, e.g.
// "2" (ping), "3probe", `0{"sid":…}`, "42[…]". False when b is not one.
func ParseEngineIO(b []byte) (EIOPacket, bool) {
	if len(b) == 0 || b[0] < EIOOpen || b[0] > EIONoop {
		return EIOPacket{}, false
	}
	return EIOPacket{Type: b[0], Data: b[1:]}, true
}

// parsePollingPacket reads one packet of a polling payload; "b…" is a
// base64 binary message.
func parsePollingPacket(b []byte) (EIOPacket, bool) {
	if len(b) > 0 && b[0] == 'b' {
		d := make([]byte, base64.StdEncoding.DecodedLen(len(b)-1))
		n, err := base64.StdEncoding.Decode(d, b[1:])
		if err != nil {
			return EIOPacket{}, false
		}
		return EIOPacket{Type: EIOMessage, Binary: true, Data: d[:n]}, true
	}
	return ParseEngineIO(b)
}

// SplitPolling calls fn for each packet of a whole long-polling payload
// (packets separated by 0x1e, binary ones as "b<base64>"), skipping any
// that do not parse. Packets alias body.
func SplitPolling(body []byte, fn func(EIOPacket)) {
	for len(body) > 0 {
		seg := body
		if i := bytes.IndexByte(body, RecordSeparator); i >= 0 {
			seg, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if p, ok := parsePollingPacket(seg); ok {
			fn(p)
		}
	}
}

// PollingReader splits one long-polling payload fed in pieces with Write;
// Close ends it (the last packet has no separator after it). A packet
// longer than its cap is skipped. Packets passed to fn are only valid
// during the call.
type PollingReader struct {
	fn   func(EIOPacket)
	max  int
	buf  *[]byte
	skip bool
	done bool
}

// NewPollingReader returns a reader calling fn for each packet; max caps
// one packet (DefaultMaxMessage when zero or less).
func NewPollingReader(max int, fn func(EIOPacket)) *PollingReader {
	if max <= 0 {
		max = DefaultMaxMessage
	}
	return &PollingReader{fn: fn, max: max}
}

// Write reads a piece of the payload. It always returns len(p), nil.
func (r *PollingReader) Write(p []byte) (int, error) {
	n := len(p)
	if r.done {
		return n, nil
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, RecordSeparator)
		if i < 0 {
			r.add(p)
			break
		}
		if r.buf == nil && !r.skip {
			r.emit(p[:i]) // the whole packet is here: no copy
		} else {
			r.add(p[:i])
			r.flush()
		}
		p = p[i+1:]
	}
	return n, nil
}

// Close reads the last packet. Later writes are ignored.
func (r *PollingReader) Close() error {
	if !r.done {
		r.flush()
		r.done = true
	}
	return nil
}

func (r *PollingReader) add(b []byte) {
	if r.skip || len(b) == 0 {
		return
	}
	have := 0
	if r.buf != nil {
		have = len(*r.buf)
	}
	if have+len(b) > r.max {
		r.skip = true
		putBuf(r.buf)
		r.buf = nil
		return
	}
	r.buf = growBuf(r.buf, len(b))
	*r.buf = append(*r.buf, b...)
}

func (r *PollingReader) flush() {
	if !r.skip && r.buf != nil {
		r.emit(*r.buf)
	}
	putBuf(r.buf)
	r.buf, r.skip = nil, false
}

func (r *PollingReader) emit(b []byte) {
	if len(b) > r.max {
		return
	}
	if p, ok := parsePollingPacket(b); ok {
		r.fn(p)
	}
}

// Socket.IO v5 packet types.
const (
	SIOConnect      byte = 0
	SIODisconnect   byte = 1
	SIOEvent        byte = 2
	SIOAck          byte = 3
	SIOConnectError byte = 4
	SIOBinaryEvent  byte = 5
	SIOBinaryAck    byte = 6
)

// SIOPacket is a Socket.IO packet: the data of an Engine.IO message
// packet. Its slices alias the input.
type SIOPacket struct {
	Type        byte // SIOConnect … SIOBinaryAck
	Attachments int  // binary attachments that follow (binary types only)
	// Namespace is the namespace, e.g. "/ws"; nil means the main
	// namespace "/".
	Namespace []byte
	ID        int64  // acknowledgement id, -1 when none
	Data      []byte // the JSON payload (may be empty)
}

// ParseSocketIO reads a Socket.IO v5 packet in its text encoding:
//
//	<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]
//
// e.g. `2["events",{…}]`, `2/ws,["events",…]`, `213["x"]`, `51-["x",{"_placeholder":true,"num":0}]`,
// `0{"sid":"…"}`. False when b is not one.
func ParseSocketIO(b []byte) (SIOPacket, bool) {
	p := SIOPacket{ID: -1}
	if len(b) == 0 || b[0] < '0' || b[0] > '6' {
		return p, false
	}
	p.Type = b[0] - '0'
	i := 1
	if p.Type == SIOBinaryEvent || p.Type == SIOBinaryAck {
		j := i
		n := 0
		for j < len(b) && b[j] >= '0' && b[j] <= '9' && j-i < 9 {
			n = n*10 + int(b[j]-'0')
			j++
		}
		if j == i || j >= len(b) || b[j] != '-' {
			return p, false
		}
		p.Attachments = n
		i = j + 1
	}
	if i < len(b) && b[i] == '/' {
		j := bytes.IndexByte(b[i:], ',')
		if j < 0 {
			p.Namespace = b[i:]
			return p, true
		}
		p.Namespace = b[i : i+j]
		i += j + 1
	}
	if i < len(b) && b[i] >= '0' && b[i] <= '9' {
		var id int64
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			if j-i >= 18 {
				return p, false
			}
			id = id*10 + int64(b[j]-'0')
			j++
		}
		p.ID = id
		i = j
	}
	p.Data = b[i:]
	return p, true
}
