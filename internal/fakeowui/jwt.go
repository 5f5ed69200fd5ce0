package fakeowui

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math"
	"math/big"
	"strconv"
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

// verifyJWT is OpenWebUI's check of a session token: utils/auth.py
// decode_token (jwt.decode(token, SESSION_SECRET, algorithms=["HS256"]))
// and then get_current_user's "'id' in data" with a string id. It returns
// the claims "id" and "exp" (nil when absent).
func verifyJWT(token, secret string, now time.Time) (id string, exp *int64, err error) {
	claims, err := decodeJWT(token, secret, now)
	if err != nil {
		return "", nil, err
	}
	idv := claims.vals["id"]
	if idv == nil || idv.kind != pyString || idv.text == "" {
		return "", nil, errors.New("no id")
	}
	if e := claims.vals["exp"]; e != nil {
		if n, ok := pyInt(e); ok {
			v := clampInt64(n)
			exp = &v
		}
	}
	return idv.text, exp, nil
}

// decodeJWT is PyJWT's jwt.decode(token, secret, algorithms=["HS256"])
// (jwt/api_jws.py PyJWS._load, decode_complete, _verify_signature;
// jwt/api_jwt.py decode_complete, _validate_claims): the claims object, or
// an error. It accepts what PyJWT accepts, leniency included:
//
//   - the signature is split off at the last '.', the header at the first,
//     so a payload segment may hold dots;
//   - segments are base64-decoded by pyBase64URLDecode (characters outside
//     the alphabet are skipped, '=' may end the data early);
//   - header and claims are read by Python's json (NaN, duplicate keys);
//   - iat must be a number not in the future, nbf and exp anything int()
//     takes (numbers, numeric strings), nbf not in the future, exp in it;
//     a non-empty aud fails (no audience is expected).
func decodeJWT(token, secret string, now time.Time) (*pyValue, error) {
	b := []byte(token) // jwt.encode("utf-8")
	dot := bytes.LastIndexByte(b, '.')
	if dot < 0 {
		return nil, errors.New("not enough segments")
	}
	signing, crypto := b[:dot], b[dot+1:]
	h, p, ok := bytes.Cut(signing, []byte("."))
	if !ok {
		return nil, errors.New("not enough segments")
	}
	hb, err := pyBase64URLDecode(h)
	if err != nil {
		return nil, errors.New("invalid header padding")
	}
	header, err := pyLoads(hb)
	if err != nil || header.kind != pyObject {
		return nil, errors.New("invalid header string")
	}
	pb, err := pyBase64URLDecode(p)
	if err != nil {
		return nil, errors.New("invalid payload padding")
	}
	sig, err := pyBase64URLDecode(crypto)
	if err != nil {
		return nil, errors.New("invalid crypto padding")
	}
	// _validate_headers: a kid must be a string.
	if kid := header.vals["kid"]; kid != nil && kid.kind != pyString {
		return nil, errors.New("key ID header parameter must be a string")
	}
	// "b64": false needs a detached payload, which decode_token never gives.
	if b64 := header.vals["b64"]; b64 != nil && b64.kind == pyBool && b64.text == "false" {
		return nil, errors.New("detached payload required")
	}
	if alg := header.vals["alg"]; alg == nil || alg.kind != pyString || alg.text != "HS256" {
		return nil, errors.New("the specified alg value is not allowed")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(signing)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, errors.New("signature verification failed")
	}
	claims, err := pyLoads(pb)
	if err != nil || claims.kind != pyObject {
		return nil, errors.New("invalid payload string")
	}
	t := big.NewInt(now.Unix())
	if iat := claims.vals["iat"]; iat != nil {
		// int(iat) must work, then iat > now compares the original value:
		// only numbers (and booleans) get through.
		n, ok := pyInt(iat)
		if !ok || (iat.kind != pyNumber && iat.kind != pyBool) {
			return nil, errors.New("invalid iat")
		}
		if iat.kind == pyNumber {
			f, _ := strconv.ParseFloat(iat.text, 64)
			if f > float64(now.Unix()) {
				return nil, errors.New("the token is not yet valid (iat)")
			}
		} else if n.Cmp(t) > 0 {
			return nil, errors.New("the token is not yet valid (iat)")
		}
	}
	if nbf := claims.vals["nbf"]; nbf != nil {
		n, ok := pyInt(nbf)
		if !ok || n.Cmp(t) > 0 {
			return nil, errors.New("the token is not yet valid (nbf)")
		}
	}
	if e := claims.vals["exp"]; e != nil {
		n, ok := pyInt(e)
		if !ok || n.Cmp(t) <= 0 {
			return nil, errors.New("signature has expired")
		}
	}
	// _validate_aud without an expected audience: a non-empty aud fails.
	if aud := claims.vals["aud"]; aud != nil && pyTruthy(aud.raw()) {
		return nil, errors.New("invalid audience")
	}
	return claims, nil
}

// pyBase64URLDecode is PyJWT's base64url_decode (jwt/utils.py): pad with
// '=' to a multiple of 4, then base64.urlsafe_b64decode, which maps '-' and
// '_' to '+' and '/' and calls binascii.a2b_base64 in its default,
// non-strict mode (Modules/binascii.c): characters outside the alphabet
// are skipped, so both alphabets work; a '=' after two or three data
// characters of a quad ends the data once the quad is full of them (the
// rest is ignored); '=' elsewhere is skipped; a last quad of one data
// character is an error, of two or three without enough '=' "Incorrect
// padding". Leftover bits of a last partial quad are dropped.
func pyBase64URLDecode(s []byte) ([]byte, error) {
	if rem := len(s) % 4; rem > 0 {
		s = append(append([]byte(nil), s...), bytes.Repeat([]byte("="), 4-rem)...)
	}
	out := make([]byte, 0, len(s)*3/4)
	quad, pads := 0, 0
	var left byte
	for _, c := range s {
		if c == '=' {
			if quad >= 2 {
				pads++
				if quad+pads >= 4 {
					return out, nil
				}
			}
			continue
		}
		var v byte
		switch {
		case c >= 'A' && c <= 'Z':
			v = c - 'A'
		case c >= 'a' && c <= 'z':
			v = c - 'a' + 26
		case c >= '0' && c <= '9':
			v = c - '0' + 52
		case c == '+' || c == '-':
			v = 62
		case c == '/' || c == '_':
			v = 63
		default:
			continue
		}
		pads = 0
		switch quad {
		case 0:
			left, quad = v, 1
		case 1:
			out = append(out, left<<2|v>>4)
			left, quad = v&0x0f, 2
		case 2:
			out = append(out, left<<4|v>>2)
			left, quad = v&0x03, 3
		case 3:
			out = append(out, left<<6|v)
			left, quad = 0, 0
		}
	}
	switch quad {
	case 0:
		return out, nil
	case 1:
		return nil, errors.New("invalid base64-encoded string: number of data characters cannot be 1 more than a multiple of 4")
	default:
		return nil, errors.New("incorrect padding")
	}
}

// pyInt is Python's int(v) for a JSON value: numbers truncate (NaN and
// the infinities fail), booleans are 0 and 1, strings must be a base-10
// integer (surrounding whitespace, a sign and single '_' between digits
// allowed); anything else fails.
func pyInt(v *pyValue) (*big.Int, bool) {
	switch v.kind {
	case pyBool:
		if v.text == "true" {
			return big.NewInt(1), true
		}
		return big.NewInt(0), true
	case pyNumber:
		if n, ok := new(big.Int).SetString(v.text, 10); ok {
			return n, true
		}
		f, err := strconv.ParseFloat(v.text, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, false // NaN, Infinity, a float literal beyond float64
		}
		n, _ := new(big.Float).SetFloat64(math.Trunc(f)).Int(nil)
		return n, true
	case pyString:
		s := pyStrip(v.text)
		sign := ""
		if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
			sign, s = s[:1], s[1:]
		}
		if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
			return nil, false
		}
		s = strings.ReplaceAll(s, "_", "")
		for _, c := range s {
			if c < '0' || c > '9' {
				return nil, false
			}
		}
		n, ok := new(big.Int).SetString(sign+s, 10)
		return n, ok
	}
	return nil, false
}

func clampInt64(n *big.Int) int64 {
	switch {
	case n.IsInt64():
		return n.Int64()
	case n.Sign() > 0:
		return math.MaxInt64
	default:
		return math.MinInt64
	}
}

// pyStrip is Python's str.strip(): Unicode whitespace as str.isspace
// sees it, which includes \x1c-\x1f.
func pyStrip(s string) string {
	return strings.TrimFunc(s, pyIsSpace)
}

func pyIsSpace(r rune) bool {
	switch {
	case r >= '\t' && r <= '\r', r >= 0x1c && r <= 0x20, r == 0x85, r == 0xa0, r == 0x1680,
		r >= 0x2000 && r <= 0x200a, r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f, r == 0x3000:
		return true
	}
	return false
}
