package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Header names OpenWebUI sets on calls to model providers when
// ENABLE_FORWARD_USER_INFO_HEADERS=true (backend/open_webui/utils/headers.py).
// They are OpenWebUI's defaults; FORWARD_USER_INFO_HEADER_* can rename them.
const (
	HeaderUserID    = "X-OpenWebUI-User-Id"    // since 0.3.35
	HeaderUserEmail = "X-OpenWebUI-User-Email" // since 0.3.35
	HeaderUserName  = "X-OpenWebUI-User-Name"  // since 0.3.35, URL-quoted
	HeaderUserRole  = "X-OpenWebUI-User-Role"  // since 0.3.35
	HeaderUserJWT   = "X-OpenWebUI-User-Jwt"   // since 0.9.6, replaces the four above
	HeaderChatID    = "X-OpenWebUI-Chat-Id"    // since 0.6.17
	HeaderMessageID = "X-OpenWebUI-Message-Id"
)

// forwardedIssuer is the iss claim OpenWebUI puts in X-OpenWebUI-User-Jwt.
const forwardedIssuer = "open-webui"

// ErrForgedIdentity is wrapped by every error FromForwardedHeaders returns:
// the request claims a user but the claim cannot be trusted. The caller must
// refuse the request rather than meter it to anyone.
var ErrForgedIdentity = errors.New("identity: forwarded user identity cannot be trusted")

var (
	errUnsignedHeaders = errors.New("plain X-OpenWebUI-User-* headers without a signed X-OpenWebUI-User-Jwt")
	errIssuer          = errors.New("JWT issuer is not open-webui")
	errNoExp           = errors.New("JWT has no exp")
)

// Forwarded is the caller of a model call as OpenWebUI forwards it to a
// provider: the user it runs for, and the chat turn it belongs to.
type Forwarded struct {
	User      User
	ChatID    string // X-OpenWebUI-Chat-Id; empty for calls outside a chat
	MessageID string // X-OpenWebUI-Message-Id: the assistant message
	Signed    bool   // User came from a verified X-OpenWebUI-User-Jwt
}

// FromForwardedHeaders reads the identity OpenWebUI forwards to a provider.
// present reports whether the headers name a user at all; when it is false
// and err is nil the call carries no user (the caller meters it to a system
// account). ChatID and MessageID are filled in every case.
//
// With secret (OpenWebUI's FORWARD_USER_INFO_HEADER_JWT_SECRET) set, only a
// valid X-OpenWebUI-User-Jwt counts: HS256 with that secret, an exp in the
// future, iss "open-webui" when present, and a user id in sub (or id). Plain
// X-OpenWebUI-User-* headers without such a JWT are refused, and so is any
// JWT that fails verification, even though OpenWebUI itself falls back to
// plain headers when minting the JWT fails: whoever reaches the listener
// could otherwise claim to be anyone.
//
// With no secret, the plain headers are used as they are; they are only as
// trustworthy as the network path to the listener. An X-OpenWebUI-User-Jwt
// header is then ignored: it cannot be verified, and decoding it without
// verification would add nothing the plain headers do not already say.
//
// Every non-nil error wraps ErrForgedIdentity.
func FromForwardedHeaders(h http.Header, secret string, now time.Time) (Forwarded, bool, error) {
	f := Forwarded{
		ChatID:    strings.TrimSpace(h.Get(HeaderChatID)),
		MessageID: strings.TrimSpace(h.Get(HeaderMessageID)),
	}
	plain := User{
		ID:    strings.TrimSpace(h.Get(HeaderUserID)),
		Email: strings.TrimSpace(h.Get(HeaderUserEmail)),
		Name:  unquoteName(strings.TrimSpace(h.Get(HeaderUserName))),
		Role:  strings.TrimSpace(h.Get(HeaderUserRole)),
	}
	hasPlain := plain != User{}

	if secret != "" {
		token := strings.TrimSpace(h.Get(HeaderUserJWT))
		if token == "" {
			if hasPlain {
				return f, false, fmt.Errorf("%w: %w", ErrForgedIdentity, errUnsignedHeaders)
			}
			return f, false, nil
		}
		u, err := verifyForwardedJWT(token, secret, now)
		if err != nil {
			return f, false, fmt.Errorf("%w: %w", ErrForgedIdentity, err)
		}
		f.User, f.Signed = u, true
		return f, true, nil
	}

	if !hasPlain {
		return f, false, nil
	}
	if plain.ID == "" {
		return f, false, fmt.Errorf("%w: %s without %s", ErrForgedIdentity, "X-OpenWebUI-User-* headers", HeaderUserID)
	}
	f.User = plain
	return f, true, nil
}

// unquoteName undoes OpenWebUI's quote(name, safe=' ') on the plain name
// header; a value that is not valid percent-encoding is kept as it is.
func unquoteName(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// verifyForwardedJWT checks OpenWebUI's forwarded-user JWT, minted by
// utils/headers.py _mint_forward_user_jwt as
// {sub, email, name, role, iss: "open-webui", iat, exp}.
func verifyForwardedJWT(token, secret string, now time.Time) (User, error) {
	payload, err := verifyJWS(token, secret)
	if err != nil {
		return User{}, err
	}
	var c struct {
		Sub   any          `json:"sub"`
		ID    any          `json:"id"`
		Email any          `json:"email"`
		Name  any          `json:"name"`
		Role  any          `json:"role"`
		Iss   *string      `json:"iss"`
		Exp   *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return User{}, errMalformed
	}
	// OpenWebUI always sets exp; a token without one would never expire.
	if c.Exp == nil {
		return User{}, errNoExp
	}
	if _, err := checkExp(*c.Exp, now); err != nil {
		return User{}, err
	}
	if c.Iss != nil && *c.Iss != forwardedIssuer {
		return User{}, errIssuer
	}
	id := claimString(c.Sub)
	if id == "" {
		id = claimString(c.ID)
	}
	if id == "" {
		return User{}, errNoID
	}
	return User{
		ID:    id,
		Email: claimString(c.Email),
		Name:  claimString(c.Name),
		Role:  claimString(c.Role),
	}, nil
}

func claimString(v any) string {
	s, _ := v.(string)
	return strings.TrimSpace(s)
}
