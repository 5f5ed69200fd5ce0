// Package function serves /api/v1/inlet and /api/v1/outlet, the two
// endpoints the OpenWebUI "Usage Monitor" filter function calls, with the
// request and answer shapes of the monitor it replaces, and /api/v1/usage,
// which the usage action function asks for one message's charge.
package function

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/body"
	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/openwebui"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/tokens"
)

// Paths of the endpoints.
const (
	InletPath  = "/api/v1/inlet"
	OutletPath = "/api/v1/outlet"
	UsagePath  = "/api/v1/usage"
)

// Endpoints serves inlet, outlet and usage.
type Endpoints struct {
	ledger       *ledger.Ledger
	counter      *tokens.Counter
	key          identity.Secret
	throttle     *identity.Throttle // wrong keys per client address
	maxBodyBytes int64
	bodyTimeout  time.Duration
	log          *slog.Logger
}

// New returns the endpoints. apiKey is the bearer key the function sends;
// when it is empty every call is refused.
func New(l *ledger.Ledger, counter *tokens.Counter, apiKey string, maxBodyBytes int64, bodyTimeout time.Duration, log *slog.Logger) *Endpoints {
	return &Endpoints{
		ledger: l, counter: counter,
		key:          identity.NewSecret(apiKey),
		maxBodyBytes: maxBodyBytes, bodyTimeout: bodyTimeout, log: log, throttle: identity.NewThrottle(identity.ThrottleConfig{}),
	}
}

// ShareThrottle makes the endpoints count wrong keys in t, which other
// endpoints with the same key share, instead of a throttle of their own.
func (e *Endpoints) ShareThrottle(t *identity.Throttle) { e.throttle = t }

// Handles reports whether path is one of the endpoints.
func Handles(path string) bool { return path == InletPath || path == OutletPath || path == UsagePath }

func (e *Endpoints) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		e.refuse(w, "", http.StatusMethodNotAllowed, r.URL.Path+" only answers POST", "method_not_allowed")
		return
	}
	switch res, wait := e.authorized(r); res {
	case identity.Right:
	case identity.Throttled:
		secs := identity.RetryAfterSeconds(wait)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		e.refuse(w, "", http.StatusTooManyRequests, fmt.Sprintf("Too many failed attempts; retry after %d seconds", secs), "rate_limited")
		return
	default:
		e.refused(http.StatusUnauthorized, "unauthorized", "", r.URL.Path)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized"})
		return
	}
	raw, err := body.Read(w, r, e.maxBodyBytes, e.bodyTimeout)
	if errors.Is(err, body.ErrTooLarge) {
		e.refuse(w, "", http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body is larger than the limit of %d bytes (max_body_size)", e.maxBodyBytes), "request_too_large")
		return
	}
	if errors.Is(err, body.ErrTimeout) {
		e.refuse(w, "", http.StatusRequestTimeout,
			fmt.Sprintf("request body not received within %v (body_timeout)", e.bodyTimeout), "request_timeout")
		return
	}
	if err != nil {
		e.refuse(w, "", http.StatusBadRequest, err.Error(), "invalid_request")
		return
	}
	if r.URL.Path == UsagePath {
		e.usage(r.Context(), w, raw)
		return
	}
	call, err := openwebui.ParseFilterCall(raw)
	if err != nil {
		e.refuse(w, "", http.StatusBadRequest, err.Error(), "invalid_request")
		return
	}
	// Money moves even if the function gives up waiting: finish the write.
	ctx := context.WithoutCancel(r.Context())
	switch r.URL.Path {
	case InletPath:
		e.inlet(ctx, w, call)
	case OutletPath:
		e.outlet(ctx, w, call)
	default:
		e.refuse(w, "", http.StatusNotFound, "no such endpoint: "+r.URL.Path, "not_found")
	}
}

// authorized checks the bearer key. Wrong ones are counted per client
// address; a client with too many gets Throttled, whatever it sends, until
// its budget refills. No key at all counts nothing.
func (e *Endpoints) authorized(r *http.Request) (identity.Result, time.Duration) {
	return e.throttle.Check(identity.ClientAddr(r), e.key, identity.BearerToken(r))
}

type inletAnswer struct {
	Success   bool          `json:"success"`
	Balance   money.Amount  `json:"balance"`
	InletCost *money.Amount `json:"inlet_cost,omitempty"`
	Message   string        `json:"message"`
}

func (e *Endpoints) inlet(ctx context.Context, w http.ResponseWriter, call openwebui.FilterCall) {
	res, err := e.ledger.PreChargeInlet(ctx, ledger.PreCharge{
		User:  userOf(call),
		Model: call.Model, ChatID: call.ChatID, MessageID: call.MessageID,
		Source: ledger.SourceFunction,
	})
	if err != nil {
		e.storageFailed(w, "inlet", call.UserID, err)
		return
	}
	if o := res.OverLimit; o != nil {
		// 200 with success false, as the function (and the old monitor's)
		// reads a refusal to show: it stops the chat with the error.
		e.refused(http.StatusOK, "budget_limit", call.UserID, InletPath)
		msg := o.Message()
		writeJSON(w, http.StatusOK, limitAnswer{Balance: res.Balance, Error: msg, Message: msg, Limit: limitOf(o)})
		return
	}
	out := inletAnswer{Success: true, Balance: res.Balance, Message: "Request successful"}
	if res.Blocked {
		out.Balance = money.Units(-1) // the function treats ≤ 0 as "refuse"
	}
	switch {
	case res.Blocked:
		e.refused(http.StatusOK, "blocked", call.UserID, InletPath)
	case out.Balance <= 0:
		e.refused(http.StatusOK, "insufficient_balance", call.UserID, InletPath)
	}
	if res.Charged > 0 {
		out.InletCost = &res.Charged
	}
	writeJSON(w, http.StatusOK, out)
}

// limitAnswer is the inlet's refusal of a chat over a budget limit.
type limitAnswer struct {
	Success bool         `json:"success"` // false
	Balance money.Amount `json:"balance"`
	Error   string       `json:"error"`
	Message string       `json:"message"`
	Limit   LimitJSON    `json:"limit"`
}

// LimitJSON is a budget limit with its window's usage, as the function
// endpoints and the user's page (/me) write it: one shape, in the ledger.
type LimitJSON = ledger.LimitJSON

func limitOf(o *ledger.OverLimit) LimitJSON { return o.JSON() }

type outletAnswer struct {
	Success      bool         `json:"success"`
	InputTokens  int64        `json:"inputTokens"`
	OutputTokens int64        `json:"outputTokens"`
	TotalCost    money.Amount `json:"totalCost"`
	NewBalance   money.Amount `json:"newBalance"`
	Message      string       `json:"message"`
}

func (e *Endpoints) outlet(ctx context.Context, w http.ResponseWriter, call openwebui.FilterCall) {
	o := ledger.Observation{
		User: userOf(call), Model: call.Model, BaseModelID: call.BaseModelID,
		ChatID: call.ChatID, MessageID: call.MessageID,
		Source: ledger.SourceFunction, Purpose: "chat",
		Ended: ledger.EndReply,
	}
	reply, hasReply := call.Reply()
	var usage openwebui.Usage
	var content string
	if hasReply {
		var err error
		if usage, err = openwebui.ReplyUsage(reply, call.ReplyIndex(), e.ledger.MaxTokensPerCall()); err != nil {
			e.refuse(w, call.UserID, http.StatusBadRequest, err.Error(), "invalid_request")
			return
		}
		content = openwebui.ContentText(reply)
	}
	o.Usage = ledger.Usage{Input: usage.Input, Output: usage.Output, Cached: usage.Cached, Reasoning: usage.Reasoning, Reported: usage.Reported}
	o.Produced = content != ""
	if !usage.Reported { // only an estimate needs the counts
		o.PromptTokens = e.counter.Messages(call.Model, call.Prompt())
		o.OutputTokens = e.counter.Text(call.Model, content)
	}
	res, err := e.ledger.Settle(ctx, o)
	if errors.Is(err, store.ErrOutOfRange) {
		// The tokens and the price are fine alone, but the cost, or the
		// balance after it, does not fit in an amount: nothing was charged.
		field := "body.messages"
		if usage.Reported {
			field = openwebui.ReplyUsageField(reply, call.ReplyIndex())
		}
		e.refuse(w, call.UserID, http.StatusUnprocessableEntity, field+": "+strings.TrimPrefix(err.Error(), "charge: ")+
			"; nothing was charged", "out_of_range")
		return
	}
	if err != nil {
		e.storageFailed(w, "outlet", call.UserID, err)
		return
	}
	msg := "Request successful"
	if res.Deferred {
		msg = "Charge kept: the monitor's database is unavailable, and the charge is written once it is back"
	}
	writeJSON(w, http.StatusOK, outletAnswer{
		Success:     true,
		InputTokens: res.Record.InputTokens, OutputTokens: res.Record.OutputTokens,
		TotalCost: res.Record.Cost, NewBalance: res.Record.BalanceAfter,
		Message: msg,
	})
}

type usageQuery struct {
	User struct {
		ID string `json:"id"`
	} `json:"user"`
	ChatID    string `json:"chat_id"`
	MessageID string `json:"message_id"`
}

type usageAnswer struct {
	Success      bool         `json:"success"`
	Model        string       `json:"model"`
	InputTokens  int64        `json:"inputTokens"`
	OutputTokens int64        `json:"outputTokens"`
	TotalCost    money.Amount `json:"totalCost"`
	Balance      money.Amount `json:"balance"`
	Status       string       `json:"status"`    // completed, pending (still held), cancelled, failed, expired
	Estimated    bool         `json:"estimated"` // tokens counted by the monitor, not reported
	Source       string       `json:"source"`    // the path that charged it
}

// usage answers what one message of the user was charged (POST
// /api/v1/usage, {"user": {"id"}, "chat_id", "message_id"}): its tokens,
// cost and status, and the user's balance now. A message charged by the
// provider meter is the sum of its records, as the outlet answers it. A
// message with no charge, or another user's, is a 404.
func (e *Endpoints) usage(ctx context.Context, w http.ResponseWriter, raw []byte) {
	var q usageQuery
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&q); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error(), "invalid_request")
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "body: data after the JSON value", "invalid_request")
		return
	}
	switch {
	case q.User.ID == "":
		writeError(w, http.StatusBadRequest, "user.id: required", "invalid_request")
		return
	case q.MessageID == "":
		writeError(w, http.StatusBadRequest, "message_id: required", "invalid_request")
		return
	}
	st := e.ledger.Store()
	rec, err := st.RecordByKey(ctx, ledger.Key(q.ChatID, q.MessageID))
	if errors.Is(err, store.ErrNotFound) || err == nil && rec.UserID != q.User.ID {
		writeError(w, http.StatusNotFound, "no charge recorded for this message", "not_found")
		return
	}
	if err != nil {
		e.usageUnavailable(w, err)
		return
	}
	out := usageAnswer{
		Success: true, Model: rec.Model, InputTokens: rec.InputTokens, OutputTokens: rec.OutputTokens,
		TotalCost: rec.Cost, Status: rec.Status, Estimated: rec.Estimated, Source: rec.Source,
	}
	if rec.Source == ledger.SourceProvider {
		u, err := st.MessageUsage(ctx, ledger.SourceProvider, q.ChatID, q.MessageID)
		if err != nil {
			e.usageUnavailable(w, err)
			return
		}
		if u.Records > 0 {
			out.Model, out.InputTokens, out.OutputTokens, out.TotalCost = u.Model, u.InputTokens, u.OutputTokens, u.Cost
		}
	}
	user, err := st.User(ctx, q.User.ID)
	if err != nil {
		e.usageUnavailable(w, err)
		return
	}
	out.Balance = user.Balance
	writeJSON(w, http.StatusOK, out)
}

func (e *Endpoints) usageUnavailable(w http.ResponseWriter, err error) {
	e.log.Error("storage failed", "endpoint", "usage", "error", err)
	writeError(w, http.StatusServiceUnavailable, "the monitor's database is unavailable; try again", "storage_unavailable")
}

func userOf(c openwebui.FilterCall) store.UserInfo {
	return store.UserInfo{ID: c.UserID, Email: c.Email, Name: c.Name, Role: c.Role}
}

func (e *Endpoints) storageFailed(w http.ResponseWriter, what, user string, err error) {
	e.log.Error("storage failed; nothing was charged", "endpoint", what, "error", err)
	e.refuse(w, user, http.StatusServiceUnavailable,
		"the monitor's database is unavailable; nothing was charged, try again", "storage_unavailable")
}

// refuse answers an error and counts and logs it as a refusal.
func (e *Endpoints) refuse(w http.ResponseWriter, user string, status int, msg, kind string) {
	e.refused(status, kind, user, "")
	writeError(w, status, msg, kind)
}

// refused counts and logs a refusal of the function's endpoints: every
// one passes here (the inlet's answer that makes the function refuse a
// chat too). The line names the reason, never the body or the key.
func (e *Endpoints) refused(status int, reason, user, route string) {
	e.ledger.Metrics().Refused(ledger.SourceFunction, reason)
	attrs := []any{"path", ledger.SourceFunction, "status", status, "reason", reason}
	if route != "" {
		attrs = append(attrs, "route", route)
	}
	if user != "" {
		attrs = append(attrs, "user", user)
	}
	e.log.Info("refused", attrs...)
}

func writeError(w http.ResponseWriter, status int, msg, kind string) {
	writeJSON(w, status, map[string]any{"success": false, "error": msg, "error_type": kind})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"success":false,"error":"could not encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
