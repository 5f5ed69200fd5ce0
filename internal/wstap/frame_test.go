package wstap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestFrameWholeMessages(t *testing.T) {
	// The exact text frames of §5, with the Engine.IO handshake and a ping.
	ev := `42["events",{"chat_id":"<chat>","message_id":"<assistant msg>","data":{"type":"chat:completion","data":{"content":"Hi"}}}]`
	texts := append(handshake("abc"), "2", ev)
	stream := wsStream(texts...)
	var out []got
	r := collect(FrameConfig{}, &out)
	if n, err := r.Write(stream); n != len(stream) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if len(out) != len(texts) {
		t.Fatalf("got %v", out)
	}
	for i, want := range texts {
		if out[i].Op != OpText || out[i].Data != want || out[i].Size != int64(len(want)) {
			t.Errorf("message %d = %v, want %q", i, out[i], want)
		}
	}
	if r.Err() != nil || r.buffered() != 0 {
		t.Errorf("err %v, buffered %d", r.Err(), r.buffered())
	}
}

func TestFrameAnySplitSameMessages(t *testing.T) {
	big := strings.Repeat("x", 70000) // 64-bit length form
	mid := strings.Repeat("y", 300)   // 16-bit length form
	var stream []byte
	stream = append(stream, textFrame("hello")...)
	stream = append(stream, textFrame(mid)...)
	stream = append(stream, encodeFrame(OpBinary, []byte(big), frameOpts{fin: true})...)
	// Fragmented with a ping and a pong in the middle.
	stream = append(stream, encodeFrame(OpText, []byte("frag-1,"), frameOpts{})...)
	stream = append(stream, encodeFrame(OpPing, []byte("p"), frameOpts{fin: true})...)
	stream = append(stream, encodeFrame(OpContinuation, []byte("frag-2,"), frameOpts{})...)
	stream = append(stream, encodeFrame(OpPong, nil, frameOpts{fin: true})...)
	stream = append(stream, encodeFrame(OpContinuation, []byte("frag-3"), frameOpts{fin: true})...)
	stream = append(stream, textFrame("")...)

	want := []got{
		{OpText, "hello", false, false, 5},
		{OpText, mid, false, false, 300},
		{OpBinary, big, false, false, 70000},
		{OpPing, "p", false, false, 1},
		{OpPong, "", false, false, 0},
		{OpText, "frag-1,frag-2,frag-3", false, false, 20},
		{OpText, "", false, false, 0},
	}
	var whole []got
	collect(FrameConfig{}, &whole).Write(stream)
	sameGot(t, whole, want)

	var bytewise []got
	r := collect(FrameConfig{}, &bytewise)
	for i := range stream {
		r.Write(stream[i : i+1])
	}
	sameGot(t, bytewise, want)

	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		var split []got
		feedSplit(collect(FrameConfig{}, &split), stream, rng, 40)
		sameGot(t, split, want)
	}
}

func TestFrameMaskedClientToServer(t *testing.T) {
	mask := &[4]byte{0x37, 0xfa, 0x21, 0x3d}
	// RFC 6455 §5.7: a masked "Hello".
	rfc, _ := hex.DecodeString("818537fa213d7f9f4d5158")
	var out []got
	r := collect(FrameConfig{ClientToServer: true}, &out)
	r.Write(rfc)
	// Fragments with different masks, a masked ping in between, 16-bit length.
	long := strings.Repeat("0123456789", 30)
	r.Write(encodeFrame(OpText, []byte(long[:7]), frameOpts{mask: mask}))
	r.Write(encodeFrame(OpPing, []byte("ping!"), frameOpts{fin: true, mask: &[4]byte{1, 2, 3, 4}}))
	r.Write(encodeFrame(OpContinuation, []byte(long[7:]), frameOpts{fin: true, mask: &[4]byte{9, 8, 7, 6}}))
	want := []got{
		{OpText, "Hello", false, false, 5},
		{OpPing, "ping!", false, false, 5},
		{OpText, long, false, false, int64(len(long))},
	}
	sameGot(t, out, want)
}

func TestFrameNonMinimalLengths(t *testing.T) {
	var out []got
	r := collect(FrameConfig{}, &out)
	r.Write(encodeFrame(OpText, []byte("a"), frameOpts{fin: true, lenForm: 16}))
	r.Write(encodeFrame(OpText, []byte("bc"), frameOpts{fin: true, lenForm: 64}))
	sameGot(t, out, []got{{OpText, "a", false, false, 1}, {OpText, "bc", false, false, 2}})
}

func TestFrameOverCapSkippedInStep(t *testing.T) {
	const limit = 1000
	big := bytes.Repeat([]byte("z"), 5000)
	var stream []byte
	stream = append(stream, textFrame("before")...)
	stream = append(stream, encodeFrame(OpText, big, frameOpts{fin: true})...)
	// Over the cap only across fragments, with a control frame inside.
	stream = append(stream, encodeFrame(OpBinary, big[:600], frameOpts{})...)
	stream = append(stream, encodeFrame(OpPing, []byte("in"), frameOpts{fin: true})...)
	stream = append(stream, encodeFrame(OpContinuation, big[:600], frameOpts{fin: true})...)
	stream = append(stream, textFrame("after")...)
	want := []got{
		{OpText, "before", false, false, 6},
		{OpText, "", false, true, 5000},
		{OpPing, "in", false, false, 2},
		{OpBinary, "", false, true, 1200},
		{OpText, "after", false, false, 5},
	}
	for _, piece := range []int{1, 7, 100, 100000} {
		var out []got
		r := NewFrameReader(FrameConfig{MaxMessage: limit}, func(m Message) {
			out = append(out, got{m.Op, string(m.Data), m.Compressed, m.Skipped, m.Size})
		})
		peak := 0
		for b := stream; len(b) > 0; {
			n := min(piece, len(b))
			r.Write(b[:n])
			b = b[n:]
			peak = max(peak, r.buffered())
		}
		sameGot(t, out, want)
		// Never more than the cap rounded up to a pool class.
		if peak > 8<<10 {
			t.Errorf("piece %d: buffered up to %d bytes", piece, peak)
		}
		if r.buffered() != 0 {
			t.Errorf("piece %d: still holds %d bytes", piece, r.buffered())
		}
	}
}

func TestFrameProtocolViolationsBreak(t *testing.T) {
	long := bytes.Repeat([]byte("c"), 126)
	cases := map[string][]byte{
		"reserved opcode":          encodeFrame(Opcode(3), nil, frameOpts{fin: true}),
		"reserved control opcode":  encodeFrame(Opcode(0xB), nil, frameOpts{fin: true}),
		"RSV2":                     encodeFrame(OpText, []byte("x"), frameOpts{fin: true, rsv: 0x20}),
		"RSV3":                     encodeFrame(OpText, []byte("x"), frameOpts{fin: true, rsv: 0x10}),
		"RSV1 without extension":   encodeFrame(OpText, []byte("x"), frameOpts{fin: true, rsv: 0x40}),
		"lone continuation":        encodeFrame(OpContinuation, []byte("x"), frameOpts{fin: true}),
		"fragmented ping":          encodeFrame(OpPing, []byte("x"), frameOpts{}),
		"long close":               encodeFrame(OpClose, long, frameOpts{fin: true}),
		"text inside fragmented":   append(encodeFrame(OpText, []byte("a"), frameOpts{}), textFrame("b")...),
		"64-bit length top bit":    {0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 1},
		"binary inside fragmented": append(encodeFrame(OpText, []byte("a"), frameOpts{}), encodeFrame(OpBinary, nil, frameOpts{fin: true})...),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			var out []got
			r := collect(FrameConfig{}, &out)
			stream := append(append(textFrame("ok"), bad...), textFrame("never")...)
			for i := range stream { // split must not matter
				r.Write(stream[i : i+1])
			}
			if !errors.Is(r.Err(), ErrProtocol) {
				t.Fatalf("Err = %v", r.Err())
			}
			if len(out) != 1 || out[0].Data != "ok" {
				t.Errorf("messages %v", out)
			}
			if n, err := r.Write(textFrame("still")); n != len(textFrame("still")) || err != nil || len(out) != 1 {
				t.Errorf("after breaking: %d %v %v", n, err, out)
			}
			if r.buffered() != 0 {
				t.Errorf("broken reader holds %d bytes", r.buffered())
			}
		})
	}
}

func TestFrameCloseEndsReading(t *testing.T) {
	var out []got
	r := collect(FrameConfig{}, &out)
	r.Write(textFrame("a"))
	r.Write(encodeFrame(OpClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}, frameOpts{fin: true}))
	r.Write(textFrame("after close"))
	if !r.Closed() || r.Err() != nil {
		t.Fatalf("closed %v err %v", r.Closed(), r.Err())
	}
	sameGot(t, out, []got{{OpText, "a", false, false, 1}, {OpClose, "\x03\xe8bye", false, false, 5}})
}

func TestParseExtensions(t *testing.T) {
	ok := map[string]DeflateParams{
		"":                   {ServerMaxWindowBits: 15, ClientMaxWindowBits: 15},
		"permessage-deflate": {Enabled: true, ServerMaxWindowBits: 15, ClientMaxWindowBits: 15},
		// Both windows negotiated down.
		"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12": {Enabled: true, ServerMaxWindowBits: 12, ClientMaxWindowBits: 12},
		`Permessage-Deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits="10"; client_max_window_bits`: {
			Enabled: true, ServerNoContextTakeover: true, ClientNoContextTakeover: true, ServerMaxWindowBits: 10, ClientMaxWindowBits: 15},
	}
	for h, want := range ok {
		p, err := ParseExtensions(h)
		if err != nil || p != want {
			t.Errorf("ParseExtensions(%q) = %+v, %v; want %+v", h, p, err, want)
		}
	}
	for _, h := range []string{
		"x-webkit-deflate-frame",
		"permessage-deflate, permessage-deflate",
		"permessage-deflate; server_max_window_bits",
		"permessage-deflate; server_max_window_bits=7",
		"permessage-deflate; client_max_window_bits=16",
		"permessage-deflate; server_no_context_takeover=1",
		"permessage-deflate; mystery",
		"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
	} {
		if _, err := ParseExtensions(h); !errors.Is(err, ErrExtension) {
			t.Errorf("ParseExtensions(%q) err = %v", h, err)
		}
		var out []got
		r := collect(FrameConfig{Extensions: h}, &out)
		r.Write(textFrame("x"))
		if !errors.Is(r.Err(), ErrExtension) || len(out) != 0 {
			t.Errorf("reader with %q: err %v, %v", h, r.Err(), out)
		}
	}
}

func TestDeflateContextTakeover(t *testing.T) {
	msgs := []string{
		eventText("c1", "m1", "chat:completion", map[string]any{"output": outputItems("Hello there, how are you today?", "in_progress")}),
		eventText("c1", "m1", "chat:completion", map[string]any{"output": outputItems("Hello there, how are you today? I am fine.", "in_progress")}),
		"2",
		eventText("c1", "m1", "chat:completion", map[string]any{"done": true, "output": outputItems("Hello there, how are you today? I am fine.", "completed")}),
	}
	comp := newCompressor(false)
	var stream []byte
	var want []got
	for i, m := range msgs {
		c := comp.compress([]byte(m))
		if i == 1 && len(c) > len(m)/3 {
			t.Fatalf("second message compressed to %d of %d: context not taken over", len(c), len(m))
		}
		if i == 3 {
			// Fragmented: RSV1 on the first frame only, a pong between.
			stream = append(stream, encodeFrame(OpText, c[:5], frameOpts{rsv: 0x40})...)
			stream = append(stream, encodeFrame(OpPong, nil, frameOpts{fin: true})...)
			stream = append(stream, encodeFrame(OpContinuation, c[5:], frameOpts{fin: true})...)
			want = append(want, got{OpPong, "", false, false, 0})
		} else {
			stream = append(stream, encodeFrame(OpText, c, frameOpts{fin: true, rsv: 0x40})...)
		}
		want = append(want, got{OpText, m, true, false, int64(len(c))})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, piece := range []int{0, 1, 3, 50} {
		var out []got
		r := collect(FrameConfig{Extensions: "permessage-deflate"}, &out)
		if piece == 0 {
			r.Write(stream)
		} else {
			feedSplit(r, stream, rng, piece)
		}
		sameGot(t, out, want)
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
		if d := cap(r.deflate.dict); d == 0 || d > 32<<10 {
			t.Errorf("window kept: %d bytes", d)
		}
	}
	// Without the window the second message cannot be read.
	var out []got
	r := collect(FrameConfig{Extensions: "permessage-deflate; server_no_context_takeover"}, &out)
	r.Write(stream)
	if r.Err() == nil && len(out) > 1 && out[1].Data == msgs[1] {
		t.Error("second message inflated without the first one's window")
	}
}

func TestDeflateNoContextTakeover(t *testing.T) {
	comp := newCompressor(true)
	var out []got
	r := collect(FrameConfig{Extensions: "permessage-deflate; server_no_context_takeover"}, &out)
	var want []got
	for _, m := range []string{"aaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaa", "bbb"} {
		c := comp.compress([]byte(m))
		r.Write(encodeFrame(OpText, c, frameOpts{fin: true, rsv: 0x40}))
		want = append(want, got{OpText, m, true, false, int64(len(c))})
		if r.buffered() != 0 {
			t.Errorf("no context takeover, yet %d bytes kept", r.buffered())
		}
	}
	// Uncompressed messages may be mixed in (RSV1 clear).
	r.Write(textFrame("plain"))
	want = append(want, got{OpText, "plain", false, false, 5})
	sameGot(t, out, want)
}

// zlibMessages are three messages compressed by zlib (an independent
// implementation) as raw deflate with sync flushes and context takeover,
// tails removed, with a 2^10 window:
//
//	c = zlib.compressobj(9, zlib.DEFLATED, -10, 9)
//	c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)  # minus 00 00 ff ff
var zlibMessages = []string{
	"62e8925c6cb4c7fb6acabb5a9e69aaebed4e843f2cf8d529b1c870b7d795e4b735dc5355d6d91e0f7b90ffb3437ca1c12ecfcb496faab9a628afb539167a3fef47bbd802fd9d1e97125f57714e565a637d34e45eeef736d1f97a3bdc2f26bcaae498a4b8daea48f0dd9c6fad22f374b7bb5d887f59c13e516195e5e1a03bd95f5b84e7ea6c733d1ff7a29c6d82fc4a8b4381b7b3be340bcdd1deea722ef679196bbfdc0af38301b7323f3709ced6dae27c36e659294b9fec72b303fe37333e350accd2dcec7426fa690973afcc32d3fd7e37d23f36f0cfd4d8e4783aea4931538ff452937dbed7d33ed4f3cd50dfe8702af2711163b7d412e3bd3ed752dfd7f14e57db607f32e25121c3a8d747bd3eeaf551af0f57af0300",
	"1a0ddc51afd3c2eb25899939baf969bac5a9c9f97929bab9a9c5c589e9a9a3413eea755a781d00",
	"32318a564a2d4bcd2b2956d2a9564ace482c89cf4c51b2524a56d25182263d88402e502025b12451c9aa5aa9a4b22015a406a8da2a393fb72027b524333f0f49414a7e1e50414951696a6d6d6dec70b10300",
}

func zlibPlain() []string {
	m1 := make([]byte, 1500)
	for i := range m1 {
		m1[i] = byte(i * 7919 % 251)
	}
	m2 := string(m1[900:]) + "tail-of-second-message" + string(m1[900:])
	m3 := strings.Repeat(`42["events",{"chat_id":"c","message_id":"m","data":{"type":"chat:completion","data":{"done":true}}}]`, 3)
	return []string{string(m1), m2, m3}
}

func TestDeflateZlibWindowBits(t *testing.T) {
	plain := zlibPlain()
	var out []got
	r := collect(FrameConfig{Extensions: "permessage-deflate; server_max_window_bits=10"}, &out)
	for i, h := range zlibMessages {
		c, _ := hex.DecodeString(h)
		r.Write(encodeFrame(OpText, c, frameOpts{fin: true, rsv: 0x40}))
		if len(out) != i+1 || out[i].Data != plain[i] {
			t.Fatalf("message %d: %v (err %v)", i, out, r.Err())
		}
		if cap(r.deflate.dict) > 1<<10 {
			t.Errorf("window of 2^10 kept as %d bytes", cap(r.deflate.dict))
		}
	}
	// The client_ parameters apply to the other direction only.
	var c2s []got
	r = collect(FrameConfig{Extensions: "permessage-deflate; client_no_context_takeover; client_max_window_bits=9", ClientToServer: false}, &c2s)
	for _, h := range zlibMessages {
		c, _ := hex.DecodeString(h)
		r.Write(encodeFrame(OpText, c, frameOpts{fin: true, rsv: 0x40}))
	}
	if len(c2s) != 3 || c2s[2].Data != plain[2] || len(r.deflate.dict) != len(plain[0])+len(plain[1])+len(plain[2]) {
		t.Errorf("server direction with client_ params: %v, %v", c2s, r.Err())
	}
}

func TestDeflateCaps(t *testing.T) {
	// A small message that inflates over the cap is skipped; the window
	// still follows it, so the next message reads right.
	bomb := bytes.Repeat([]byte("A"), 50000)
	comp := newCompressor(false)
	var out []got
	r := collect(FrameConfig{Extensions: "permessage-deflate", MaxMessage: 10000}, &out)
	c1 := comp.compress(bomb)
	r.Write(encodeFrame(OpText, c1, frameOpts{fin: true, rsv: 0x40}))
	c2 := comp.compress(bomb[:5000])
	r.Write(encodeFrame(OpText, c2, frameOpts{fin: true, rsv: 0x40}))
	sameGot(t, out, []got{{OpText, "", true, true, int64(len(c1))}, {OpText, string(bomb[:5000]), true, false, int64(len(c2))}})

	// A compressed message over the cap on the wire, with context
	// takeover, loses the window: the reader stops.
	noise := make([]byte, 30000)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	out = nil
	r = collect(FrameConfig{Extensions: "permessage-deflate", MaxMessage: 10000}, &out)
	r.Write(encodeFrame(OpText, comp.compress(noise), frameOpts{fin: true, rsv: 0x40}))
	if !errors.Is(r.Err(), ErrContextLost) {
		t.Errorf("err = %v", r.Err())
	}
	// Without context takeover it is skipped and reading goes on.
	ncomp := newCompressor(true)
	out = nil
	r = collect(FrameConfig{Extensions: "permessage-deflate; server_no_context_takeover", MaxMessage: 10000}, &out)
	cn := ncomp.compress(noise)
	r.Write(encodeFrame(OpText, cn, frameOpts{fin: true, rsv: 0x40}))
	r.Write(encodeFrame(OpText, ncomp.compress([]byte("next")), frameOpts{fin: true, rsv: 0x40}))
	if r.Err() != nil || len(out) != 2 || !out[0].Skipped || out[1].Data != "next" {
		t.Errorf("no takeover: %v %v", out, r.Err())
	}
	// Garbage with RSV1 breaks the reader.
	out = nil
	r = collect(FrameConfig{Extensions: "permessage-deflate"}, &out)
	r.Write(encodeFrame(OpText, []byte{0xff, 0xff, 0xff}, frameOpts{fin: true, rsv: 0x40}))
	if !errors.Is(r.Err(), ErrInflate) || len(out) != 0 {
		t.Errorf("garbage: %v %v", out, r.Err())
	}
}
