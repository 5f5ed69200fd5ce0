package wstap

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// frameOpts shape one encoded frame.
type frameOpts struct {
	fin     bool
	rsv     byte // RSV bits, already shifted (0x40 = RSV1)
	mask    *[4]byte
	lenForm int // 0: minimal; 16 or 64: force that extended length form
}

// encodeFrame writes one RFC 6455 frame.
func encodeFrame(op Opcode, payload []byte, o frameOpts) []byte {
	var b bytes.Buffer
	b0 := byte(op) | o.rsv
	if o.fin {
		b0 |= 0x80
	}
	b.WriteByte(b0)
	var m byte
	if o.mask != nil {
		m = 0x80
	}
	n := len(payload)
	switch {
	case o.lenForm == 64 || (o.lenForm == 0 && n > 0xffff):
		b.WriteByte(m | 127)
		binary.Write(&b, binary.BigEndian, uint64(n))
	case o.lenForm == 16 || (o.lenForm == 0 && n > 125):
		b.WriteByte(m | 126)
		binary.Write(&b, binary.BigEndian, uint16(n))
	default:
		b.WriteByte(m | byte(n))
	}
	if o.mask != nil {
		b.Write(o.mask[:])
		for i, c := range payload {
			b.WriteByte(c ^ o.mask[i%4])
		}
	} else {
		b.Write(payload)
	}
	return b.Bytes()
}

// textFrame is a whole unmasked text message in one frame.
func textFrame(s string) []byte {
	return encodeFrame(OpText, []byte(s), frameOpts{fin: true})
}

// compressor is the sending side of permessage-deflate, with or without
// context takeover.
type compressor struct {
	noContext bool
	buf       bytes.Buffer
	w         *flate.Writer
}

func newCompressor(noContext bool) *compressor {
	c := &compressor{noContext: noContext}
	c.w, _ = flate.NewWriter(&c.buf, flate.BestSpeed)
	return c
}

// compress returns one message's compressed payload, without the
// trailing 00 00 ff ff (RFC 7692 §7.2.1).
func (c *compressor) compress(msg []byte) []byte {
	c.buf.Reset()
	if c.noContext {
		c.w.Reset(&c.buf)
	}
	c.w.Write(msg)
	c.w.Flush()
	out := bytes.Clone(c.buf.Bytes())
	if !bytes.HasSuffix(out, []byte{0, 0, 0xff, 0xff}) {
		panic("no sync flush tail")
	}
	return out[:len(out)-4]
}

// got is what a FrameReader handed out, in a comparable form.
type got struct {
	Op         Opcode
	Data       string
	Compressed bool
	Skipped    bool
	Size       int64
}

func (g got) String() string {
	d := g.Data
	if len(d) > 40 {
		d = d[:40] + fmt.Sprintf("…(%d)", len(g.Data))
	}
	return fmt.Sprintf("{%v %q c=%v s=%v n=%d}", g.Op, d, g.Compressed, g.Skipped, g.Size)
}

// collect returns a reader that records every message into *out.
func collect(cfg FrameConfig, out *[]got) *FrameReader {
	return NewFrameReader(cfg, func(m Message) {
		*out = append(*out, got{m.Op, string(m.Data), m.Compressed, m.Skipped, m.Size})
	})
}

// feedSplit writes b to w in random pieces (sizes 0..maxPiece).
func feedSplit(w interface{ Write([]byte) (int, error) }, b []byte, rng *rand.Rand, maxPiece int) {
	for len(b) > 0 {
		n := min(rng.IntN(maxPiece+1), len(b))
		w.Write(b[:n])
		b = b[n:]
	}
}

func sameGot(t *testing.T, a, b []got) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("got %d messages, want %d:\n%v\n%v", len(a), len(b), a, b)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("message %d = %v, want %v", i, a[i], b[i])
		}
	}
}

// Socket.IO texts as OpenWebUI 0.11 sends them (§5): compact JSON.

func eventText(chat, msg, typ string, data any) string {
	ev := map[string]any{"chat_id": chat, "message_id": msg, "data": map[string]any{"type": typ}}
	if data != nil {
		ev["data"].(map[string]any)["data"] = data
	}
	b, _ := json.Marshal([]any{"events", ev})
	return "42" + string(b)
}

func outputItems(text string, status string) []any {
	return []any{map[string]any{
		"type": "message", "id": "msg_1", "status": status, "role": "assistant",
		"content": []any{map[string]any{"type": "output_text", "text": text}},
	}}
}

// usage011 is a merge_usage result after calls with the given counts
// (0.10+): input/output summed, prompt/completion the last call's.
func usage011(calls ...[2]int) map[string]any {
	var in, out int
	for _, c := range calls {
		in += c[0]
		out += c[1]
	}
	last := calls[len(calls)-1]
	return map[string]any{
		"prompt_tokens": last[0], "completion_tokens": last[1],
		"input_tokens": in, "output_tokens": out, "total_tokens": in + out,
	}
}

// chatScript is the socket.io text messages of one streamed answer in
// OpenWebUI 0.11: chat:active, output pieces, usage, done, chat:active
// false, title.
func chatScript(chat, msg string, pieces []string, usage map[string]any) []string {
	var s []string
	s = append(s, eventText(chat, msg, "chat:active", map[string]any{"active": true, "folder_id": nil}))
	text := ""
	for _, p := range pieces {
		text += p
		s = append(s, eventText(chat, msg, "chat:completion", map[string]any{"output": outputItems(text, "in_progress")}))
	}
	if usage != nil {
		s = append(s, eventText(chat, msg, "chat:completion", map[string]any{"usage": usage}))
	}
	done := map[string]any{"done": true, "output": outputItems(text, "completed"), "title": "New Chat"}
	if usage != nil {
		done["usage"] = usage
	}
	s = append(s, eventText(chat, msg, "chat:completion", done))
	s = append(s, eventText(chat, msg, "chat:active", map[string]any{"active": false, "folder_id": nil}))
	s = append(s, eventText(chat, msg, "chat:title", "New Chat"))
	return s
}

// wsStream frames texts as the server's websocket stream.
func wsStream(texts ...string) []byte {
	var b []byte
	for _, t := range texts {
		b = append(b, textFrame(t)...)
	}
	return b
}

// handshake is what python-engineio/python-socketio send first on a
// websocket (EIO 4): the open packet, then the namespace CONNECT answer.
func handshake(sid string) []string {
	return []string{
		`0{"sid":"` + sid + `","upgrades":[],"pingTimeout":20000,"pingInterval":25000,"maxPayload":1000000}`,
		`40{"sid":"` + strings.Repeat("x", 20) + `"}`,
	}
}
