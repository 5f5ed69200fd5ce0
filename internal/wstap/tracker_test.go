package wstap

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/openwebui"
)

// clock is a settable clock for trackers.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// recorder collects results.
type recorder struct {
	mu      sync.Mutex
	results []Result
}

func (r *recorder) add(res Result) {
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
}

func (r *recorder) all() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.results...)
}

func newTestTracker(cfg TrackerConfig) (*Tracker, *recorder, *clock) {
	rec := &recorder{}
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cfg.OnFinish = rec.add
	cfg.Now = clk.Now
	return NewTracker(cfg), rec, clk
}

func one(t *testing.T, rec *recorder) Result {
	t.Helper()
	rs := rec.all()
	if len(rs) != 1 {
		t.Fatalf("got %d results: %+v", len(rs), rs)
	}
	return rs[0]
}

func TestTrackerWebChat(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	c := tr.OpenWebSocket("u1", "")
	texts := append(handshake("s1"), "2")
	texts = append(texts, chatScript("c1", "m1", []string{"Hel", "lo ", "world"}, usage011([2]int{20, 5}, [2]int{30, 7}))...)
	c.Write(wsStream(texts...))
	r := one(t, rec)
	want := openwebui.Usage{Input: 50, Output: 12, Reported: true}
	if r.ChatID != "c1" || r.MessageID != "m1" || r.UserID != "u1" || r.Outcome != Done ||
		r.Usage != want || r.Content != "Hello world" || r.Error != "" || r.Events != 5 {
		t.Errorf("result %+v", r)
	}
	if st := tr.Stats(); st.Active != 0 || st.Finished != 1 || st.Late != 1 || st.Events != int64(len(texts)-3) {
		t.Errorf("stats %+v", st) // chat:title after done is late
	}
	c.Close()
	tr.Sweep()
	if len(rec.all()) != 1 {
		t.Error("reported again")
	}
}

func TestTrackerThreeTabsOnce(t *testing.T) {
	script := chatScript("c1", "m1", []string{"a", "b", "c", "d"}, usage011([2]int{10, 4}))
	for seed := range uint64(30) {
		tr, rec, _ := newTestTracker(TrackerConfig{})
		rng := rand.New(rand.NewPCG(seed, 99))
		tabs := []*Conn{tr.OpenWebSocket("u1", ""), tr.OpenWebSocket("u1", ""), tr.OpenWebSocket("u1", "")}
		streams := make([][]byte, len(tabs))
		for i := range tabs {
			streams[i] = wsStream(script...)
		}
		// Interleave the tabs' bytes in random pieces.
		for {
			live := 0
			for i, c := range tabs {
				if len(streams[i]) == 0 {
					continue
				}
				live++
				n := min(1+rng.IntN(60), len(streams[i]))
				c.Write(streams[i][:n])
				streams[i] = streams[i][n:]
			}
			if live == 0 {
				break
			}
		}
		r := one(t, rec)
		if r.Outcome != Done || r.Usage != (openwebui.Usage{Input: 10, Output: 4, Reported: true}) || r.Content != "abcd" {
			t.Fatalf("seed %d: %+v", seed, r)
		}
	}
}

func TestTrackerStaleCopiesDoNotShrink(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	a, b := tr.OpenWebSocket("u1", ""), tr.OpenWebSocket("u1", "")
	a.Write(textFrame(eventText("c", "m", "chat:completion", map[string]any{"output": outputItems("long answer", "in_progress")})))
	a.Write(textFrame(eventText("c", "m", "chat:completion", map[string]any{"usage": usage011([2]int{9, 9})})))
	// Tab b lags: its older copies arrive now.
	b.Write(textFrame(eventText("c", "m", "chat:completion", map[string]any{"output": outputItems("long", "in_progress")})))
	b.Write(textFrame(eventText("c", "m", "chat:completion", map[string]any{"usage": usage011([2]int{9, 1})})))
	a.Write(textFrame(eventText("c", "m", "chat:tasks:cancel", nil)))
	r := one(t, rec)
	if r.Outcome != Stopped || r.Content != "long answer" || r.Usage.Output != 9 {
		t.Errorf("result %+v", r)
	}
}

func TestTrackerStoppedKeepsPartialContent(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	c := tr.OpenWebSocket("u1", "")
	c.Write(wsStream(
		eventText("c1", "m1", "chat:active", map[string]any{"active": true}),
		eventText("c1", "m1", "chat:completion", map[string]any{"output": outputItems("Once upon", "in_progress")}),
		eventText("c1", "m1", "chat:completion", map[string]any{"output": outputItems("Once upon a time", "in_progress")}),
	))
	if tr.Stop("c1", "u2") != 0 {
		t.Fatal("another user's Stop marked the message")
	}
	if tr.Stop("c1", "u1") != 1 {
		t.Fatal("Stop found no message")
	}
	c.Write(wsStream(
		eventText("c1", "m1", "chat:tasks:cancel", nil),
		eventText("c1", "m1", "chat:active", map[string]any{"active": false}),
	))
	r := one(t, rec)
	if r.Outcome != Stopped || r.Usage.Reported || r.Content != "Once upon a time" {
		t.Errorf("result %+v", r)
	}
}

func TestTrackerStopGraceAndLateDone(t *testing.T) {
	tr, rec, clk := newTestTracker(TrackerConfig{StopGrace: 5 * time.Second})
	c := tr.OpenWebSocket("u1", "")
	c.Write(textFrame(eventText("c1", "m1", "chat:completion", map[string]any{"content": "partial"})))
	c.Write(textFrame(eventText("c1", "m2", "chat:completion", map[string]any{"content": "other"})))
	c.Write(textFrame(eventText("c2", "m3", "chat:completion", map[string]any{"content": "other chat"})))
	if n := tr.Stop("c1", "u1"); n != 2 {
		t.Fatalf("Stop = %d", n)
	}
	clk.Add(4 * time.Second)
	tr.Sweep()
	if len(rec.all()) != 0 {
		t.Fatalf("ended before StopGrace: %+v", rec.all())
	}
	// m2's done still arrives: it was not stopped in time.
	c.Write(textFrame(eventText("c1", "m2", "chat:completion", map[string]any{"done": true, "content": "other!", "usage": map[string]any{"prompt_tokens": 3, "completion_tokens": 2}})))
	clk.Add(time.Second)
	tr.Sweep()
	rs := rec.all()
	if len(rs) != 2 || rs[0].MessageID != "m2" || rs[0].Outcome != Done || rs[0].Usage.Output != 2 ||
		rs[1].MessageID != "m1" || rs[1].Outcome != Stopped || rs[1].Content != "partial" {
		t.Errorf("results %+v", rs)
	}
	if tr.Stats().Active != 1 {
		t.Error("the other chat's message should still be open")
	}
}

func TestTrackerErrors(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	c := tr.OpenWebSocket("u1", "")
	// A provider failure before streaming (main.py): error, then cancel.
	c.Write(wsStream(
		eventText("c1", "m1", "chat:message:error", map[string]any{"error": map[string]any{"content": "402: balance too low"}}),
		eventText("c1", "m1", "chat:tasks:cancel", nil),
	))
	// An error chunk mid-stream, then done.
	c.Write(wsStream(
		eventText("c1", "m2", "chat:completion", map[string]any{"output": outputItems("so far", "in_progress")}),
		eventText("c1", "m2", "chat:completion", map[string]any{"error": map[string]any{"message": "upstream reset"}}),
		eventText("c1", "m2", "chat:completion", map[string]any{"done": true, "output": outputItems("so far", "completed")}),
	))
	rs := rec.all()
	if len(rs) != 2 || rs[0].Outcome != Errored || rs[0].Error != "402: balance too low" || rs[0].Content != "" ||
		rs[1].Outcome != Errored || rs[1].Error != "upstream reset" || rs[1].Content != "so far" {
		t.Errorf("results %+v", rs)
	}
}

func TestTrackerCancelBeforeAnyOutput(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	c := tr.OpenWebSocket("u1", "")
	c.Write(wsStream(
		eventText("c1", "m1", "chat:active", map[string]any{"active": true}),
		eventText("c1", "m1", "status", map[string]any{"description": "Searching the web"}),
		eventText("c1", "m1", "chat:tasks:cancel", nil),
	))
	r := one(t, rec)
	if r.Outcome != Stopped || r.Content != "" || r.Usage.Reported {
		t.Errorf("result %+v", r)
	}
}

func TestTrackerOrphanedByClosedTabs(t *testing.T) {
	tr, rec, clk := newTestTracker(TrackerConfig{OrphanGrace: 30 * time.Second, IdleTimeout: time.Hour})
	a, b := tr.OpenWebSocket("u1", ""), tr.OpenWebSocket("u1", "")
	ev := textFrame(eventText("c1", "m1", "chat:completion", map[string]any{"output": outputItems("abc", "in_progress")}))
	a.Write(ev)
	b.Write(ev)
	a.Close()
	a.Close() // idempotent
	clk.Add(time.Minute)
	tr.Sweep()
	if len(rec.all()) != 0 {
		t.Fatal("ended while tab b still carries it")
	}
	b.Close()
	clk.Add(20 * time.Second)
	tr.Sweep()
	if len(rec.all()) != 0 {
		t.Fatal("ended before OrphanGrace")
	}
	// A reconnecting tab picks it up again.
	c := tr.OpenWebSocket("u1", "")
	c.Write(textFrame(eventText("c1", "m1", "chat:completion", map[string]any{"output": outputItems("abcdef", "in_progress")})))
	clk.Add(20 * time.Second)
	tr.Sweep()
	if len(rec.all()) != 0 {
		t.Fatal("ended although a new connection carries it")
	}
	c.Close()
	clk.Add(30 * time.Second)
	tr.Sweep()
	r := one(t, rec)
	if r.Outcome != Abandoned || r.Content != "abcdef" {
		t.Errorf("result %+v", r)
	}
}

func TestTrackerIdleTimeoutAndAbandon(t *testing.T) {
	tr, rec, clk := newTestTracker(TrackerConfig{IdleTimeout: time.Minute})
	c := tr.OpenWebSocket("u1", "")
	c.Write(textFrame(eventText("c1", "m1", "chat:completion", map[string]any{"content": "x"})))
	c.Write(textFrame(eventText("c1", "m2", "chat:completion", map[string]any{"content": "y"})))
	clk.Add(50 * time.Second)
	// Any event of the message keeps it alive, status ones too.
	c.Write(textFrame(eventText("c1", "m2", "status", map[string]any{"description": "Running tool"})))
	clk.Add(10 * time.Second)
	tr.Sweep()
	if rs := rec.all(); len(rs) != 1 || rs[0].MessageID != "m1" || rs[0].Outcome != Abandoned {
		t.Fatalf("results %+v", rs)
	}
	if !tr.Abandon("c1", "m2") || tr.Abandon("c1", "m2") || tr.Abandon("c9", "m9") {
		t.Error("Abandon answers")
	}
	if rs := rec.all(); len(rs) != 2 || rs[1].MessageID != "m2" || rs[1].Outcome != Abandoned || rs[1].Content != "y" {
		t.Errorf("results %+v", rs)
	}
}

func TestTrackerChatInactiveEndsOpenMessages(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	c := tr.OpenWebSocket("u1", "")
	c.Write(wsStream(
		eventText("c1", "m1", "chat:completion", map[string]any{"content": "one"}),
		eventText("c1", "m2", "chat:completion", map[string]any{"content": "two"}),
		eventText("c2", "m3", "chat:completion", map[string]any{"content": "three"}),
		eventText("c1", "m1", "chat:active", map[string]any{"active": true}),
	))
	if len(rec.all()) != 0 {
		t.Fatal("active true ended something")
	}
	c.Write(textFrame(eventText("c1", "m1", "chat:active", map[string]any{"active": false})))
	rs := rec.all()
	if len(rs) != 2 || rs[0].Outcome != Abandoned || rs[1].Outcome != Abandoned || tr.Stats().Active != 1 {
		t.Errorf("results %+v", rs)
	}
}

func TestTrackerEvictsOldest(t *testing.T) {
	tr, rec, clk := newTestTracker(TrackerConfig{MaxMessages: 3, MaxFinished: 2})
	c := tr.OpenWebSocket("u1", "")
	for i := range 5 {
		clk.Add(time.Second)
		c.Write(textFrame(eventText("c", fmt.Sprint("m", i), "chat:completion", map[string]any{"content": fmt.Sprint(i)})))
		if i == 1 {
			// m0 gets an event: m1 is now the oldest.
			c.Write(textFrame(eventText("c", "m0", "chat:completion", map[string]any{"content": "0!"})))
		}
	}
	rs := rec.all()
	if len(rs) != 2 || rs[0].MessageID != "m1" || rs[1].MessageID != "m0" || rs[0].Outcome != Abandoned || rs[1].Content != "0!" {
		t.Fatalf("results %+v", rs)
	}
	if st := tr.Stats(); st.Active != 3 {
		t.Errorf("stats %+v", st)
	}
	// Ended keys are remembered up to MaxFinished, then forgotten oldest first.
	c.Write(textFrame(eventText("c", "m0", "chat:completion", map[string]any{"done": true})))
	if st := tr.Stats(); st.Late != 1 {
		t.Errorf("stats %+v", st)
	}
	c.Write(textFrame(eventText("c", "m2", "chat:completion", map[string]any{"done": true})))
	c.Write(textFrame(eventText("c", "m1", "chat:completion", map[string]any{"done": true})))
	rs = rec.all()
	if st := tr.Stats(); st.Late != 1 || len(rs) != 4 || rs[2].MessageID != "m2" || rs[3].MessageID != "m1" || rs[3].Outcome != Done {
		t.Errorf("stats %+v, results %+v", st, rs)
	}
}

func TestTrackerExpectReopens(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	c := tr.OpenWebSocket("u1", "")
	done := textFrame(eventText("c1", "m1", "chat:completion", map[string]any{"done": true, "content": "first", "usage": map[string]any{"input_tokens": 1, "output_tokens": 1}}))
	c.Write(done)
	c.Write(done) // another tab's copy
	if len(rec.all()) != 1 {
		t.Fatal("copy counted")
	}
	tr.Expect("c1", "m1") // "continue" on the same assistant message
	c.Write(textFrame(eventText("c1", "m1", "chat:completion", map[string]any{"done": true, "content": "first, then more", "usage": map[string]any{"input_tokens": 5, "output_tokens": 3}})))
	rs := rec.all()
	if len(rs) != 2 || rs[1].Content != "first, then more" || rs[1].Usage.Input != 5 {
		t.Errorf("results %+v", rs)
	}
}

func TestTrackerModelAndInternalAndUser(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	anon := tr.OpenWebSocket("", "")
	known := tr.OpenWebSocket("u7", "")
	anon.Write(textFrame(`42["events",{"chat_id":"c","message_id":"m","internal":true,"data":{"type":"chat:completion","data":{"id":"x","model":"llama3","choices":[{"message":{"content":"Hi"}}],"usage":{"prompt_eval_count":4,"eval_count":2}}}}]`))
	known.Write(textFrame(`42["events",{"chat_id":"c","message_id":"m","data":{"type":"chat:completion","data":{"done":true,"title":"t"}}}]`))
	r := one(t, rec)
	if r.Model != "llama3" || !r.Internal || r.UserID != "u7" || r.Content != "Hi" || r.Usage.Input != 4 || r.Usage.Output != 2 {
		t.Errorf("result %+v", r)
	}
}

func TestTrackerPolling(t *testing.T) {
	tr, rec, clk := newTestTracker(TrackerConfig{PollIdle: time.Minute})
	c := tr.OpenPolling("sid1", "u1")
	if tr.OpenPolling("sid1", "u2") != c {
		t.Fatal("a second request of the session got another Conn")
	}
	script := chatScript("c1", "m1", []string{"po", "ll"}, usage011([2]int{8, 2}))
	// Bodies as python-engineio sends them: several packets per body.
	c.FeedBody([]byte(strings.Join(append(handshake("sid1"), script[:2]...), "\x1e")))
	w := c.Body()
	rest := []byte(strings.Join(script[2:], "\x1e"))
	feedSplit(w, rest, rand.New(rand.NewPCG(1, 1)), 17)
	w.Close()
	r := one(t, rec)
	if r.Outcome != Done || r.Content != "poll" || r.Usage.Input != 8 || r.UserID != "u1" {
		t.Errorf("result %+v", r)
	}
	// Writes on a polling Conn are ignored (it has no websocket).
	if n, err := c.Write([]byte{0x81}); n != 1 || err != nil || c.Err() != nil {
		t.Error("Write on polling conn")
	}
	// An Engine.IO close packet ends the session's Conn.
	c.FeedBody([]byte("1"))
	if st := tr.Stats(); st.Polls != 0 {
		t.Errorf("stats %+v", st)
	}
	// Idle sessions are closed by Sweep.
	tr.OpenPolling("sid2", "u1")
	clk.Add(30 * time.Second)
	tr.Sweep()
	if tr.Stats().Polls != 1 {
		t.Fatal("closed too early")
	}
	clk.Add(30 * time.Second)
	tr.Sweep()
	if tr.Stats().Polls != 0 {
		t.Error("idle session kept")
	}
}

func TestTrackerMaxPolls(t *testing.T) {
	tr, _, clk := newTestTracker(TrackerConfig{MaxPolls: 2})
	a := tr.OpenPolling("a", "")
	clk.Add(time.Second)
	tr.OpenPolling("b", "")
	clk.Add(time.Second)
	tr.OpenPolling("a", "") // a is now the most recent
	clk.Add(time.Second)
	tr.OpenPolling("c", "")
	if st := tr.Stats(); st.Polls != 2 || tr.OpenPolling("a", "") != a {
		t.Errorf("stats %+v", st)
	}
}

func TestTrackerDeflatedWebSocket(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	c := tr.OpenWebSocket("u1", "permessage-deflate; client_max_window_bits")
	comp := newCompressor(false)
	for _, s := range chatScript("c1", "m1", []string{"zip", "ped"}, usage011([2]int{3, 2})) {
		c.Write(encodeFrame(OpText, comp.compress([]byte(s)), frameOpts{fin: true, rsv: 0x40}))
	}
	r := one(t, rec)
	if r.Content != "zipped" || r.Usage.Output != 2 || c.Err() != nil {
		t.Errorf("result %+v, err %v", r, c.Err())
	}
}

func TestTrackerBrokenStreamStopsQuietly(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	c := tr.OpenWebSocket("u1", "")
	c.Write(textFrame(eventText("c1", "m1", "chat:completion", map[string]any{"content": "a"})))
	c.Write([]byte{0x83, 0x00}) // reserved opcode
	c.Write(textFrame(eventText("c1", "m1", "chat:completion", map[string]any{"done": true})))
	if c.Err() == nil || len(rec.all()) != 0 {
		t.Errorf("err %v results %+v", c.Err(), rec.all())
	}
}

func TestTrackerConcurrentTabs(t *testing.T) {
	tr, rec, _ := newTestTracker(TrackerConfig{})
	const users, tabs, chats = 4, 3, 25
	var wg sync.WaitGroup
	for u := range users {
		var streams []byte
		for ch := range chats {
			streams = append(streams, wsStream(chatScript(fmt.Sprint("c", u, "-", ch), "m", []string{"x", "y"}, usage011([2]int{ch, 1}))...)...)
		}
		for tab := range tabs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := tr.OpenWebSocket(fmt.Sprint("u", u), "")
				defer c.Close()
				feedSplit(c, streams, rand.New(rand.NewPCG(uint64(u), uint64(tab))), 500)
			}()
		}
	}
	stop := tr.Start(time.Millisecond)
	wg.Wait()
	stop()
	stop()
	rs := rec.all()
	if len(rs) != users*chats {
		t.Fatalf("%d results, want %d", len(rs), users*chats)
	}
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.ChatID] || r.Outcome != Done || r.Content != "xy" || r.UserID != "u"+r.ChatID[1:2] {
			t.Errorf("result %+v (dup %v)", r, seen[r.ChatID])
		}
		seen[r.ChatID] = true
	}
}
