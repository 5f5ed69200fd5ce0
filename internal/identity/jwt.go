package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"time"
)

// claims are the parts of OpenWebUI's session JWT we use (§2b).
type claims struct {
	ID  string
	Exp time.Time // zero: the token never expires (JWT_EXPIRES_IN=-1)
}

var (
	errMalformed = errors.New("malformed JWT")
	errAlg       = errors.New("JWT algorithm is not HS256")
	errSignature = errors.New("bad JWT signature")
	errExpired   = errors.New("JWT expired")
	errNoID      = errors.New("JWT has no user id")
)

// verifyHS256 checks a token the way OpenWebUI's jwt.decode(token, secret,
// algorithms=["HS256"]) does, as far as OpenWebUI-issued tokens go.
func verifyHS256(token, secret string, now time.Time) (claims, error) {
	h64, rest, ok := strings.Cut(token, ".")
	if !ok {
		return claims{}, errMalformed
	}
	p64, s64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(s64, ".") {
		return claims{}, errMalformed
	}

	var header struct {
		Alg string `json:"alg"`
	}
	if err := decodeJSON(h64, &header); err != nil {
		return claims{}, errMalformed
	}
	if header.Alg != "HS256" {
		return claims{}, errAlg
	}

	sig, err := b64(s64)
	if err != nil {
		return claims{}, errMalformed
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(token[:len(h64)+1+len(p64)]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return claims{}, errSignature
	}

	var payload struct {
		ID  any          `json:"id"`
		Exp *json.Number `json:"exp"`
	}
	if err := decodeJSON(p64, &payload); err != nil {
		return claims{}, errMalformed
	}
	var c claims
	if payload.Exp != nil {
		// PyJWT: int(exp), expired when exp <= now.
		f, err := payload.Exp.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return claims{}, errMalformed
		}
		c.Exp = time.Unix(int64(min(max(f, -1<<62), 1<<62)), 0)
		if !now.Before(c.Exp) {
			return claims{}, errExpired
		}
	}
	id, _ := payload.ID.(string)
	if id == "" {
		return claims{}, errNoID
	}
	c.ID = id
	return c, nil
}

// b64 decodes base64url with or without padding, as PyJWT accepts both.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func decodeJSON(s string, v any) error {
	raw, err := b64(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
