package fakeowui

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// signRaw signs an HS256 JWT from a raw header and raw claims (any bytes).
func signRaw(secret string, header, claims []byte) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// TestJWTLikePyJWT checks that the fake accepts exactly the tokens PyJWT
// accepts (jwt.decode(token, secret, algorithms=["HS256"]), as
// utils/auth.py decode_token calls it), running the real PyJWT (Debian's
// python3-jwt) over tokens bent in the ways its lenient base64 and JSON
// allow or refuse.
func TestJWTLikePyJWT(t *testing.T) {
	py := pythonWith(t, "jwt")
	const secret = "test-secret"
	far := time.Now().Add(24 * time.Hour).Unix()
	valid := SignJWT(secret, map[string]any{"id": "u1", "exp": far, "iat": time.Now().Unix() - 10})
	h, p, sig := func() (string, string, string) {
		parts := strings.Split(valid, ".")
		return parts[0], parts[1], parts[2]
	}()
	at := func(s string, i int, ins string) string { return s[:i] + ins + s[i:] }
	swap := func(s string, from, to string) string { return strings.ReplaceAll(s, from, to) }
	// A signature with '-' or '_' in it, to swap for '+' and '/'.
	var dashed string
	for i := 0; dashed == ""; i++ {
		tok := SignJWT(secret, map[string]any{"id": "u1", "n": i})
		if s := tok[strings.LastIndex(tok, ".")+1:]; strings.ContainsAny(s, "-_") {
			dashed = tok
		}
	}
	ds := dashed[strings.LastIndex(dashed, ".")+1:]
	dhp := dashed[:strings.LastIndex(dashed, ".")+1]
	lastBits := sig[:len(sig)-1] + string(sig[len(sig)-1]^1) // 43 chars: the last one's low 2 bits are unused

	hdr := []byte(`{"alg":"HS256","typ":"JWT"}`)
	claims := []byte(`{"id":"u1"}`)
	tokens := map[string]string{
		"valid":                      valid,
		"trailing !!!!":              valid + "!!!!",
		"trailing =":                 valid + "=",
		"trailing ==":                valid + "==",
		"trailing ====":              valid + "====",
		"trailing = then data":       valid + "=AAAA",
		"! inside signature":         h + "." + p + "." + at(sig, 10, "!"),
		"!!!! inside signature":      h + "." + p + "." + at(sig, 10, "!!!!"),
		"$% inside signature":        h + "." + p + "." + at(at(sig, 5, "$"), 20, "%"),
		"space inside signature":     h + "." + p + "." + at(sig, 7, " "),
		"newline inside signature":   h + "." + p + "." + at(sig, 7, "\n"),
		"non-ASCII inside signature": h + "." + p + "." + at(sig, 3, "é"),
		// Four inserted characters keep the length PyJWT pads right.
		"= at quad 2 mid-signature":     h + "." + p + "." + at(sig, 10, "=!!!"),
		"= junk = at quad 2":            h + "." + p + "." + at(sig, 10, "=!!="),
		"== at quad 2 mid-signature":    h + "." + p + "." + at(sig, 10, "==!!"),
		"= at quad 0 mid-signature":     h + "." + p + "." + at(sig, 8, "=!!!"),
		"= at quad 1 mid-signature":     h + "." + p + "." + at(sig, 9, "==!!"),
		"= at quad 3 mid-signature":     h + "." + p + "." + at(sig, 11, "=!!!"),
		"single = at quad 2, unpadded":  h + "." + p + "." + at(sig, 10, "="),
		"= data = at quad 2 mid-sig":    h + "." + p + "." + at(sig, 10, "=A=!"),
		"= at quad 2, twice apart":      h + "." + p + "." + at(at(sig, 10, "="), 15, "=!!"),
		"newline and spaces in the sig": h + "." + p + "." + at(sig, 20, "\n  \t"),
		"truncated by 1":                valid[:len(valid)-1],
		"truncated by 2":                valid[:len(valid)-2],
		"truncated by 3":                valid[:len(valid)-3],
		"truncated by 4":                valid[:len(valid)-4],
		"signature truncated to 1":      h + "." + p + "." + sig[:1],
		"empty signature":               h + "." + p + ".",
		"last sig char, unused bits":    h + "." + p + "." + lastBits,
		"wrong signature":               SignJWT("other-secret", map[string]any{"id": "u1"}),
		"standard alphabet sig":         dhp + swap(swap(ds, "-", "+"), "_", "/"),
		"! inside header":               at(h, 4, "!") + "." + p + "." + sig,
		"! inside payload":              h + "." + at(p, 4, "!") + "." + sig,
		"two segments":                  h + "." + p,
		"one segment":                   h,
		"four segments":                 h + "." + p + "." + sig + "." + sig,
		"empty":                         "",
		"no exp":                        SignJWT(secret, map[string]any{"id": "u1"}),
		"expired":                       SignJWT(secret, map[string]any{"id": "u1", "exp": time.Now().Unix() - 60}),
		"exp as string":                 SignJWT(secret, map[string]any{"id": "u1", "exp": "99999999999"}),
		"expired string exp":            SignJWT(secret, map[string]any{"id": "u1", "exp": "100"}),
		"exp not a number":              SignJWT(secret, map[string]any{"id": "u1", "exp": "soon"}),
		"exp null":                      SignJWT(secret, map[string]any{"id": "u1", "exp": nil}),
		"exp float":                     SignJWT(secret, map[string]any{"id": "u1", "exp": float64(far) + 0.5}),
		"iat in the future":             SignJWT(secret, map[string]any{"id": "u1", "iat": far}),
		"iat as string":                 SignJWT(secret, map[string]any{"id": "u1", "iat": "100"}),
		"nbf in the future":             SignJWT(secret, map[string]any{"id": "u1", "nbf": far}),
		"nbf past":                      SignJWT(secret, map[string]any{"id": "u1", "nbf": 100}),
		"aud set":                       SignJWT(secret, map[string]any{"id": "u1", "aud": "x"}),
		"aud empty":                     SignJWT(secret, map[string]any{"id": "u1", "aud": ""}),
		"alg none":                      signRaw(secret, []byte(`{"alg":"none"}`), claims),
		"alg HS512 header":              signRaw(secret, []byte(`{"alg":"HS512"}`), claims),
		"no alg":                        signRaw(secret, []byte(`{"typ":"JWT"}`), claims),
		"duplicate alg, last HS256":     signRaw(secret, []byte(`{"alg":"none","alg":"HS256"}`), claims),
		"duplicate alg, last none":      signRaw(secret, []byte(`{"alg":"HS256","alg":"none"}`), claims),
		"NaN in header":                 signRaw(secret, []byte(`{"alg":"HS256","x":NaN}`), claims),
		"kid not a string":              signRaw(secret, []byte(`{"alg":"HS256","kid":1}`), claims),
		"b64 false":                     signRaw(secret, []byte(`{"alg":"HS256","b64":false}`), claims),
		"header not an object":          signRaw(secret, []byte(`["HS256"]`), claims),
		"header with BOM":               signRaw(secret, append([]byte("\ufeff"), hdr...), claims),
		"claims with BOM":               signRaw(secret, hdr, append([]byte("\ufeff"), claims...)),
		"claims UTF-16":                 signRaw(secret, hdr, []byte("\xff\xfe{\x00}\x00")),
		"claims duplicate id":           signRaw(secret, hdr, []byte(`{"id":"u2","id":"u1"}`)),
		"claims NaN exp":                signRaw(secret, hdr, []byte(`{"id":"u1","exp":NaN}`)),
		"claims Infinity exp":           signRaw(secret, hdr, []byte(`{"id":"u1","exp":Infinity}`)),
		"claims trailing data":          signRaw(secret, hdr, []byte(`{"id":"u1"}x`)),
		"claims not an object":          signRaw(secret, hdr, []byte(`"u1"`)),
		"claims bad UTF-8":              signRaw(secret, hdr, []byte("{\"id\":\"u\xff\"}")),
		"claims numeric id":             signRaw(secret, hdr, []byte(`{"id":1}`)),
	}
	names := make([]string, 0, len(tokens))
	list := make([]string, 0, len(tokens))
	for n, tok := range tokens {
		names = append(names, n)
		list = append(list, tok)
	}
	// For each token: null when PyJWT refuses it, else the id claim if a
	// string ("" otherwise).
	//
	// OpenWebUI pins PyJWT 2.11.0, whose PyJWS.decode_complete validates the
	// header (_validate_headers: a kid must be a string); older releases,
	// such as Debian 12's 2.6.0, validate it only when encoding. The script
	// says whether the PyJWT it runs does, and the kid case is compared
	// only then.
	const script = `
import sys, json, jwt, inspect
from jwt.api_jws import PyJWS
validates = "_validate_headers" in inspect.getsource(PyJWS.decode_complete)
print(json.dumps({"version": jwt.__version__, "validates_headers": validates}))
out = []
for tok in json.load(sys.stdin)["tokens"]:
    try:
        claims = jwt.decode(tok, "test-secret", algorithms=["HS256"])
    except Exception:
        out.append(None)
        continue
    out.append(claims.get("id") if isinstance(claims.get("id"), str) else "")
print(json.dumps(out))
`
	var got []*string
	var lib struct {
		Version          string `json:"version"`
		ValidatesHeaders bool   `json:"validates_headers"`
	}
	runPythonLines(t, py, script, map[string]any{"tokens": list}, &lib, &got)
	if len(got) != len(list) {
		t.Fatalf("python answered %d results for %d tokens", len(got), len(list))
	}
	accepted := 0
	for i, name := range names {
		claims, err := decodeJWT(list[i], secret, time.Now())
		pyOK := got[i] != nil
		if name == "kid not a string" && !lib.ValidatesHeaders {
			t.Logf("PyJWT %s here does not validate headers when decoding (2.11.0, OpenWebUI's, does): kid case not compared", lib.Version)
			continue
		}
		if (err == nil) != pyOK {
			t.Errorf("%s: the fake %s (%v), PyJWT %s", name, verdict(err == nil), err, verdict(pyOK))
			continue
		}
		if !pyOK {
			continue
		}
		accepted++
		id := ""
		if v := claims.vals["id"]; v != nil && v.kind == pyString {
			id = v.text
		}
		if id != *got[i] {
			t.Errorf("%s: id %q, PyJWT %q", name, id, *got[i])
		}
	}
	// The corpus must exercise both sides.
	if accepted < 10 || accepted > len(list)-10 {
		t.Errorf("PyJWT accepted %d of %d tokens", accepted, len(list))
	}
	// The padding PyJWT adds counts the junk: one stray character leaves
	// 43 data characters and no '=' ("Incorrect padding"), four do not.
	for _, name := range []string{"trailing !!!!", "!!!! inside signature", "standard alphabet sig", "duplicate alg, last HS256"} {
		if _, err := decodeJWT(tokens[name], secret, time.Now()); err != nil {
			t.Errorf("%s: refused (%v), but PyJWT takes it", name, err)
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "accepts"
	}
	return "refuses"
}

// A token PyJWT accepts with junk appended logs the user in through every
// authenticated route, as OpenWebUI's get_current_user does.
func TestJWTJunkAcceptedByRoutes(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "user")
	for _, tok := range []string{jwt + "!!!!", jwt + "====", jwt[:len(jwt)-10] + "$%&*" + jwt[len(jwt)-10:]} {
		resp := get(t, o.URL()+"/api/models", "Authorization", "Bearer "+tok)
		if resp.StatusCode != 200 {
			t.Errorf("%q: %d %s", tok[len(tok)-12:], resp.StatusCode, readAll(t, resp))
		}
	}
	if resp := get(t, o.URL()+"/api/models", "Authorization", "Bearer "+jwt[:len(jwt)-1]); resp.StatusCode != 401 {
		t.Errorf("truncated token: %d", resp.StatusCode)
	}
}
