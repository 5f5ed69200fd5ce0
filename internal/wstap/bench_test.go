package wstap

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// benchStream is a websocket stream of msgs answers as OpenWebUI 0.11
// sends them (chat:active, 30 growing output events, usage, done,
// chat:active false, title), and its number of events.
func benchStream(msgs int) ([]byte, int) {
	var texts []string
	texts = append(texts, handshake("bench")...)
	words := strings.Fields("The quick brown fox jumps over the lazy dog and keeps running far away ")
	for m := range msgs {
		pieces := make([]string, 30)
		for i := range pieces {
			pieces[i] = words[(m+i)%len(words)] + " "
		}
		texts = append(texts, "2")
		texts = append(texts, chatScript(fmt.Sprintf("chat-%04d", m), "5d2f1c3a-8b7e-4f60-9a1d-2c3b4e5f6a7b", pieces, usage011([2]int{120, 30}))...)
	}
	return wsStream(texts...), len(texts)
}

// BenchmarkTap measures events through the whole tap: frame reader,
// Engine.IO/Socket.IO parsing, chat event parsing, tracker, fed 32 KiB at
// a time as reverse_proxy copies. One op is one event (frame); with 3
// tabs each event arrives three times, one op per copy.
func BenchmarkTap(b *testing.B) {
	stream, events := benchStream(100)
	for _, tabs := range []int{1, 3} {
		b.Run(fmt.Sprintf("tabs=%d", tabs), func(b *testing.B) {
			b.SetBytes(int64(len(stream) / events))
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			reported := 0
			b.ResetTimer()
			start := time.Now()
			done := 0
			for done < b.N {
				tr := NewTracker(TrackerConfig{OnFinish: func(Result) { reported++ }})
				conns := make([]*Conn, tabs)
				for i := range conns {
					conns[i] = tr.OpenWebSocket("u1", "")
				}
				// The tabs' copies interleave, 32 KiB at a time.
				for p := stream; len(p) > 0; {
					n := min(32<<10, len(p))
					for _, c := range conns {
						c.Write(p[:n])
					}
					p = p[n:]
				}
				for _, c := range conns {
					c.Close()
				}
				done += events * tabs
			}
			elapsed := time.Since(start)
			b.StopTimer()
			runtime.ReadMemStats(&ms1)
			if reported == 0 {
				b.Fatal("nothing reported")
			}
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(done), "ns/event")
			b.ReportMetric(float64(done)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(done), "allocs/event")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(done), "B/event")
		})
	}
}

// BenchmarkFrameReader measures the frame reader alone, on the same stream
// split in 1,500-byte pieces (so that headers and payloads straddle
// writes).
func BenchmarkFrameReader(b *testing.B) {
	stream, _ := benchStream(100)
	n := 0
	r := NewFrameReader(FrameConfig{}, func(m Message) { n += len(m.Data) })
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for p := stream; len(p) > 0; {
			k := min(1500, len(p))
			r.Write(p[:k])
			p = p[k:]
		}
	}
	if n == 0 || r.Err() != nil {
		b.Fatal(r.Err())
	}
}

// BenchmarkParseChatEvent measures parsing one 0.11 output event.
func BenchmarkParseChatEvent(b *testing.B) {
	text := eventText("chat-0001", "5d2f1c3a-8b7e-4f60-9a1d-2c3b4e5f6a7b", "chat:completion",
		map[string]any{"output": outputItems(strings.Repeat("word ", 100), "in_progress"), "usage": usage011([2]int{120, 30})})
	data := []byte(text[2:])
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		ev, ok := parseChatEvent(unsafeString(data))
		if !ok || ev.Output == "" || !ev.Usage.Reported {
			b.Fatal("not parsed")
		}
	}
}

// TestIdleConnMemory checks what an open, idle websocket costs: well
// under 64 KiB, also after messages passed.
func TestIdleConnMemory(t *testing.T) {
	const conns = 2000
	small := wsStream(append(handshake("s"), "2", eventText("c", "m", "chat:completion", map[string]any{"content": strings.Repeat("x", 3000)}))...)
	comp := newCompressor(false)
	big := encodeFrame(OpText, comp.compress([]byte(strings.Repeat("0123456789abcdef", 4000))), frameOpts{fin: true, rsv: 0x40})
	cases := []struct {
		name, ext string
		feed      []byte
		limit     int
	}{
		{"plain", "", small, 2 << 10},
		{"deflate, no context takeover", "permessage-deflate; server_no_context_takeover", nil, 2 << 10},
		{"deflate, context takeover, 64 KB message", "permessage-deflate", big, 36 << 10},
	}
	for _, c := range cases {
		tr := NewTracker(TrackerConfig{})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		list := make([]*Conn, conns)
		for i := range list {
			list[i] = tr.OpenWebSocket("u", c.ext)
			list[i].Write(c.feed)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / conns
		t.Logf("%s: %d bytes per idle connection", c.name, per)
		if per > int64(c.limit) {
			t.Errorf("%s: %d bytes per idle connection, want ≤ %d", c.name, per, c.limit)
		}
		for _, cn := range list {
			if cn.Err() != nil {
				t.Fatal(cn.Err())
			}
		}
		runtime.KeepAlive(list)
		tr.Abandon("c", "m")
	}
}
