package identity

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Secret is a configured key or token that callers must present. It keeps
// only a digest and compares digests in constant time, so the time taken
// depends on neither the secret nor its length.
type Secret struct {
	hash [sha256.Size]byte
	set  bool
}

// NewSecret returns s as a Secret; "" is no secret, which nothing matches.
func NewSecret(s string) Secret {
	return Secret{hash: sha256.Sum256([]byte(s)), set: s != ""}
}

// Set reports whether a secret is configured.
func (s Secret) Set() bool { return s.set }

// Matches reports whether got, surrounding spaces aside, is the secret.
func (s Secret) Matches(got string) bool {
	got = strings.TrimSpace(got)
	if !s.set || got == "" {
		return false
	}
	h := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(h[:], s.hash[:]) == 1
}

// BearerToken returns the token of "Authorization: Bearer <token>", or "".
func BearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
