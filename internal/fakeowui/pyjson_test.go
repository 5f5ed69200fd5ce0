package fakeowui

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/tidwall/gjson"
)

func utf16Bytes(s string, big, bom bool) []byte {
	var out []byte
	units := utf16.Encode([]rune(s))
	if bom {
		units = append([]uint16{0xfeff}, units...)
	}
	for _, u := range units {
		if big {
			out = append(out, byte(u>>8), byte(u))
		} else {
			out = append(out, byte(u), byte(u>>8))
		}
	}
	return out
}

func utf32LE(s string) []byte {
	var out []byte
	for _, r := range s {
		out = append(out, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	return out
}

// pyBodies is a corpus of request bodies where Python's json and Go's
// encoding/json disagree, or nearly.
func pyBodies() map[string][]byte {
	digits := func(n int) string { return "1" + strings.Repeat("0", n-1) }
	deep := strings.Repeat("[", 200) + strings.Repeat("]", 200)
	return map[string][]byte{
		"plain":                      []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`),
		"NaN in a field":             []byte(`{"model":"m","temperature":NaN}`),
		"Infinity":                   []byte(`{"model":"m","max_tokens":Infinity}`),
		"-Infinity":                  []byte(`{"model":"m","x":-Infinity}`),
		"NaN in an array":            []byte(`{"model":"m","x":[1,NaN,2]}`),
		"-NaN":                       []byte(`{"model":"m","x":-NaN}`),
		"+Infinity":                  []byte(`{"model":"m","x":+Infinity}`),
		"lower-case nan":             []byte(`{"model":"m","x":nan}`),
		"NaN inside a string":        []byte(`{"model":"NaN","x":"Infinity"}`),
		"duplicate model":            []byte(`{"model":"first","stream":true,"model":"last"}`),
		"duplicate model, non-str":   []byte(`{"model":"first","model":7}`),
		"nested duplicates":          []byte(`{"model":"m","messages":[{"role":"user","content":"x","role":"system"}]}`),
		"UTF-8 BOM":                  []byte("\ufeff{\"model\":\"bom\"}"),
		"two BOMs":                   []byte("\ufeff\ufeff{\"model\":\"bom\"}"),
		"trailing garbage":           []byte(`{"model":"m"} x`),
		"trailing object":            []byte(`{"model":"m"}{}`),
		"trailing whitespace":        []byte("{\"model\":\"m\"} \r\n\t"),
		"trailing NUL":               []byte("{\"model\":\"m\"}\x00"),
		"leading form feed":          []byte("\f{\"model\":\"m\"}"),
		"leading NBSP":               []byte("\u00a0{\"model\":\"m\"}"),
		"trailing comma":             []byte(`{"model":"m",}`),
		"trailing comma in array":    []byte(`{"model":"m","x":[1,]}`),
		"single quotes":              []byte(`{'model':'m'}`),
		"missing comma":              []byte(`{"model":"m" "x":1}`),
		"escaped NUL":                []byte(`{"model":"a\u0000b"}`),
		"raw control character":      []byte("{\"model\":\"a\x01b\"}"),
		"raw DEL":                    []byte("{\"model\":\"a\x7fb\"}"),
		"raw unit separator":         []byte("{\"model\":\"a\x1fb\"}"),
		"escaped slash":              []byte(`{"model":"a\/b"}`),
		"surrogate pair":             []byte(`{"model":"\ud83d\ude00"}`),
		"lone high surrogate":        []byte(`{"model":"a\ud800b"}`),
		"lone low surrogate":         []byte(`{"model":"\udc00"}`),
		"high then other escape":     []byte(`{"model":"\ud800\u0041"}`),
		"high then \\n":              []byte(`{"model":"\ud800\n"}`),
		"bad escape":                 []byte(`{"model":"\x"}`),
		"short \\u":                  []byte(`{"model":"\u12"}`),
		"bad hex":                    []byte(`{"model":"\u12G4"}`),
		"\\u at the very end":        []byte(`{"model":"\u1234`),
		"unterminated string":        []byte(`{"model":"m`),
		"invalid UTF-8":              []byte("{\"model\":\"\xff\"}"),
		"UTF-8 surrogate bytes":      []byte("{\"model\":\"a\xed\xa0\x80b\"}"),
		"overlong UTF-8":             []byte("{\"model\":\"\xc0\xaf\"}"),
		"UTF-16LE with BOM":          utf16Bytes(`{"model":"sixteen"}`, false, true),
		"UTF-16BE with BOM":          utf16Bytes(`{"model":"sixteen"}`, true, true),
		"UTF-16LE without BOM":       utf16Bytes(`{"model":"sixteen"}`, false, false),
		"UTF-16BE without BOM":       utf16Bytes(`{"model":"sixteen"}`, true, false),
		"UTF-16 odd length":          append(utf16Bytes(`{"model":"x"}`, false, true), '}'),
		"UTF-32LE":                   utf32LE(`{"model":"thirty-two"}`),
		"NUL then brace":             []byte("\x00{\x00}"),
		"leading zero":               []byte(`{"model":"m","x":01}`),
		"bare dot fraction":          []byte(`{"model":"m","x":.5}`),
		"dot without digits":         []byte(`{"model":"m","x":1.}`),
		"exponent without digits":    []byte(`{"model":"m","x":1e}`),
		"exponent":                   []byte(`{"model":"m","x":1E+2,"y":-0,"z":-0.5e-3}`),
		"plus sign":                  []byte(`{"model":"m","x":+1}`),
		"huge float":                 []byte(`{"model":"m","x":1e400}`),
		"4300-digit int":             []byte(`{"model":"m","x":` + digits(4300) + `}`),
		"4301-digit int":             []byte(`{"model":"m","x":` + digits(4301) + `}`),
		"4301-digit negative int":    []byte(`{"model":"m","x":-` + digits(4301) + `}`),
		"4301 digits as a float":     []byte(`{"model":"m","x":` + digits(4301) + `.5}`),
		"array body":                 []byte(`[{"model":"m"}]`),
		"string body":                []byte(`"model"`),
		"null body":                  []byte(`null`),
		"NaN body":                   []byte(`NaN`),
		"whitespace only":            []byte(" \n"),
		"empty object":               []byte(`{}`),
		"non-string key":             []byte(`{1:"m"}`),
		"deep nesting":               []byte(`{"model":"m","x":` + deep + `}`),
		"non-ASCII model":            []byte(`{"model":"模型-é"}`),
		"model with quotes, escaped": []byte(`{"model":"a\"b\\c\tž"}`),
	}
}

// TestBodiesLikePythonJSON runs Python's json.loads (as FastAPI's
// request.json() does on the raw bytes) over a corpus and checks that the
// fake's body parsing accepts and refuses the same bodies, answers them
// the way FastAPI does (422 json_invalid, 400 for other exceptions, 422
// dict_type for a non-object), and reads the same "model" and nested
// values.
func TestBodiesLikePythonJSON(t *testing.T) {
	py := pythonWith(t, "json")
	bodies := pyBodies()
	var names []string
	var raws [][]byte
	for n, b := range bodies {
		names = append(names, n)
		raws = append(raws, b)
	}
	const script = `
import sys, json, base64
out = []
for c in json.load(sys.stdin)["bodies"]:
    b = base64.b64decode(c)
    try:
        v = json.loads(b)
    except json.JSONDecodeError:
        out.append({"result": "json_invalid"})
        continue
    except Exception as e:
        out.append({"result": "error", "exc": type(e).__name__})
        continue
    r = {"result": "dict" if isinstance(v, dict) else "other"}
    if isinstance(v, dict):
        m = v.get("model")
        r["model"] = m if isinstance(m, str) else None
        try:
            r["role"] = v["messages"][0]["role"]
        except Exception:
            pass
    out.append(r)
print(json.dumps(out))
`
	var got []json.RawMessage
	runPython(t, py, script, map[string]any{"bodies": raws}, &got) // []byte marshals as base64
	if len(got) != len(raws) {
		t.Fatalf("python answered %d results for %d bodies", len(got), len(raws))
	}
	results := map[string]int{}
	for i, name := range names {
		// Python's output is ASCII JSON; read it with pyLoads so lone
		// surrogates survive for the comparison.
		want, err := pyLoads(got[i])
		if err != nil {
			t.Fatalf("python output %s: %v", got[i], err)
		}
		wantResult := want.vals["result"].text
		results[wantResult]++

		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/api/chat/completions", nil)
		req.Header.Set("Content-Type", "application/json")
		body, ok := parseBody(rec, req, raws[i])
		result := "dict"
		if !ok {
			switch typ := gjson.Get(rec.Body.String(), "detail.0.type").String(); {
			case rec.Code == 400:
				result = "error"
			case rec.Code == 422 && typ == "json_invalid":
				result = "json_invalid"
			case rec.Code == 422 && typ == "dict_type":
				result = "other"
			default:
				result = rec.Body.String()
			}
		}
		if result != wantResult {
			t.Errorf("%s: the fake says %s (%d %s), Python %s", name, result, rec.Code, rec.Body.String(), got[i])
			continue
		}
		if result != "dict" {
			continue
		}
		wantModel := want.vals["model"]
		var model *pyValue
		if body["model"] != nil {
			if model, err = pyLoads(body["model"]); err != nil {
				t.Errorf("%s: model %s: %v", name, body["model"], err)
				continue
			}
		}
		switch {
		case wantModel.kind == pyNull && (model == nil || model.kind != pyString):
		case wantModel.kind == pyString && model != nil && model.kind == pyString && model.text == wantModel.text:
		default:
			t.Errorf("%s: model %s, Python %s", name, body["model"], wantModel.raw())
		}
		if role := want.vals["role"]; role != nil {
			if got := gjson.GetBytes(body["messages"], "0.role").String(); got != role.text || len(gjson.GetBytes(body["messages"], "0").Map()) != 2 {
				t.Errorf("%s: messages %s, Python role %q", name, body["messages"], role.text)
			}
		}
	}
	if results["dict"] < 15 || results["json_invalid"] < 15 || results["error"] < 3 || results["other"] < 3 {
		t.Errorf("corpus not varied enough: %v", results)
	}
}

// Go's encoding/json keeps the last of duplicate keys when decoding into a
// map, as Python's dict does; nested duplicates it leaves in a
// json.RawMessage, which is why the fake parses with pyLoads.
func TestGoKeepsLastDuplicate(t *testing.T) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(`{"model":"a","x":{"k":1,"k":2},"model":"b"}`), &m); err != nil {
		t.Fatal(err)
	}
	if string(m["model"]) != `"b"` || string(m["x"]) != `{"k":1,"k":2}` {
		t.Errorf("encoding/json: %s", m)
	}
	v, err := pyLoads([]byte(`{"model":"a","x":{"k":1,"k":2},"model":"b"}`))
	if err != nil || string(v.raw()) != `{"model":"b","x":{"k":2}}` {
		t.Errorf("pyLoads: %s %v", v.raw(), err)
	}
}

// The chat route reads its body as Python does and forwards what it read:
// the last of duplicate keys at every depth, NaN as NaN; FastAPI's errors
// for what json.loads refuses.
func TestChatBodyPythonJSON(t *testing.T) {
	p := NewProvider(t)
	o := NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "user")
	url := o.URL() + "/api/chat/completions"
	auth := []string{"Authorization", "Bearer " + jwt}

	resp := post(t, url, "\ufeff"+`{"model":"decoy","messages":[{"role":"system","content":"hi","role":"user"}],"model":"m"}`, auth...)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 200 || j.Get("model").String() != "m" {
		t.Fatalf("%d %s", resp.StatusCode, j.Raw)
	}
	if sent := string(p.Requests()[0].Body); sent != `{"messages":[{"role":"user","content":"hi"}],"model":"m"}` {
		t.Errorf("forwarded %s", sent)
	}

	// NaN is forwarded as Python's json.dumps writes it; the fake provider,
	// strict like OpenAI, refuses it, and OpenWebUI turns that into 400.
	resp = post(t, url, `{"model":"m","temperature":NaN}`, auth...)
	readAll(t, resp)
	if sent := string(p.Requests()[1].Body); sent != `{"model":"m","temperature":NaN}` || resp.StatusCode != 400 {
		t.Errorf("forwarded %s, answered %d", sent, resp.StatusCode)
	}

	for body, want := range map[string]struct {
		status int
		typ    string
	}{
		`{"model":"m"} x`:          {422, "json_invalid"},
		`[1]`:                      {422, "dict_type"},
		"{\"model\":\"\xff\"}":     {400, ""},
		``:                         {422, "missing"},
		`{"model":"m","x":-NaN}`:   {422, "json_invalid"},
		`{"model":"m","x":1e1000}`: {200, ""},
	} {
		resp := post(t, url, body, auth...)
		j := gjson.Parse(readAll(t, resp))
		if resp.StatusCode != want.status || want.typ != "" && j.Get("detail.0.type").String() != want.typ {
			t.Errorf("%q: %d %s", body, resp.StatusCode, j.Raw)
		}
		if want.status == 400 && j.Get("detail").String() != "There was an error parsing the body" {
			t.Errorf("%q: %s", body, j.Raw)
		}
	}
	// A Content-Type that is not JSON leaves the bytes unparsed: no dict.
	// Without one, the body is read as JSON.
	withType := func(ct string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"model":"m"}`))
		req.Header.Set("Authorization", "Bearer "+jwt)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, gjson.Get(readAll(t, resp), "detail.0.type").String()
	}
	for ct, want := range map[string]int{"text/plain": 422, "application/vnd.api+json; charset=utf-8": 200, "": 200, "Application/JSON": 200, "application/x-www-form-urlencoded": 422} {
		if status, typ := withType(ct); status != want || want == 422 && typ != "dict_type" {
			t.Errorf("Content-Type %q: %d %s", ct, status, typ)
		}
	}
}
