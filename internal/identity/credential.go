// Package identity finds out who is calling OpenWebUI: it picks the
// credential a request carries, as OpenWebUI does, and resolves it to a user
// by verifying the JWT locally and asking OpenWebUI's GET /api/v1/auths/,
// with a short cache (research notes openwebui-flow.md §2, §9).
package identity

import (
	"net/http"
	"strings"
)

// Where Credential found the token.
const (
	SourceBearer        = "bearer"        // Authorization: Bearer <token>
	SourceCookie        = "cookie"        // cookie "token"
	SourceAuthorization = "authorization" // Authorization: <other scheme> <token>
	SourceHeader        = "x-api-key"     // the API-key header (CUSTOM_API_KEY_HEADER)
)

// DefaultAPIKeyHeader is the header OpenWebUI reads API keys from unless
// CUSTOM_API_KEY_HEADER names another (env.py, since 0.9.4).
const DefaultAPIKeyHeader = "x-api-key"

// Credential returns the token OpenWebUI would authenticate r with and where
// it was found; both are empty when there is none. Precedence (§2a):
// Authorization Bearer, then the "token" cookie, then the API-key header,
// apiKeyHeader (OpenWebUI's CUSTOM_API_KEY_HEADER; "" means x-api-key).
//
// Parsing mirrors OpenWebUI 0.11 (FastAPI HTTPBearer, Starlette cookies,
// AuthTokenMiddleware) so that the proxy and OpenWebUI never pick different
// credentials from one request. Two consequences: a present but empty
// "token" cookie yields ("", SourceCookie), which OpenWebUI rejects rather
// than trying x-api-key; and "Authorization: <scheme> <t>" with a scheme
// other than Bearer still wins over x-api-key, because OpenWebUI's middleware
// takes it.
func Credential(r *http.Request, apiKeyHeader string) (token string, source string) {
	auth := r.Header.Get("Authorization")
	// HTTPBearer: split at the first space, scheme case-insensitive.
	if scheme, cred, _ := strings.Cut(auth, " "); cred != "" && strings.EqualFold(scheme, "bearer") {
		return cred, SourceBearer
	}
	if t, ok := cookieToken(r.Header); ok {
		return t, SourceCookie
	}
	// get_http_authorization_cred: exactly two space-separated parts, any
	// scheme.
	if _, cred, ok := strings.Cut(auth, " "); ok && !strings.Contains(cred, " ") {
		return cred, SourceAuthorization
	}
	if apiKeyHeader == "" {
		apiKeyHeader = DefaultAPIKeyHeader
	}
	if t := r.Header.Get(apiKeyHeader); t != "" {
		return t, SourceHeader
	}
	return "", ""
}

// cookieToken reads "token" the way Starlette's cookie_parser does: only the
// first Cookie header counts, and a later "token" in it overrides an earlier
// one (net/http would return the first).
func cookieToken(h http.Header) (string, bool) {
	v := h["Cookie"]
	if len(v) == 0 {
		return "", false
	}
	var tok string
	found := false
	for chunk := range strings.SplitSeq(v[0], ";") {
		key, val, ok := strings.Cut(chunk, "=")
		if ok && strings.TrimSpace(key) == "token" {
			tok, found = unquote(strings.TrimSpace(val)), true
		}
	}
	return tok, found
}

// unquote strips the double quotes http.cookies._unquote removes. JWTs and
// API keys contain no escapes, so those are left alone.
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}
