// Package function serves /api/v1/inlet and /api/v1/outlet, the two
// endpoints the OpenWebUI "Usage Monitor" filter function calls, with the
// request and answer shapes of the monitor it replaces.
package function

import (
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

// Paths of the two endpoints.
const (
	InletPath  = "/api/v1/inlet"
	OutletPath = "/api/v1/outlet"
)

// Endpoints serves inlet and outlet.
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
func Handles(path string) bool { return path == InletPath || path == OutletPath }

func (e *Endpoints) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, r.URL.Path+" only answers POST", "method_not_allowed")
		return
	}
	switch res, wait := e.authorized(r); res {
	case identity.Right:
	case identity.Throttled:
		secs := identity.RetryAfterSeconds(wait)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("Too many failed attempts; retry after %d seconds", secs), "rate_limited")
		return
	default:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized"})
		return
	}
	raw, err := body.Read(w, r, e.maxBodyBytes, e.bodyTimeout)
	if errors.Is(err, body.ErrTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body is larger than the limit of %d bytes (max_body_size)", e.maxBodyBytes), "request_too_large")
		return
	}
	if errors.Is(err, body.ErrTimeout) {
		writeError(w, http.StatusRequestTimeout,
			fmt.Sprintf("request body not received within %v (body_timeout)", e.bodyTimeout), "request_timeout")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "invalid_request")
		return
	}
	call, err := openwebui.ParseFilterCall(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "invalid_request")
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
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path, "not_found")
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
		e.storageFailed(w, "inlet", err)
		return
	}
	out := inletAnswer{Success: true, Balance: res.Balance, Message: "Request successful"}
	if res.Blocked {
		out.Balance = money.Units(-1) // the function treats ≤ 0 as "refuse"
	}
	if res.Charged > 0 {
		out.InletCost = &res.Charged
	}
	writeJSON(w, http.StatusOK, out)
}

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
			writeError(w, http.StatusBadRequest, err.Error(), "invalid_request")
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
		writeError(w, http.StatusUnprocessableEntity, field+": "+strings.TrimPrefix(err.Error(), "charge: ")+
			"; nothing was charged", "out_of_range")
		return
	}
	if err != nil {
		e.storageFailed(w, "outlet", err)
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

func userOf(c openwebui.FilterCall) store.UserInfo {
	return store.UserInfo{ID: c.UserID, Email: c.Email, Name: c.Name, Role: c.Role}
}

func (e *Endpoints) storageFailed(w http.ResponseWriter, what string, err error) {
	e.log.Error("storage failed; nothing was charged", "endpoint", what, "error", err)
	writeError(w, http.StatusServiceUnavailable,
		"the monitor's database is unavailable; nothing was charged, try again", "storage_unavailable")
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
