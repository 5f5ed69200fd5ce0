package wstap

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// frameLog is everything a FrameReader did, for comparing two runs.
func frameLog(ext string, limit int, stream []byte, split func(*FrameReader, []byte), peak *int) string {
	var b strings.Builder
	var r *FrameReader
	r = NewFrameReader(FrameConfig{Extensions: ext, MaxMessage: limit}, func(m Message) {
		fmt.Fprintf(&b, "%v c=%v s=%v n=%d %q\n", m.Op, m.Compressed, m.Skipped, m.Size, m.Data)
		if !m.Skipped && len(m.Data) > limit && !m.Op.control() {
			panic(fmt.Sprintf("message of %d bytes over the cap %d", len(m.Data), limit))
		}
	})
	split(r, stream)
	if peak != nil {
		*peak = max(*peak, r.buffered())
	}
	fmt.Fprintf(&b, "err=%v closed=%v", r.Err(), r.Closed())
	return b.String()
}

var fuzzExtensions = []string{"", "permessage-deflate", "permessage-deflate; server_no_context_takeover", "permessage-deflate; server_max_window_bits=9"}

// FuzzFrames feeds arbitrary bytes: no panic, bounded memory, and the
// pieces the bytes come in never change what is read.
func FuzzFrames(f *testing.F) {
	f.Add(wsStream(append(handshake("s"), "2", eventText("c", "m", "chat:completion", map[string]any{"done": true}))...), uint64(1))
	f.Add(append(encodeFrame(OpText, []byte("ab"), frameOpts{mask: &[4]byte{1, 2, 3, 4}}), encodeFrame(OpContinuation, []byte("cd"), frameOpts{fin: true})...), uint64(2))
	f.Add(encodeFrame(OpText, newCompressor(false).compress([]byte("hello hello hello")), frameOpts{fin: true, rsv: 0x40}), uint64(5))
	f.Add([]byte{0x81, 127, 0, 0, 0, 0, 0, 0, 1, 0}, uint64(3))
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		ext := fuzzExtensions[seed%uint64(len(fuzzExtensions))]
		const limit = 512
		peak := 0
		whole := frameLog(ext, limit, stream, func(r *FrameReader, b []byte) { r.Write(b) }, &peak)
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		split := frameLog(ext, limit, stream, func(r *FrameReader, b []byte) {
			for len(b) > 0 {
				n := min(rng.IntN(20), len(b))
				r.Write(b[:n])
				b = b[n:]
				peak = max(peak, r.buffered())
			}
		}, &peak)
		if whole != split {
			t.Fatalf("split changed the result:\n%s\n---\n%s", whole, split)
		}
		// A message buffer of the cap's pool class, plus a window of 2^15.
		if peak > 1<<10+32<<10 {
			t.Fatalf("held %d bytes", peak)
		}
	})
}

// genStream turns fuzz bytes into messages and a valid server stream that
// carries them: fragments, interleaved control frames, masks, 16/64-bit
// lengths, compression. It returns the stream and the expected log.
func genStream(data []byte) (ext string, stream []byte, want []got) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		c := data[0]
		data = data[1:]
		return c
	}
	mode := next() % 3
	ext = fuzzExtensions[mode]
	var comp *compressor
	if mode > 0 {
		comp = newCompressor(mode == 2)
	}
	for len(data) > 0 {
		kind := next()
		n := int(next())
		if kind&0x80 != 0 {
			n = n*256 + int(next()) // up to 64 KiB
		}
		payload := make([]byte, min(n, len(data)))
		copy(payload, data)
		data = data[len(payload):]
		o := frameOpts{}
		if kind&0x40 != 0 {
			o.mask = &[4]byte{kind, byte(n), 7, 9}
		}
		if kind&0x20 != 0 {
			o.lenForm = 64
		}
		switch kind % 8 {
		case 0, 1, 2, 3, 4: // a data message, maybe fragmented and compressed
			op := OpText
			if kind%8 == 4 {
				op = OpBinary
			}
			wire := payload
			compressed := comp != nil && kind&0x10 != 0
			if compressed {
				wire = comp.compress(payload)
				o.rsv = 0x40
			}
			frags := 1 + int(kind>>2)%3
			for i := range frags {
				lo, hi := i*len(wire)/frags, (i+1)*len(wire)/frags
				o.fin = i == frags-1
				fop := op
				if i > 0 {
					fop, o.rsv = OpContinuation, 0
				}
				stream = append(stream, encodeFrame(fop, wire[lo:hi], o)...)
				if i == 0 && frags > 1 && kind&0x08 != 0 {
					ping := payload[:min(len(payload), 125)]
					stream = append(stream, encodeFrame(OpPing, ping, frameOpts{fin: true, mask: o.mask})...)
					want = append(want, got{OpPing, string(ping), false, false, int64(len(ping))})
				}
			}
			want = append(want, got{op, string(payload), compressed, false, int64(len(wire))})
		case 5, 6:
			ctl := payload[:min(len(payload), 125)]
			op := OpPing
			if kind%8 == 6 {
				op = OpPong
			}
			o.fin = true
			stream = append(stream, encodeFrame(op, ctl, o)...)
			want = append(want, got{op, string(ctl), false, false, int64(len(ctl))})
		case 7:
			if kind&0x10 != 0 { // close: the end
				ctl := payload[:min(len(payload), 125)]
				o.fin = true
				stream = append(stream, encodeFrame(OpClose, ctl, o)...)
				want = append(want, got{OpClose, string(ctl), false, false, int64(len(ctl))})
				stream = append(stream, textFrame("after close")...)
				return
			}
		}
	}
	return
}

// FuzzFrameRoundTrip generates valid streams: whatever the split, the
// reader hands out exactly the messages that were framed.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add([]byte("\x01\x05\x03hello\x0d\x04ping!\x17\x10"+strings.Repeat("compressible ", 3)), uint64(1))
	f.Add([]byte("\x02\x99\x01\x20"+strings.Repeat("z", 300)), uint64(9))
	f.Add([]byte("\x00\xc1\x01\x00"+strings.Repeat("m", 256)+"\x17\x02ok"), uint64(4))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		ext, stream, want := genStream(data)
		rng := rand.New(rand.NewPCG(seed, 3))
		for _, piece := range []int{len(stream) + 1, 1, 1 + rng.IntN(64)} {
			var out []got
			r := NewFrameReader(FrameConfig{Extensions: ext, MaxMessage: 1 << 20}, func(m Message) {
				out = append(out, got{m.Op, string(m.Data), m.Compressed, m.Skipped, m.Size})
			})
			for b := stream; len(b) > 0; {
				n := min(1+rng.IntN(piece), len(b))
				r.Write(b[:n])
				b = b[n:]
			}
			if r.Err() != nil {
				t.Fatalf("valid stream broke the reader: %v", r.Err())
			}
			if len(out) != len(want) {
				t.Fatalf("got %d messages, want %d\n%v\n%v", len(out), len(want), out, want)
			}
			for i := range out {
				if out[i] != want[i] {
					t.Fatalf("message %d = %v, want %v", i, out[i], want[i])
				}
			}
		}
	})
}

// FuzzPackets feeds arbitrary polling payloads and websocket texts through
// the Engine.IO, Socket.IO and chat-event parsers and a tracker: no panic,
// splits change nothing, the tracker stays within its caps.
func FuzzPackets(f *testing.F) {
	f.Add([]byte(pollBody), uint64(1))
	f.Add([]byte(strings.Join(chatScript("c", "m", []string{"a", "b"}, usage011([2]int{1, 2})), "\x1e")), uint64(2))
	f.Add([]byte(`42/ws,7["chat-events",{"chat_id":"c","message_id":"m","data":{"type":"chat:tasks:cancel"}}]`+"\x1e451-[\"x\"]\x1ebAAA="), uint64(3))
	f.Add([]byte(`42["events",{"chat_id":"c","message_id":"m","data":{"type":"chat:completion","data":{"usage":{"input_tokens":1e3,"output_tokens":"x"},"output":[{"type":"message","content":[{"text":1}]}]}}}]`), uint64(4))
	f.Fuzz(func(t *testing.T, body []byte, seed uint64) {
		logOf := func(feed func(fn func(EIOPacket))) string {
			var b strings.Builder
			feed(func(p EIOPacket) {
				fmt.Fprintf(&b, "%c %v %q\n", p.Type, p.Binary, p.Data)
				if p.Type != EIOMessage || p.Binary {
					return
				}
				s, ok := ParseSocketIO(p.Data)
				if !ok {
					return
				}
				fmt.Fprintf(&b, " sio %d %d %q %d\n", s.Type, s.Attachments, s.Namespace, s.ID)
				ev, ok := ParseChatEvent(s.Data)
				if ok {
					c, r := ev.AnswerText()
					fmt.Fprintf(&b, " ev %+v %q %q\n", ev, c, r)
				}
			})
			return b.String()
		}
		whole := logOf(func(fn func(EIOPacket)) { SplitPolling(body, fn) })
		rng := rand.New(rand.NewPCG(seed, 11))
		split := logOf(func(fn func(EIOPacket)) {
			r := NewPollingReader(0, fn)
			feedSplit(r, body, rng, 16)
			r.Close()
		})
		if whole != split {
			t.Fatalf("split changed the packets:\n%s\n---\n%s", whole, split)
		}

		// Through a tracker, as a polling body and as websocket texts on
		// two tabs; then everything open must end exactly once.
		ended := map[msgKey]int{}
		clk := &clock{now: time.Unix(0, 0)}
		tr := NewTracker(TrackerConfig{MaxMessages: 4, MaxFinished: 1000, Now: clk.Now, OnFinish: func(r Result) {
			ended[msgKey{r.ChatID, r.MessageID}]++
		}})
		tr.OpenPolling("sid", "u").FeedBody(body)
		a, b := tr.OpenWebSocket("u", ""), tr.OpenWebSocket("u", "")
		for seg := range bytes.SplitSeq(body, []byte{RecordSeparator}) {
			fr := textFrame(string(seg))
			feedSplit(a, fr, rng, 8)
			b.Write(fr)
		}
		if st := tr.Stats(); st.Active > 4 {
			t.Fatalf("%d messages tracked over the cap", st.Active)
		}
		a.Close()
		b.Close()
		clk.Add(time.Hour)
		tr.Sweep()
		if st := tr.Stats(); st.Active != 0 || st.Polls != 0 || st.Finished != int64(len(ended)) {
			t.Fatalf("after sweep: %+v, ended %v", st, ended)
		}
		for k, n := range ended {
			if n != 1 {
				t.Fatalf("%v ended %d times", k, n)
			}
		}
	})
}
