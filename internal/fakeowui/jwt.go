package fakeowui

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// SignJWT returns an HS256 JWT with header {"alg":"HS256","typ":"JWT"} and
// the given claims, as PyJWT encodes OpenWebUI's session tokens (§2b).
func SignJWT(secret string, claims map[string]any) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(mustJSON(claims))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// verifyJWT is the fake's own check, like OpenWebUI's
// jwt.decode(token, secret, algorithms=["HS256"]); it returns claims "id"
// and "exp" (nil when absent).
func verifyJWT(token, secret string, now time.Time) (id string, exp *int64, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", nil, errors.New("malformed")
	}
	enc := base64.RawURLEncoding
	var header struct{ Alg string }
	if h, err := enc.DecodeString(parts[0]); err != nil || json.Unmarshal(h, &header) != nil || header.Alg != "HS256" {
		return "", nil, errors.New("bad header")
	}
	sig, sigErr := enc.DecodeString(parts[2])
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if sigErr != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return "", nil, errors.New("bad signature")
	}
	var claims struct {
		ID  string   `json:"id"`
		Exp *float64 `json:"exp"`
	}
	if p, err := enc.DecodeString(parts[1]); err != nil || json.Unmarshal(p, &claims) != nil {
		return "", nil, errors.New("bad payload")
	}
	if claims.Exp != nil && int64(*claims.Exp) <= now.Unix() {
		return "", nil, errors.New("expired")
	}
	if claims.ID == "" {
		return "", nil, errors.New("no id")
	}
	if claims.Exp != nil {
		e := int64(*claims.Exp)
		exp = &e
	}
	return claims.ID, exp, nil
}
