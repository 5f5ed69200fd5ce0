package edge

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/openwebui"
	"github.com/openwebui-monitor/owmon/internal/store"
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
	if !sharedKeyOK(r, pc.SharedKey) {
		writeProviderError(w, r.URL.Path, kind, http.StatusUnauthorized,
			"Incorrect API key for the usage meter: set the connection's key in OpenWebUI to the meter's provider_key.", "invalid_api_key")
		return nil, true
	}
	r.Header.Del("Authorization")
	r.Header.Del("X-Api-Key")
	fwd, named, err := identity.FromForwardedHeaders(r.Header, pc.UserJWTSecret, time.Now())
	dropOpenWebUIHeaders(r.Header)
	if !isModelCall {
		return nil, false
	}
	if err != nil {
		g.log.Warn("refused a model call whose forwarded user cannot be trusted", "error", err)
		writeProviderError(w, r.URL.Path, kind, http.StatusForbidden,
			"The usage meter cannot trust the user this call names: "+strings.TrimPrefix(err.Error(), identity.ErrForgedIdentity.Error()+": "), "invalid_user_identity")
		return nil, true
	}
	c := &Call{g: g, ctx: r.Context(), user: fwd.User, kind: kind, path: r.URL.Path, start: time.Now(),
		source: store.SourceProvider, enforce: g.cfg.Enforce, chatID: fwd.ChatID, messageID: fwd.MessageID}
	if !named {
		c.user = pc.SystemUser
		c.enforce = false
	}
	return c.admitted(w, r)
}

// sharedKeyOK compares the caller's key with the shared key in constant
// time. OpenWebUI sends it as "Authorization: Bearer"; Anthropic-style
// clients as x-api-key.
func sharedKeyOK(r *http.Request, shared identity.Secret) bool {
	got := identity.BearerToken(r)
	if got == "" {
		got = r.Header.Get("X-Api-Key")
	}
	return shared.Matches(got)
}

// writeProviderError answers in the error format of the API the caller
// spoke: Ollama's {"error": "..."}, Anthropic's typed error, or OpenAI's
// {"error": {"message", "type", "code"}}. OpenWebUI shows each one's
// message in the chat.
func writeProviderError(w http.ResponseWriter, path string, kind openwebui.RouteKind, status int, msg, code string) {
	var body any
	switch {
	case strings.HasPrefix(path, "/api/"): // Ollama's own API
		body = map[string]string{"error": msg}
	case kind == openwebui.RouteAnthropic:
		body = map[string]any{"type": "error", "error": map[string]string{"type": code, "message": msg}}
	default:
		body = map[string]any{"error": map[string]any{"message": msg, "type": code, "code": code, "param": nil}}
	}
	b, _ := json.Marshal(body) // maps of strings: always encodes
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
