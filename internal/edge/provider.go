package edge

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/openwebui"
)

// ProviderConfig says whom the meter between OpenWebUI and its model
// providers trusts, and whom it charges.
type ProviderConfig struct {
	// SharedKey is the API key OpenWebUI's connection sends; every other
	// caller is refused. Required.
	SharedKey identity.Secret
	// UserJWTSecret is OpenWebUI's FORWARD_USER_INFO_HEADER_JWT_SECRET.
	// Set, only a valid signed X-OpenWebUI-User-Jwt names the user; empty,
	// the plain X-OpenWebUI-User-* headers do.
	UserJWTSecret string
	// SystemUser is charged for calls that name no user (forwarding off,
	// or OpenWebUI working for nobody in particular). Its calls are
	// metered but never refused.
	SystemUser identity.User
}

// BeginProvider is Begin for the hop between OpenWebUI and a provider: the
// listener OpenWebUI uses as a connection's base URL. Every request must
// carry the shared key, which is removed (the operator's reverse_proxy sets
// the provider's own key). Model calls are charged to the user OpenWebUI
// forwards, gated, held and metered like the front's; refusals speak the
// provider's error format, which OpenWebUI shows in the chat. OpenWebUI's
// identity headers never reach the provider.
func (g *Gate) BeginProvider(w http.ResponseWriter, r *http.Request, pc ProviderConfig) (call *Call, handled bool) {
	kind, isModelCall := openwebui.ClassifyProviderRoute(r.Method, r.URL.Path)
	c := &Call{g: g, ctx: r.Context(), kind: kind, path: r.URL.Path, start: time.Now(),
		source: ledger.SourceProvider, enforce: g.cfg.Enforce}
	switch res, wait := g.sharedKeyOK(r, pc.SharedKey); res {
	case identity.Right:
	case identity.Throttled:
		secs := identity.RetryAfterSeconds(wait)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		c.refuse(w, http.StatusTooManyRequests, fmt.Sprintf("Too many failed attempts; retry after %d seconds", secs), "rate_limited")
		return nil, true
	default:
		c.refuse(w, http.StatusUnauthorized,
			"Incorrect API key for the usage meter: set the connection's key in OpenWebUI to the meter's provider_key.", "invalid_api_key")
		return nil, true
	}
	r.Header.Del("Authorization")
	r.Header.Del("X-Api-Key")
	fwd, named, err := identity.FromForwardedHeaders(r.Header, pc.UserJWTSecret, time.Now())
	dropOpenWebUIHeaders(r.Header, "")
	if !isModelCall {
		return nil, false
	}
	if err != nil {
		g.log.Warn("refused a model call whose forwarded user cannot be trusted", "error", err)
		c.refuse(w, http.StatusForbidden,
			"The usage meter cannot trust the user this call names: "+strings.TrimPrefix(err.Error(), identity.ErrForgedIdentity.Error()+": "), "invalid_user_identity")
		return nil, true
	}
	c.user, c.chatID, c.messageID = fwd.User, fwd.ChatID, fwd.MessageID
	if !named {
		c.user = pc.SystemUser
		c.enforce = false
	}
	return c.admitted(w, r)
}

// sharedKeyOK compares the caller's key with the shared key in constant
// time. OpenWebUI sends it as "Authorization: Bearer"; Anthropic-style
// clients as x-api-key. Wrong keys are counted per client address; a
// client with too many gets Throttled, whatever it sends, until its budget
// refills. No key at all counts nothing.
func (g *Gate) sharedKeyOK(r *http.Request, shared identity.Secret) (identity.Result, time.Duration) {
	got := identity.BearerToken(r)
	if got == "" {
		got = r.Header.Get("X-Api-Key")
	}
	return g.keys.Check(identity.ClientAddr(r), shared, got)
}
