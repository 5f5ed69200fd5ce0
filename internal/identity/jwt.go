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

// verifyHS256 checks a session token the way OpenWebUI's
// jwt.decode(token, secret, algorithms=["HS256"]) does, as far as
// OpenWebUI-issued tokens go: verifyJWS, then the session claims.
func verifyHS256(token, secret string, now time.Time) (claims, error) {
	raw, err := verifyJWS(token, secret)
	if err != nil {
		return claims{}, err
	}
	var payload struct {
		ID  any          `json:"id"`
		Exp *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(raw, &payload); err != nil {
		return claims{}, errMalformed
	}
	var c claims
	if payload.Exp != nil {
		exp, err := checkExp(*payload.Exp, now)
		if err != nil {
			return claims{}, err
		}
		c.Exp = exp
	}
	id, _ := payload.ID.(string)
	if id == "" {
		return claims{}, errNoID
	}
	c.ID = id
	return c, nil
}

// verifyJWS checks a compact JWS the way PyJWT's
// jwt.decode(token, secret, algorithms=["HS256"]) does (three parts, alg
// HS256, the HMAC-SHA256 signature with secret) and returns the decoded
// payload JSON; the claims are left to the caller. It is the one HS256
// verifier, for the session token and the forwarded-user JWT.
func verifyJWS(token, secret string) ([]byte, error) {
	h64, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, errMalformed
	}
	p64, s64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(s64, ".") {
		return nil, errMalformed
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := decodeJSON(h64, &header); err != nil {
		return nil, errMalformed
	}
	if header.Alg != "HS256" {
		return nil, errAlg
	}
	sig, err := b64(s64)
	if err != nil {
		return nil, errMalformed
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(token[:len(h64)+1+len(p64)]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, errSignature
	}
	payload, err := b64(p64)
	if err != nil {
		return nil, errMalformed
	}
	return payload, nil
}

// checkExp reads an exp claim as PyJWT does (int(exp)) and fails when the
// token has expired (exp <= now).
func checkExp(n json.Number, now time.Time) (time.Time, error) {
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, errMalformed
	}
	exp := time.Unix(int64(min(max(f, -1<<62), 1<<62)), 0)
	if !now.Before(exp) {
		return time.Time{}, errExpired
	}
	return exp, nil
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
