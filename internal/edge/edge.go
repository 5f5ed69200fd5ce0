// Package edge is the gate and meter in front of OpenWebUI. For every
// model call it identifies the user, reserves the call's estimated cost (or
// refuses it with a 402 OpenWebUI shows in the chat), reads the answer as
// it passes, and settles the reservation to the actual cost. Every other
// request passes untouched, with no body read.
package edge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/openwebui-monitor/owmon/internal/body"
	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/openwebui"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/tokens"
	"github.com/openwebui-monitor/owmon/internal/wstap"
)

// Config says how the gate behaves.
type Config struct {
	Enforce         bool          // refuse calls the balance cannot cover
	InjectUsage     bool          // ask for usage on streaming OpenAI-style calls
	StripBackground bool          // keep API-key chats out of OpenWebUI's background mode
	HoldTTL         time.Duration // when an unsettled hold is released
	MaxBodyBytes    int64         // largest model-call body read
}

// Gate gates and meters model calls. It is safe for concurrent use.
type Gate struct {
	ledger   *ledger.Ledger
	counter  *tokens.Counter
	resolver *identity.Resolver
	cfg      Config
	log      *slog.Logger

	settling sync.WaitGroup // settlements under way
	web      webChats       // web-UI chats awaiting their answer over the websocket
	tracker  *wstap.Tracker // follows those answers on the websockets the tap reads
}

// Tracker is the websocket tap's tracker: it reports each web-UI answer
// once, when it ends, to SettleWebChat.
func (g *Gate) Tracker() *wstap.Tracker { return g.tracker }

// Wait returns once every settlement under way has been written.
func (g *Gate) Wait() { g.settling.Wait() }

// New returns a gate.
func New(l *ledger.Ledger, counter *tokens.Counter, resolver *identity.Resolver, cfg Config, log *slog.Logger) *Gate {
	g := &Gate{ledger: l, counter: counter, resolver: resolver, cfg: cfg, log: log}
	g.tracker = wstap.NewTracker(wstap.TrackerConfig{OnFinish: g.SettleWebChat, IdleTimeout: cfg.HoldTTL})
	return g
}

// Identify returns the user a request's credential names, for requests
// that are not model calls (the websocket's upgrade and polling).
func (g *Gate) Identify(r *http.Request) (identity.User, bool) {
	token, _ := identity.Credential(r)
	if token == "" {
		return identity.User{}, false
	}
	u, err := g.resolver.Resolve(r.Context(), token)
	return u, err == nil
}

// Call is one model call on its way through the gate.
type Call struct {
	g          *Gate
	ctx        context.Context
	user       identity.User
	kind       openwebui.RouteKind
	path       string
	req        openwebui.ModelRequest
	prompt     int64
	key        string
	background bool // a web-UI chat: OpenWebUI answers it over the websocket
	stripUsage bool // we asked for usage the client did not ask for
	start      time.Time

	source    string // store.SourceEdge or store.SourceProvider
	enforce   bool   // refuse what the balance cannot cover
	label     string // what the call is for (the record's purpose)
	chatID    string
	messageID string

	status  int
	meter   *openwebui.Meter
	settled bool
	local   *ledger.LocalHold // a hold in memory to give back once charged
}

// Metered reports whether the call was admitted and must be metered.
func (c *Call) Metered() bool { return c != nil && c.key != "" }

// Begin decides what happens to a request in front of OpenWebUI. It
// returns the call to meter (the request is rewritten for it), or nil to
// pass the request on untouched; handled means Begin has answered the
// request itself.
func (g *Gate) Begin(w http.ResponseWriter, r *http.Request) (call *Call, handled bool) {
	kind, ok := openwebui.ClassifyRoute(r.Method, r.URL.Path)
	if !ok {
		return nil, false
	}
	token, _ := identity.Credential(r)
	if token == "" {
		return nil, false // OpenWebUI answers unauthenticated calls itself
	}
	user, err := g.resolver.Resolve(r.Context(), token)
	if err != nil {
		if !errors.Is(err, identity.ErrUnauthenticated) {
			g.log.Warn("cannot identify a model call; passing it to OpenWebUI unmetered", "error", err)
		}
		return nil, false
	}
	// Identity travels in the credential only; never let a client speak for OpenWebUI.
	dropOpenWebUIHeaders(r.Header)
	c := &Call{g: g, ctx: r.Context(), user: user, kind: kind, path: r.URL.Path, start: time.Now(),
		source: store.SourceEdge, enforce: g.cfg.Enforce}
	return c.admitted(w, r)
}

// admitted is admit's outcome as Begin returns it.
func (c *Call) admitted(w http.ResponseWriter, r *http.Request) (*Call, bool) {
	if handled := c.admit(w, r); handled || !c.Metered() {
		return nil, handled
	}
	return c, false
}

func dropOpenWebUIHeaders(h http.Header) {
	for name := range h {
		if strings.HasPrefix(name, "X-Openwebui-") {
			h.Del(name)
		}
	}
}

// admit reads and rewrites the call's body and holds its estimated cost,
// or refuses it. It reports whether it answered the request itself; the
// call is not metered when it returns false with c.key unset.
func (c *Call) admit(w http.ResponseWriter, r *http.Request) (handled bool) {
	g := c.g
	var raw []byte
	if c.kind.ReadsBody() {
		var err error
		raw, err = body.Read(w, r, g.cfg.MaxBodyBytes)
		if errors.Is(err, body.ErrTooLarge) {
			c.refuse(w, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("request body is larger than the limit of %d bytes (max_body_size)", g.cfg.MaxBodyBytes), "request_too_large")
			return true
		}
		if err != nil {
			c.refuse(w, http.StatusBadRequest, err.Error(), "invalid_request")
			return true
		}
		if c.req, err = openwebui.InspectRequest(c.kind, raw); err != nil {
			var fe *openwebui.FieldError
			if errors.As(err, &fe) && fe.Field == "body" {
				// The upstream refuses what it cannot parse; there is nothing to meter.
				setBody(r, raw)
				return false
			}
			// Valid JSON with a field of the wrong type: an upstream might
			// still answer it, so it may not pass unmetered.
			c.refuse(w, http.StatusBadRequest, "Invalid request: "+err.Error(), "invalid_request")
			return true
		}
		raw = c.rewrite(raw)
		setBody(r, raw)
		c.prompt = c.req.PromptTokens(g.counter)
	}
	c.label = c.purpose(raw)
	if c.source == store.SourceEdge {
		c.chatID, c.messageID = c.req.ChatID, c.req.MessageID
	}
	if c.req.Model == "" {
		// Uploads name their model inside a multipart form we do not read:
		// they are priced (per message) under the purpose's name.
		c.req.Model = c.label
	}
	key := c.holdKey()
	res, err := g.ledger.Hold(context.WithoutCancel(r.Context()), ledger.Hold{
		User:  userInfo(c.user),
		Model: c.req.Model, PromptTokens: c.prompt,
		Key: key, ChatID: c.chatID, MessageID: c.messageID,
		Source: c.source, Purpose: c.label,
		Enforce: c.enforce, Expires: time.Now().Add(g.cfg.HoldTTL),
		Settled: !c.background,
	})
	if err != nil {
		g.log.Error("cannot place a hold", "error", err)
		if !c.enforce {
			return false
		}
		c.refuse(w, http.StatusServiceUnavailable, "The usage monitor's database is unavailable; try again shortly.", "service_unavailable")
		return true
	}
	c.local = res.Local
	if !res.Allowed {
		msg := fmt.Sprintf("Insufficient balance: %s left, and this request needs %s.", res.Balance, res.Amount)
		if res.Blocked {
			msg = "Your account may not use models at the moment; ask an administrator."
		}
		c.refuse(w, http.StatusPaymentRequired, msg, "insufficient_balance")
		return true
	}
	c.key = key
	if c.background {
		c.rememberWebChat(raw)
	}
	// We read what comes back: ask for it uncompressed.
	r.Header.Set("Accept-Encoding", "identity")
	return false
}

// rewrite makes the body meterable: API-key chats leave background mode,
// and streaming OpenAI-style calls ask for a usage report.
func (c *Call) rewrite(body []byte) []byte {
	if c.source == store.SourceEdge && c.kind == openwebui.RouteChat {
		hasBackground := c.req.SessionID != "" || c.req.ChatID != ""
		switch {
		case c.user.APIKey && hasBackground && c.g.cfg.StripBackground:
			if b, changed := openwebui.StripBackgroundFields(body); changed {
				body = b
				c.req.SessionID, c.req.ChatID, c.req.MessageID = "", "", ""
			}
		case !c.user.APIKey && c.req.ChatID != "" && c.req.MessageID != "":
			c.background = true // answered over the websocket; a report settles it
		}
		if c.user.APIKey && c.req.ChatID == "" && c.req.MessageID == "" {
			// Name the message, as the web UI does: OpenWebUI (0.10+) hands
			// this id to the function's outlet, which then finds the charge
			// made here instead of charging again. Without a chat id it
			// stays a synchronous call.
			if b, err := sjson.SetBytes(body, "id", newID()); err == nil {
				body = b
				c.req.MessageID = gjson.GetBytes(b, "id").Str
			}
		}
	}
	if c.g.cfg.InjectUsage && c.req.Stream && !c.req.IncludeUsage && openAIStyle(c.kind) {
		if b, changed := openwebui.InjectIncludeUsage(body); changed {
			body, c.stripUsage = b, true
		}
	}
	return body
}

// holdKey is the idempotency key of the call's charge: its message, so the
// function's outlet or a later tap finds the same record, or a fresh key.
func (c *Call) holdKey() string {
	if c.source == store.SourceProvider {
		return "provider/" + newID() // one record per provider call; a message may take several
	}
	if c.req.MessageID != "" {
		return ledger.Key(c.req.ChatID, c.req.MessageID)
	}
	return "edge/" + newID()
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// purpose says what the call is for: by its route, and on the provider hop
// by its body, where OpenWebUI's task prompts show.
func (c *Call) purpose(body []byte) string {
	switch c.kind {
	case openwebui.RouteTask:
		// /api/v1/tasks/{purpose}/completions
		rest := strings.TrimPrefix(strings.TrimPrefix(c.path, "/api/v1/tasks/"), "/api/task/")
		if name, _, ok := strings.Cut(rest, "/"); ok {
			return name
		}
		return "task"
	case openwebui.RouteEmbeddings:
		return "embeddings"
	case openwebui.RouteImages, openwebui.RouteImageUpload:
		return "images"
	case openwebui.RouteAudio, openwebui.RouteAudioUpload:
		return "audio"
	}
	if c.source == store.SourceProvider && body != nil {
		return openwebui.Purpose(body)
	}
	return "chat"
}

func userInfo(u identity.User) store.UserInfo {
	return store.UserInfo{ID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role}
}

// Header sees the answer's status and headers before they are sent.
func (c *Call) Header(status int, h http.Header) {
	if status < 200 || c.status != 0 {
		return // informational, or already seen
	}
	c.status = status
	if ce := h.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return // compressed anyway: we cannot read it, the prompt estimate stands
	}
	format := openwebui.FormatFor(h.Get("Content-Type"))
	strip := c.stripUsage && status < 300 && format == openwebui.FormatSSE
	c.meter = openwebui.NewMeter(format, c.g.counter, c.req.Model, strip)
	if strip {
		h.Del("Content-Length") // we remove bytes
	}
}

// Write observes a chunk of the answer and returns the bytes to send on.
func (c *Call) Write(p []byte) []byte {
	if c.meter == nil {
		return p
	}
	return c.meter.Write(p)
}

// Close returns what the meter still held when the answer ended.
func (c *Call) Close() []byte {
	if c.meter == nil {
		return nil
	}
	return c.meter.Close()
}

// End settles the call's hold to what the answer cost. It runs once, after
// the answer ended, however it ended.
func (c *Call) End() {
	if c.settled {
		return
	}
	c.settled = true
	ctx := context.WithoutCancel(c.ctx)
	a := ledger.Answer{
		User:  userInfo(c.user),
		Model: c.req.Model, ChatID: c.chatID, MessageID: c.messageID,
		Source: c.source, Purpose: c.label, Duration: time.Since(c.start),
	}
	a.Key = c.key
	var usage openwebui.Usage
	var reported, produced bool
	if c.meter != nil {
		usage, reported = c.meter.Usage()
		produced = c.meter.Produced()
	}
	cancelled := c.ctx.Err() != nil
	switch {
	case c.status == 0 || c.status >= 400:
		a.Status = store.StatusFailed // upstream error or no answer: release in full
		if cancelled && c.status == 0 {
			a.Status = store.StatusCancelled
		}
	case reported:
		a.InputTokens, a.OutputTokens = usage.Input, usage.Output
		a.CachedTokens, a.ReasoningTokens = usage.Cached, usage.Reasoning
		if !c.meter.Finished() {
			// Cut short: an early report (Anthropic's message_start says
			// 1 output token) may trail what was produced.
			a.OutputTokens = max(a.OutputTokens, c.meter.OutputTokens())
			if cancelled {
				a.Status = store.StatusCancelled
			}
		}
	case c.background && !produced:
		return // OpenWebUI answers over the websocket: the report or the expiry settles it
	case produced:
		a.InputTokens, a.OutputTokens, a.Estimated = c.prompt, c.meter.OutputTokens(), true
		if cancelled {
			a.Status = store.StatusCancelled // charged for what was produced
		}
	case cancelled:
		a.Status = store.StatusCancelled // nothing produced: nothing charged
	case c.label == "images" || c.label == "audio" || c.label == "embeddings":
		a.InputTokens, a.Estimated = c.prompt, true // answered, without tokens to show
	default:
		a.Status = store.StatusFailed // an answer with nothing in it
	}
	// The answer is out: settle in the background, so the connection is
	// free for the client's next request while the charge is written.
	c.g.settling.Add(1)
	go func() {
		defer c.g.settling.Done()
		if _, err := c.g.ledger.Charge(ctx, a); err != nil {
			c.g.log.Error("cannot settle a model call; its hold is released when it expires", "error", err)
		}
		if c.local != nil {
			c.g.ledger.ReleaseLocal(c.local)
		}
	}()
}

func setBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}

// refuse answers the request instead of the upstream, in the shape its
// caller reads.
func (c *Call) refuse(w http.ResponseWriter, status int, msg, kind string) {
	if c.source == store.SourceProvider {
		writeProviderError(w, c.path, c.kind, status, msg, kind)
		return
	}
	writeRefusal(w, status, msg, kind)
}

// writeRefusal answers in the shape OpenWebUI shows in the chat ("detail",
// every version) and OpenAI clients understand ("error"). Never 401: that
// logs OpenWebUI users out.
func writeRefusal(w http.ResponseWriter, status int, msg, kind string) {
	body, _ := json.Marshal(map[string]any{
		"detail": msg,
		"error":  map[string]string{"message": msg, "type": kind, "code": kind},
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// openAIStyle routes speak OpenAI's chat or completions API, where a
// streaming answer reports usage only when asked to.
func openAIStyle(k openwebui.RouteKind) bool {
	return k == openwebui.RouteChat || k == openwebui.RouteOpenAI || k == openwebui.RouteTask
}
