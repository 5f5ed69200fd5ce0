package wstap

import (
	"strings"
	"sync"
	"time"

	"github.com/openwebui-monitor/owmon/internal/openwebui"
)

// Outcome is how an assistant message ended.
type Outcome uint8

const (
	// Done: the final chat:completion {"done": true} arrived (also when a
	// Stop came too late to stop anything).
	Done Outcome = iota + 1
	// Errored: the message ended (done, chat:tasks:cancel, chat:active
	// false) after an error event: chat:message:error, or chat:completion
	// {"error": …}. OpenWebUI sends chat:message:error then
	// chat:tasks:cancel when a provider call fails before streaming.
	Errored
	// Stopped: chat:tasks:cancel arrived without an error (the user pressed
	// Stop: POST /api/tasks/chat/{id}/stop cancels the task, which sends
	// chat:tasks:cancel and no done event, §3c), or Tracker.Stop was
	// called and no terminal event followed within StopGrace.
	Stopped
	// Abandoned: no terminal event was seen and the tracker gave up:
	// every connection that carried the message closed and none carried
	// it again within OrphanGrace; no event for IdleTimeout; chat:active
	// false for its chat; evicted to stay under MaxMessages; or Abandon.
	// OpenWebUI may still be generating (closing a tab does not stop a
	// background task): the usage it persists can be read later from
	// GET /api/v1/chats/{chat_id} (§3c).
	Abandoned
)

func (o Outcome) String() string {
	switch o {
	case Done:
		return "done"
	case Errored:
		return "error"
	case Stopped:
		return "stopped"
	case Abandoned:
		return "abandoned"
	}
	return "unknown"
}

// Result is what the tracker saw of one assistant message, reported once
// when it ended.
type Result struct {
	ChatID    string
	MessageID string
	// UserID is the user of the connection that first carried the
	// message (the first non-empty one).
	UserID string
	// Model, when an event named it (non-streaming answers carry the
	// provider's "model"); usually empty: the model is in the request's
	// message_ids.
	Model string
	// Usage is the latest (largest) usage the events reported:
	// cumulative over the message's model calls since OpenWebUI 0.10,
	// the latest call's in 0.9.x (§3c). Usage.Reported is false when no
	// event had usage: estimate from Content (and Reasoning).
	Usage openwebui.Usage
	// Content is the answer text as last seen: the whole answer when Done,
	// what was produced so far otherwise. Reasoning is the reasoning text
	// when the events carry output items (0.8+) that have it.
	Content   string
	Reasoning string
	Outcome   Outcome
	Error     string // the last error text seen, if any
	Internal  bool   // the events were marked "internal" (sub-agent runs)
	Events    int    // events applied, copies from several tabs included
	Started   time.Time
	Ended     time.Time
}

// TrackerConfig configures a Tracker. Zero values take the defaults.
type TrackerConfig struct {
	// OnFinish is called exactly once per message, when it ends, on the
	// goroutine that fed the event that ended it (or that called Sweep,
	// Stop's sweep, Abandon or Close). It must not block: hand slow work
	// (settling a charge) to another goroutine. It may call the Tracker.
	OnFinish func(Result)
	// OnProgress, when set, is called with a message's answer so far
	// (Outcome unset), at most every ProgressEvery per message, on the
	// goroutine that fed the event, outside the tracker's lock: the
	// journal keeps what a message produced in case the process dies.
	OnProgress func(Result)
	// ProgressEvery bounds how often OnProgress is called per message
	// (default 1 s).
	ProgressEvery time.Duration
	// MaxMessages caps the messages tracked at once (default 10,000). When
	// full, the one with the oldest event ends as Abandoned.
	MaxMessages int
	// MaxFinished is how many ended messages are remembered so that late
	// copies of their events (from other tabs) are ignored (default
	// 4 × MaxMessages).
	MaxFinished int
	// IdleTimeout ends a message with no event for this long as Abandoned
	// (default 10 minutes).
	IdleTimeout time.Duration
	// OrphanGrace ends a message as Abandoned when every connection that
	// carried it has been closed this long and no event came since
	// (default 60 s: more than Engine.IO's 25 s ping interval plus 20 s
	// timeout, so that a reconnecting tab picks it up again).
	OrphanGrace time.Duration
	// StopGrace is how long after Stop a message may still end by itself
	// (chat:tasks:cancel or done) before Sweep ends it as Stopped
	// (default 10 s).
	StopGrace time.Duration
	// PollIdle closes a polling session's Conn after no request for this
	// long (default 2 minutes). MaxPolls caps polling sessions (default
	// 10,000; the least recently used is closed).
	PollIdle time.Duration
	MaxPolls int
	// MaxMessage caps one websocket message or polling packet (default
	// DefaultMaxMessage): bigger ones are skipped.
	MaxMessage int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Stats counts what a Tracker did.
type Stats struct {
	Events   int64 // chat events applied (copies included)
	Late     int64 // events for messages already ended, ignored
	Finished int64 // messages reported
	Active   int   // messages tracked now
	Polls    int   // polling sessions open now
}

type msgKey struct{ chat, msg string }

const (
	rawNone = iota
	rawContent
	rawOutput
)

type message struct {
	key      msgKey
	user     string
	model    string
	usage    openwebui.Usage
	raw      []byte // the last content (JSON string) or output (JSON array)
	rawKind  uint8
	err      string
	internal bool
	events   int
	started  time.Time
	updated  time.Time
	stopAt   time.Time // Stop was called
	progress time.Time // OnProgress was last called
	orphanAt time.Time // the last connection carrying it closed
	watchers int
	finished bool
	outcome  Outcome
	ended    time.Time
	older    *message // LRU by last event
	newer    *message
}

// Tracker follows OpenWebUI chat messages across all connections and
// reports each once. It is safe for concurrent use.
type Tracker struct {
	cfg TrackerConfig

	mu       sync.Mutex
	active   map[msgKey]*message
	oldest   *message
	newest   *message
	finished map[msgKey]int // key -> its slot in ring
	ring     []msgKey
	ringNext int
	polls    map[string]*Conn
	stats    Stats
}

// NewTracker returns a tracker. Call Sweep now and then (or Start) so
// that messages without a terminal event end.
func NewTracker(cfg TrackerConfig) *Tracker {
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = 10000
	}
	if cfg.MaxFinished <= 0 {
		cfg.MaxFinished = 4 * cfg.MaxMessages
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.OrphanGrace <= 0 {
		cfg.OrphanGrace = 60 * time.Second
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	if cfg.PollIdle <= 0 {
		cfg.PollIdle = 2 * time.Minute
	}
	if cfg.MaxPolls <= 0 {
		cfg.MaxPolls = 10000
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OnFinish == nil {
		cfg.OnFinish = func(Result) {}
	}
	return &Tracker{
		cfg:      cfg,
		active:   make(map[msgKey]*message),
		finished: make(map[msgKey]int),
		polls:    make(map[string]*Conn),
	}
}

// Stats returns counters and sizes.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Active, s.Polls = len(t.active), len(t.polls)
	return s
}

// Conn is one connection's view: a websocket (OpenWebSocket) or a polling
// session (OpenPolling). Feeding methods of one Conn are serialized;
// different Conns can be fed concurrently.
type Conn struct {
	t    *Tracker
	feed sync.Mutex // serializes the readers below
	fr   *FrameReader
	fin  []*message // scratch for ended messages, under feed

	// Under t.mu:
	user    string
	sid     string
	watch   []*message
	closed  bool
	lastUse time.Time
}

// maxWatch caps the messages one Conn counts itself a carrier of.
const maxWatch = 32

// OpenWebSocket returns a Conn for one relayed websocket of userID ("" if
// unknown). extensions is the Sec-WebSocket-Extensions header of the
// upstream's 101 response. Feed it with Write; call Close at the end.
func (t *Tracker) OpenWebSocket(userID, extensions string) *Conn {
	c := &Conn{t: t, user: userID}
	c.fr = NewFrameReader(FrameConfig{MaxMessage: t.cfg.MaxMessage, Extensions: extensions}, c.frame)
	return c
}

// OpenPolling returns the Conn of the long-polling session sid (the sid
// query parameter), creating it on first use; every request of the
// session gets the same Conn. Feed each response body with FeedBody or
// Body. It closes by itself: on an Engine.IO close packet, or after
// PollIdle without OpenPolling.
func (t *Tracker) OpenPolling(sid, userID string) *Conn {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.polls[sid]; c != nil {
		c.lastUse = now
		if c.user == "" {
			c.user = userID
		}
		return c
	}
	if len(t.polls) >= t.cfg.MaxPolls {
		var lru *Conn
		for _, c := range t.polls {
			if lru == nil || c.lastUse.Before(lru.lastUse) {
				lru = c
			}
		}
		t.closeLocked(lru, now)
	}
	c := &Conn{t: t, user: userID, sid: sid, lastUse: now}
	t.polls[sid] = c
	return c
}

// Write reads bytes the server sent to the browser over the websocket, as
// relayed: in any pieces, after they were written. It never fails and
// never keeps p. On a Conn from OpenPolling it does nothing.
func (c *Conn) Write(p []byte) (int, error) {
	if c.fr == nil {
		return len(p), nil
	}
	c.feed.Lock()
	c.fr.Write(p)
	c.feed.Unlock()
	return len(p), nil
}

// Err says why the websocket reader stopped reading (a protocol violation,
// an unsupported extension), or nil.
func (c *Conn) Err() error {
	if c.fr == nil {
		return nil
	}
	c.feed.Lock()
	defer c.feed.Unlock()
	return c.fr.Err()
}

// FeedBody reads one whole long-polling response body (packets separated
// by 0x1e).
func (c *Conn) FeedBody(body []byte) {
	c.feed.Lock()
	defer c.feed.Unlock()
	SplitPolling(body, c.packet)
}

// Body returns a writer for one long-polling response body fed in
// pieces; Close it at the end of the body.
func (c *Conn) Body() *BodyWriter {
	w := &BodyWriter{c: c}
	w.r = NewPollingReader(c.t.cfg.MaxMessage, c.packet)
	return w
}

// BodyWriter reads one polling body into its Conn.
type BodyWriter struct {
	c *Conn
	r *PollingReader
}

// Write reads a piece of the body; it never fails.
func (w *BodyWriter) Write(p []byte) (int, error) {
	w.c.feed.Lock()
	defer w.c.feed.Unlock()
	return w.r.Write(p)
}

// Close reads the body's last packet.
func (w *BodyWriter) Close() error {
	w.c.feed.Lock()
	defer w.c.feed.Unlock()
	return w.r.Close()
}

// Close ends the connection: messages it carried that no other open
// connection carries start their OrphanGrace. Idempotent.
func (c *Conn) Close() {
	t := c.t
	t.mu.Lock()
	t.closeLocked(c, t.cfg.Now())
	t.mu.Unlock()
}

func (t *Tracker) closeLocked(c *Conn, now time.Time) {
	if c.closed {
		return
	}
	c.closed = true
	for _, m := range c.watch {
		if !m.finished {
			m.watchers--
			if m.watchers <= 0 {
				m.orphanAt = now
			}
		}
	}
	c.watch = nil
	if c.sid != "" && t.polls[c.sid] == c {
		delete(t.polls, c.sid)
	}
}

// frame handles one websocket message.
func (c *Conn) frame(m Message) {
	if m.Op != OpText || m.Skipped {
		return
	}
	if p, ok := ParseEngineIO(m.Data); ok {
		c.packet(p)
	}
}

// packet handles one Engine.IO packet (under c.feed).
func (c *Conn) packet(p EIOPacket) {
	if p.Binary {
		return
	}
	switch p.Type {
	case EIOMessage:
		sp, ok := ParseSocketIO(p.Data)
		if !ok || sp.Type != SIOEvent {
			return
		}
		ev, ok := parseChatEvent(unsafeString(sp.Data))
		if ok {
			c.t.apply(c, &ev)
		}
	case EIOClose:
		if c.sid != "" {
			c.Close()
		}
	}
}

// apply applies one event from c; ended messages are reported after the
// lock is released.
func (t *Tracker) apply(c *Conn, ev *ChatEvent) {
	if ev.ChatID == "" || ev.MessageID == "" {
		return
	}
	now := t.cfg.Now()
	t.mu.Lock()
	fin := t.applyLocked(c, ev, now, c.fin[:0])
	progress, due := t.progressLocked(ev, now)
	t.mu.Unlock()
	t.report(fin)
	if due {
		t.cfg.OnProgress(progress)
	}
	clear(fin)
	c.fin = fin[:0]
}

func (t *Tracker) applyLocked(c *Conn, ev *ChatEvent, now time.Time, fin []*message) []*message {
	t.stats.Events++
	if ev.Type == TypeActive {
		if ev.HasActive && !ev.Active {
			// No task of the chat is left: whatever is still open will
			// get no more events.
			for _, m := range t.active {
				if m.key.chat == ev.ChatID {
					fin = t.finish(m, t.fallbackOutcome(m), now, fin)
				}
			}
		}
		return fin
	}
	key := msgKey{ev.ChatID, ev.MessageID}
	if _, ok := t.finished[key]; ok {
		t.stats.Late++
		return fin
	}
	m := t.active[key]
	if m == nil {
		switch ev.Type {
		case TypeCompletion, TypeMessageError, TypeTasksCancel:
		default:
			return fin // status, sources, titles…: nothing to meter yet
		}
		if len(t.active) >= t.cfg.MaxMessages && t.oldest != nil {
			fin = t.finish(t.oldest, t.fallbackOutcome(t.oldest), now, fin)
		}
		key = msgKey{strings.Clone(ev.ChatID), strings.Clone(ev.MessageID)}
		m = &message{key: key, started: now}
		t.active[key] = m
	} else {
		t.unlink(m)
	}
	t.pushNewest(m)
	m.events++
	m.updated = now
	m.orphanAt = time.Time{}
	if m.user == "" && c.user != "" {
		m.user = c.user
	}
	m.internal = m.internal || ev.Internal
	if !c.closed {
		t.watch(c, m)
	}
	if ev.Error != "" && ev.Error != m.err {
		m.err = strings.Clone(ev.Error)
	}
	switch ev.Type {
	case TypeCompletion:
		if ev.Usage.Reported {
			m.usage = maxUsage(m.usage, ev.Usage)
		}
		if ev.Model != "" && ev.Model != m.model {
			m.model = strings.Clone(ev.Model)
		}
		if ev.Output != "" {
			m.setRaw(rawOutput, ev.Output, ev.Done)
		} else if ev.Content != "" {
			m.setRaw(rawContent, ev.Content, ev.Done)
		}
		if ev.Done {
			o := Done
			if m.err != "" {
				o = Errored
			}
			fin = t.finish(m, o, now, fin)
		}
	case TypeTasksCancel:
		o := Stopped
		if m.err != "" {
			o = Errored
		}
		fin = t.finish(m, o, now, fin)
	}
	return fin
}

// progressLocked returns the answer so far of the message ev fed, when
// OnProgress is due for it (under t.mu; the text is copied, as the
// message's buffer changes with the next event).
func (t *Tracker) progressLocked(ev *ChatEvent, now time.Time) (Result, bool) {
	if t.cfg.OnProgress == nil || ev.Type != TypeCompletion {
		return Result{}, false
	}
	m := t.active[msgKey{ev.ChatID, ev.MessageID}]
	if m == nil || now.Sub(m.progress) < t.cfg.ProgressEvery {
		return Result{}, false
	}
	m.progress = now
	r := Result{ChatID: m.key.chat, MessageID: m.key.msg, UserID: m.user, Model: m.model,
		Usage: m.usage, Events: m.events, Started: m.started}
	switch m.rawKind {
	case rawOutput:
		r.Content, r.Reasoning = answerText("", unsafeString(m.raw))
	case rawContent:
		r.Content, r.Reasoning = answerText(unsafeString(m.raw), "")
	}
	r.Content, r.Reasoning = strings.Clone(r.Content), strings.Clone(r.Reasoning)
	return r, true
}

// setRaw keeps the answer so far. Copies of one event reach the tracker
// from every tab in any interleaving, and the answer only grows, so a
// shorter one is a stale copy; the done event's is final. Output items
// are preferred to the content string when a version sends both.
func (m *message) setRaw(kind uint8, raw string, final bool) {
	if kind < m.rawKind || !final && kind == m.rawKind && len(raw) < len(m.raw) {
		return
	}
	m.raw = append(m.raw[:0], raw...)
	m.rawKind = kind
}

// maxUsage keeps the largest of each count: usage only grows within a
// message (merge_usage adds calls up), and copies arrive in any order.
func maxUsage(a, b openwebui.Usage) openwebui.Usage {
	if !a.Reported {
		return b
	}
	a.Input = max(a.Input, b.Input)
	a.Output = max(a.Output, b.Output)
	a.Cached = max(a.Cached, b.Cached)
	a.Reasoning = max(a.Reasoning, b.Reasoning)
	return a
}

func (t *Tracker) fallbackOutcome(m *message) Outcome {
	switch {
	case m.err != "":
		return Errored
	case !m.stopAt.IsZero():
		return Stopped
	}
	return Abandoned
}

func (t *Tracker) watch(c *Conn, m *message) {
	for _, w := range c.watch {
		if w == m {
			return
		}
	}
	if len(c.watch) >= maxWatch {
		kept := c.watch[:0]
		for _, w := range c.watch {
			if !w.finished {
				kept = append(kept, w)
			}
		}
		clear(c.watch[len(kept):])
		c.watch = kept
		if len(c.watch) >= maxWatch {
			return // not counted: its other carriers and IdleTimeout decide
		}
	}
	c.watch = append(c.watch, m)
	m.watchers++
}

// finish ends m (under t.mu) and queues it for report.
func (t *Tracker) finish(m *message, o Outcome, now time.Time, fin []*message) []*message {
	delete(t.active, m.key)
	t.unlink(m)
	m.finished, m.outcome, m.ended = true, o, now
	if len(t.ring) < t.cfg.MaxFinished {
		t.ring = append(t.ring, m.key)
		t.finished[m.key] = len(t.ring) - 1
	} else {
		old := t.ring[t.ringNext]
		if t.finished[old] == t.ringNext {
			delete(t.finished, old)
		}
		t.ring[t.ringNext] = m.key
		t.finished[m.key] = t.ringNext
		t.ringNext = (t.ringNext + 1) % len(t.ring)
	}
	t.stats.Finished++
	return append(fin, m)
}

// report calls OnFinish for ended messages (not under t.mu; an ended
// message is no longer changed by anyone).
func (t *Tracker) report(fin []*message) {
	for _, m := range fin {
		r := Result{
			ChatID: m.key.chat, MessageID: m.key.msg, UserID: m.user, Model: m.model,
			Usage: m.usage, Outcome: m.outcome, Error: m.err, Internal: m.internal,
			Events: m.events, Started: m.started, Ended: m.ended,
		}
		switch m.rawKind {
		case rawOutput:
			r.Content, r.Reasoning = answerText("", unsafeString(m.raw))
		case rawContent:
			r.Content, r.Reasoning = answerText(unsafeString(m.raw), "")
		}
		// Content may alias m.raw, which nobody writes any more.
		m.raw = nil
		t.cfg.OnFinish(r)
	}
}

func (t *Tracker) unlink(m *message) {
	if m.older != nil {
		m.older.newer = m.newer
	} else if t.oldest == m {
		t.oldest = m.newer
	}
	if m.newer != nil {
		m.newer.older = m.older
	} else if t.newest == m {
		t.newest = m.older
	}
	m.older, m.newer = nil, nil
}

func (t *Tracker) pushNewest(m *message) {
	m.older, m.newer = t.newest, nil
	if t.newest != nil {
		t.newest.newer = m
	}
	t.newest = m
	if t.oldest == nil {
		t.oldest = m
	}
}

// Stop records that userID stopped the generations of chatID (OpenWebUI
// accepted POST /api/tasks/chat/{chat_id}/stop). The user's open messages
// of the chat then end as Stopped at their chat:tasks:cancel, or at a
// Sweep StopGrace later if none comes; a done event that still arrives
// ends one as Done with its usage. Messages of other users, or seen on no
// user's connection, are left alone: a stop is never a way to end someone
// else's metering. It returns how many messages it marked.
func (t *Tracker) Stop(chatID, userID string) int {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.active {
		if m.key.chat == chatID && m.user != "" && m.user == userID {
			if m.stopAt.IsZero() {
				m.stopAt = now
			}
			n++
		}
	}
	return n
}

// Abandon ends an open message now as Abandoned (Stopped if Stop was
// called for its chat, Errored after an error), with what was seen. False
// when it is not open.
func (t *Tracker) Abandon(chatID, messageID string) bool {
	now := t.cfg.Now()
	t.mu.Lock()
	m := t.active[msgKey{chatID, messageID}]
	var fin []*message
	if m != nil {
		fin = t.finish(m, t.fallbackOutcome(m), now, nil)
	}
	t.mu.Unlock()
	t.report(fin)
	return m != nil
}

// Expect says a new generation of (chatID, messageID) starts (the proxy
// saw its request): if the message already ended, its events count again.
// OpenWebUI's "continue" reuses the assistant message id. Late copies of
// the previous generation's events arriving after this would count too,
// so call it only when the request is seen.
func (t *Tracker) Expect(chatID, messageID string) {
	t.mu.Lock()
	delete(t.finished, msgKey{chatID, messageID})
	t.mu.Unlock()
}

// Sweep ends messages whose time is up (StopGrace after Stop, OrphanGrace
// after their last connection closed, IdleTimeout without events) and
// closes polling sessions idle for PollIdle.
func (t *Tracker) Sweep() {
	now := t.cfg.Now()
	t.mu.Lock()
	var fin []*message
	for _, m := range t.active {
		switch {
		case !m.stopAt.IsZero() && now.Sub(m.stopAt) >= t.cfg.StopGrace,
			!m.orphanAt.IsZero() && now.Sub(m.orphanAt) >= t.cfg.OrphanGrace,
			now.Sub(m.updated) >= t.cfg.IdleTimeout:
			fin = t.finish(m, t.fallbackOutcome(m), now, fin)
		}
	}
	for _, c := range t.polls {
		if now.Sub(c.lastUse) >= t.cfg.PollIdle {
			t.closeLocked(c, now)
		}
	}
	t.mu.Unlock()
	t.report(fin)
}

// Start runs Sweep every interval until the returned function is called.
func (t *Tracker) Start(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				t.Sweep()
			case <-done:
				return
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}
