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
	BodyTimeout     time.Duration // how long a model-call body may take to arrive; 0: no limit
	APIKeyHeader    string        // OpenWebUI's CUSTOM_API_KEY_HEADER; "" is x-api-key
}

// Gate gates and meters model calls. It is safe for concurrent use.
type Gate struct {
	ledger   *ledger.Ledger
	counter  *tokens.Counter
	resolver *identity.Resolver
	cfg      Config
	log      *slog.Logger
	keys     *identity.Throttle // wrong provider_keys per client address, for every openwebui_meter

	settling sync.WaitGroup // settlements under way
	web      webChats       // web-UI chats awaiting their answer over the websocket
	tracker  *wstap.Tracker // follows those answers on the websockets the tap reads
}

// Wait returns once every settlement under way has been written.
func (g *Gate) Wait() { g.settling.Wait() }

// New returns a gate.
func New(l *ledger.Ledger, counter *tokens.Counter, resolver *identity.Resolver, cfg Config, log *slog.Logger) *Gate {
	g := &Gate{ledger: l, counter: counter, resolver: resolver, cfg: cfg, log: log}
	g.keys = identity.NewThrottle(identity.ThrottleConfig{})
	g.tracker = wstap.NewTracker(wstap.TrackerConfig{OnFinish: g.SettleWebChat, OnProgress: g.webChatProgress, IdleTimeout: cfg.HoldTTL})
	return g
}

// Identify returns the user a request's credential names, for requests
// that are not model calls (the websocket's upgrade and polling).
func (g *Gate) Identify(r *http.Request) (identity.User, bool) {
	token, _ := identity.Credential(r, g.cfg.APIKeyHeader)
	if token == "" {
		return identity.User{}, false
	}
	u, err := g.resolver.Resolve(r.Context(), token)
	return u, err == nil
}

// Call is one model call on its way through the gate.
type Call struct {
	g           *Gate
	ctx         context.Context
	user        identity.User
	kind        openwebui.RouteKind
	path        string
	req         openwebui.ModelRequest
	prompt      int64
	key         string
	background  bool     // a web-UI chat: OpenWebUI answers it over the websocket
	newChat     bool     // its first turn: OpenWebUI names the chat in its answer
	ownID       bool     // the message id is ours (injected), not the client's
	answer      []byte   // the start of a new chat's answer
	webMessages []string // the messages OpenWebUI answers over the websocket
	stripUsage  bool     // we asked for usage the client did not ask for
	start       time.Time

	source    string // ledger.SourceEdge or ledger.SourceProvider
	enforce   bool   // refuse what the balance cannot cover
	label     string // what the call is for (the record's purpose)
	chatID    string
	messageID string

	status  int
	meter   *openwebui.Meter
	settled bool
	local   *ledger.LocalHold // a hold in memory to give back once charged

	progressed int64     // the output count last journaled
	progressAt time.Time // when
}

// Metered reports whether the call was admitted and must be metered.
func (c *Call) Metered() bool { return c != nil && c.key != "" }

// Begin decides what happens to a request in front of OpenWebUI. It
// returns the call to meter (the request is rewritten for it), or nil to
// pass the request on untouched; handled means Begin has answered the
// request itself.
//
// In enforce mode a model call goes on only once its user is known and
// its cost held: a call whose user OpenWebUI cannot name (it is down, or
// refuses to say) is refused, never passed on unmetered. Only a call with
// no credential, or one OpenWebUI itself refuses (401), passes: OpenWebUI
// answers it with its own 401.
func (g *Gate) Begin(w http.ResponseWriter, r *http.Request) (call *Call, handled bool) {
	kind, ok := openwebui.ClassifyRoute(r.Method, r.URL.Path)
	if !ok {
		return nil, false
	}
	token, _ := identity.Credential(r, g.cfg.APIKeyHeader)
	// Identity travels in the credential only; never let a client speak
	// for OpenWebUI (the API-key header may be named X-OpenWebUI-…).
	dropOpenWebUIHeaders(r.Header, g.cfg.APIKeyHeader)
	if token == "" {
		return nil, false // OpenWebUI answers unauthenticated calls itself
	}
	c := &Call{g: g, ctx: r.Context(), kind: kind, path: r.URL.Path, start: time.Now(),
		source: ledger.SourceEdge, enforce: g.cfg.Enforce}
	user, err := g.resolver.Resolve(r.Context(), token)
	switch {
	case err == nil:
	case r.Context().Err() != nil:
		return nil, true // the client left while we asked who it is
	case errors.Is(err, identity.ErrUnauthenticated):
		return nil, false // OpenWebUI refuses it too
	case !c.enforce:
		g.log.Warn("cannot identify a model call; monitor mode passes it unmetered", "path", r.URL.Path, "error", err)
		return nil, false
	case errors.Is(err, identity.ErrForbidden):
		g.log.Warn("OpenWebUI would not say who an API key belongs to; refused the call", "path", r.URL.Path, "error", err)
		c.refuse(w, http.StatusForbidden, "The usage monitor cannot tell whose API key this is: OpenWebUI refused GET /api/v1/auths/ for it. "+
			"If API keys are restricted to some endpoints, an administrator must add /api/v1/auths to the allowed endpoints.", "api_key_lookup_forbidden")
		return nil, true
	default:
		g.log.Error("cannot identify a model call; refused it", "path", r.URL.Path, "error", err)
		c.refuse(w, http.StatusServiceUnavailable, "The usage monitor cannot reach OpenWebUI to identify you; try again shortly.", "identity_unavailable")
		return nil, true
	}
	c.user = user
	if kind == openwebui.RouteGated {
		return nil, c.admitGated(w)
	}
	return c.admitted(w, r)
}

// admitGated admits a call whose tokens OpenWebUI spends out of our sight
// (the provider meter counts them): a blocked user, or one with nothing
// left, is refused. It reports whether it answered the request.
func (c *Call) admitGated(w http.ResponseWriter) bool {
	if !c.enforce {
		return false
	}
	res, err := c.g.ledger.Admit(context.WithoutCancel(c.ctx), userInfo(c.user))
	if err != nil {
		c.refuseUnavailable(w, err)
		return true
	}
	if !res.Allowed {
		c.refuseBalance(w, res)
		return true
	}
	return false
}

// admitted is admit's outcome as Begin returns it.
func (c *Call) admitted(w http.ResponseWriter, r *http.Request) (*Call, bool) {
	if handled := c.admit(w, r); handled || !c.Metered() {
		return nil, handled
	}
	return c, false
}

func dropOpenWebUIHeaders(h http.Header, keep string) {
	keep = http.CanonicalHeaderKey(keep)
	for name := range h {
		if strings.HasPrefix(name, "X-Openwebui-") && name != keep {
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
		raw, err = body.Read(w, r, g.cfg.MaxBodyBytes, g.cfg.BodyTimeout)
		if errors.Is(err, body.ErrTooLarge) {
			c.refuse(w, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("request body is larger than the limit of %d bytes (max_body_size)", g.cfg.MaxBodyBytes), "request_too_large")
			return true
		}
		if errors.Is(err, body.ErrTimeout) {
			c.refuse(w, http.StatusRequestTimeout,
				fmt.Sprintf("request body not received within %v (body_timeout)", g.cfg.BodyTimeout), "request_timeout")
			return true
		}
		if err != nil {
			c.refuse(w, http.StatusBadRequest, err.Error(), "invalid_request")
			return true
		}
		if c.req, err = openwebui.InspectRequest(c.kind, raw); err != nil {
			// What we cannot read may still be read upstream (Python's json
			// takes NaN; a field of the wrong type may be coerced): it may
			// not pass unmetered, except in monitor mode, which never refuses.
			if !c.enforce {
				g.log.Warn("cannot read a model call; monitor mode passes it unmetered", "path", c.path, "error", err)
				setBody(r, raw)
				return false
			}
			c.refuse(w, http.StatusBadRequest, "Invalid request: "+err.Error(), "invalid_request")
			return true
		}
		raw = c.rewrite(raw)
		setBody(r, raw)
		c.prompt = c.req.PromptTokens(g.counter)
	}
	c.label = c.purpose(raw)
	if c.source == ledger.SourceEdge {
		c.chatID, c.messageID = c.req.ChatID, c.req.MessageID
	}
	if c.req.Model == "" {
		// Uploads name their model inside a multipart form we do not read:
		// they are priced (per message) under the purpose's name.
		c.req.Model = c.label
	}
	if c.newChat {
		// OpenWebUI creates the chat: hold under a placeholder until its
		// answer (or the websocket) names it.
		c.chatID = store.NewChatID
	}
	key := c.holdKey()
	res, err := g.ledger.Hold(context.WithoutCancel(r.Context()), ledger.Hold{
		User:  userInfo(c.user),
		Model: c.req.Model, PromptTokens: c.prompt,
		MaxOutputTokens: c.req.MaxOutputTokens, NoOutput: c.tokenless(),
		Key: key, ChatID: c.chatID, MessageID: c.messageID,
		Source: c.source, Purpose: c.label,
		Enforce: c.enforce, Expires: time.Now().Add(g.cfg.HoldTTL),
		Settled:   !c.background,
		ClientKey: c.source == ledger.SourceEdge && c.req.MessageID != "" && !c.ownID,
	})
	if err != nil {
		if !c.enforce {
			g.log.Error("cannot place a hold; monitor mode passes the call", "error", err)
			return false
		}
		c.refuseUnavailable(w, err)
		return true
	}
	c.local = res.Local
	if res.Reused {
		c.refuse(w, http.StatusConflict, "This message id ("+c.req.MessageID+") was answered already; a new answer needs a new message id.", "message_id_reused")
		return true
	}
	if !res.Allowed {
		c.refuseBalance(w, res)
		return true
	}
	c.key = key
	if res.Adopted {
		// The front's hold for this call: charge under its key and message.
		c.key, c.chatID, c.messageID = res.Key, res.ChatID, res.MessageID
	}
	if c.background {
		c.rememberWebChat(raw)
	}
	// We read what comes back: ask for it uncompressed.
	r.Header.Set("Accept-Encoding", "identity")
	return false
}

// rewrite makes the body meterable: API-key chats are answered over HTTP,
// and streaming OpenAI-style calls ask for a usage report.
func (c *Call) rewrite(body []byte) []byte {
	if c.source == ledger.SourceEdge && c.kind == openwebui.RouteChat {
		switch {
		case c.user.APIKey && c.g.cfg.StripBackground:
			// Every field that makes OpenWebUI manage a chat goes: with
			// them it may answer in the background, or consume the stream
			// itself and answer null (main.py chat_completion).
			if b, changed := openwebui.StripBackgroundFields(body); changed {
				body = b
				c.req.SessionID, c.req.ChatID, c.req.MessageID, c.req.NewChat = "", "", "", false
			}
		case c.req.MessageID != "" && (c.req.ChatID != "" || c.req.NewChat):
			// A web-UI chat: OpenWebUI answers over the websocket (or
			// consumes the stream itself), where a report settles it.
			c.background = true
			c.newChat = c.req.NewChat
		}
		if c.user.APIKey && c.req.ChatID == "" && c.req.MessageID == "" {
			// Name the message, as the web UI does: OpenWebUI (0.10+) hands
			// this id to the function's outlet, which then finds the charge
			// made here instead of charging again. Without a chat id it
			// stays a synchronous call.
			id := newID()
			if b, err := sjson.SetBytes(body, "id", id); err == nil {
				body, c.req.MessageID, c.ownID = b, id, true
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
	if c.source == ledger.SourceProvider {
		return "provider/" + newID() // one record per provider call; a message may take several
	}
	if c.req.MessageID != "" {
		return ledger.Key(c.chatID, c.req.MessageID)
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
	if c.source == ledger.SourceProvider && body != nil {
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
	if c.newChat && len(c.answer) < maxNewChatAnswer {
		c.answer = append(c.answer, p[:min(len(p), maxNewChatAnswer-len(c.answer))]...)
	}
	if c.meter == nil {
		return p
	}
	out := c.meter.Write(p)
	c.journalProgress()
	return out
}

// progressEvery bounds how often a call's output count is journaled.
const progressEvery = 100 * time.Millisecond

// journalProgress journals the output produced so far, at most every
// progressEvery: after a crash the answer is charged for the last count.
func (c *Call) journalProgress() {
	n := c.meter.OutputTokens()
	if n == c.progressed {
		return
	}
	if now := time.Now(); now.Sub(c.progressAt) >= progressEvery {
		c.progressed, c.progressAt = n, now
		c.g.ledger.Progress(c.key, n)
	}
}

// maxNewChatAnswer bounds what is kept of the answer to a new chat's first
// turn: {"status": true, "task_ids": […], "chat_id": "…"}.
const maxNewChatAnswer = 4 << 10

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
	if c.source == ledger.SourceEdge && c.local.Adopted() {
		c.g.ledger.Untrack(c.key, c.source)
		return // the provider meter adopted the hold: it charges the call
	}
	if c.newChat {
		c.g.newChatAnswered(c)
	}
	ctx := context.WithoutCancel(c.ctx)
	o := ledger.Observation{
		User:  userInfo(c.user),
		Model: c.req.Model, ChatID: c.chatID, MessageID: c.messageID, Key: c.key,
		Source: c.source, Purpose: c.label, Duration: time.Since(c.start),
		PromptTokens: c.prompt,
		ClientLeft:   c.ctx.Err() != nil,
		Background:   c.background,
		Tokenless:    c.tokenless(),
	}
	switch {
	case c.status == 0:
		o.Ended = ledger.EndNoAnswer
	case c.status >= 400:
		o.Ended = ledger.EndFailed
	case c.meter != nil && c.meter.Finished():
		o.Ended = ledger.EndCompleted
	default:
		o.Ended = ledger.EndEarly
	}
	if c.meter != nil {
		usage, reported := c.meter.Usage()
		o.Usage = ledgerUsage(usage, reported)
		o.Produced = c.meter.Produced()
		o.OutputTokens = c.meter.OutputTokens()
	}
	// The answer is out: settle in the background, so the connection is
	// free for the client's next request while the charge is written.
	c.g.settling.Add(1)
	go func() {
		defer c.g.settling.Done()
		// A web-UI chat with nothing produced here is left to the
		// websocket tap (or its hold's expiry): Settle charges nothing.
		if _, err := c.g.ledger.Settle(ctx, o); err != nil {
			c.g.log.Error("cannot settle a model call", "key", c.key, "error", err)
		}
		if c.local != nil {
			c.g.ledger.ReleaseLocal(c.local)
		}
	}()
}

// tokenless reports whether the call answers without tokens to count
// (images, audio, embeddings).
func (c *Call) tokenless() bool {
	return c.label == "images" || c.label == "audio" || c.label == "embeddings"
}

// ledgerUsage is a usage report as the ledger takes it.
func ledgerUsage(u openwebui.Usage, reported bool) ledger.Usage {
	return ledger.Usage{Input: u.Input, Output: u.Output, Cached: u.Cached, Reasoning: u.Reasoning, Reported: reported}
}

func setBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}

// refuseUnavailable refuses a call the store cannot hold now (503): its
// database is down and store_outage (or the journal) says not to admit.
func (c *Call) refuseUnavailable(w http.ResponseWriter, err error) {
	if errors.Is(err, ledger.ErrUnavailable) {
		c.g.log.Warn("refused a model call: charges cannot be recorded now", "path", c.path)
	} else {
		c.g.log.Error("cannot hold a model call; refused it", "path", c.path, "error", err)
	}
	c.refuse(w, http.StatusServiceUnavailable, "The usage monitor cannot record charges right now (its database is unavailable); try again shortly.", "store_unavailable")
}

// refuseBalance refuses a call the user's balance cannot cover, or a
// blocked user's, with 402: OpenWebUI shows it in the chat (never 401,
// which logs OpenWebUI users out). A budget limit with nothing left
// refuses with 429, saying which limit, what was used and when it resets
// (Retry-After too); X-Should-Retry: false keeps the official SDKs from
// retrying a refusal that lasts until then.
func (c *Call) refuseBalance(w http.ResponseWriter, res ledger.HoldResult) {
	if o := res.OverLimit; o != nil {
		w.Header().Set("Retry-After", o.RetryAfter(time.Now()))
		w.Header().Set("X-Should-Retry", "false")
		c.refuseFor(w, http.StatusTooManyRequests, o.Message(), "budget_limit_exceeded", "budget_limit")
		return
	}
	msg := fmt.Sprintf("Insufficient balance: %s left, and this request needs %s.", res.Balance, res.Amount)
	if res.Amount == 0 {
		msg = fmt.Sprintf("Insufficient balance: %s left.", res.Balance)
	}
	reason := "insufficient_balance"
	if res.Blocked {
		msg, reason = "Your account may not use models at the moment; ask an administrator.", "blocked"
	}
	c.refuseFor(w, http.StatusPaymentRequired, msg, "insufficient_balance", reason)
}

// refuse answers the request instead of the upstream, in the error shape
// its client reads: Ollama's {"error": "…"} on Ollama's native API,
// Anthropic's typed error on the Messages API, OpenAI's error object
// elsewhere. In front of OpenWebUI the answer also carries "detail", which
// OpenWebUI's web UI shows in every version.
func (c *Call) refuse(w http.ResponseWriter, status int, msg, code string) {
	c.refuseFor(w, status, msg, code, code)
}

// refuseFor is refuse, counted and logged under reason (the code, or a
// finer one: a blocked user's 402 says "insufficient_balance"). Every
// refusal of the gate and the provider meter passes here.
func (c *Call) refuseFor(w http.ResponseWriter, status int, msg, code, reason string) {
	c.g.ledger.Metrics().Refused(c.source, reason)
	attrs := []any{"path", c.source, "route", c.path, "status", status, "reason", reason}
	if c.user.ID != "" {
		attrs = append(attrs, "user", c.user.ID)
	}
	if c.req.Model != "" {
		attrs = append(attrs, "model", c.req.Model)
	}
	c.g.log.Info("refused", attrs...)
	var body map[string]any
	switch {
	case c.ollamaNative():
		body = map[string]any{"error": msg}
	case c.kind == openwebui.RouteAnthropic:
		body = map[string]any{"type": "error", "error": map[string]string{"type": code, "message": msg}}
	default:
		body = map[string]any{"error": map[string]any{"message": msg, "type": code, "code": code, "param": nil}}
	}
	if c.source == ledger.SourceEdge {
		body["detail"] = msg
	}
	b, _ := json.Marshal(body) // strings and maps of strings: always encodes
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ollamaNative reports whether the call speaks Ollama's own API, whose
// clients read "error" as a string: /ollama/api/… in front of OpenWebUI,
// /api/… on the provider hop.
func (c *Call) ollamaNative() bool {
	if c.source == ledger.SourceProvider {
		return strings.HasPrefix(c.path, "/api/")
	}
	return strings.HasPrefix(c.path, "/ollama/api/")
}

// openAIStyle routes speak OpenAI's chat or completions API, where a
// streaming answer reports usage only when asked to.
func openAIStyle(k openwebui.RouteKind) bool {
	return k == openwebui.RouteChat || k == openwebui.RouteOpenAI || k == openwebui.RouteTask
}
