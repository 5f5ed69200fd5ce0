package fakeowui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// OpenWebUI reads request bodies with FastAPI, which calls Starlette's
// request.json(), i.e. Python's json.loads(body) on the raw bytes (CPython
// Lib/json/__init__.py loads and detect_encoding, Lib/json/decoder.py and
// Modules/_json.c scanner). That differs from Go's encoding/json:
//
//   - the bytes may be UTF-8 (a BOM is skipped), UTF-16 or UTF-32, told
//     apart by detect_encoding, and are decoded with errors='surrogatepass';
//   - NaN, Infinity and -Infinity are numbers;
//   - of duplicate keys the last one wins, at the first one's position
//     (dict(pairs) in JSONObject), at every depth;
//   - lone surrogates (\ud800) stay as they are;
//   - an integer literal of more than 4300 digits raises ValueError
//     (sys.int_info.default_max_str_digits), which is not a JSONDecodeError.
//
// pyLoads implements that; the fake parses model-route bodies with it
// (parseBody) and forwards what it parsed, re-encoded (pyValue.encode), the
// way OpenWebUI forwards the dict it parsed.

// pyKind is the type of a parsed value.
type pyKind uint8

const (
	pyNull pyKind = iota
	pyBool
	pyNumber
	pyString
	pyArray
	pyObject
)

// pyValue is a value as json.loads returns it.
type pyValue struct {
	kind pyKind
	// text is a number's literal (NaN, Infinity, -Infinity included),
	// "true"/"false", or a string's code points as WTF-8 (UTF-8 that may
	// hold surrogates).
	text  string
	items []*pyValue // array
	keys  []string   // object keys, each once, in dict order
	vals  map[string]*pyValue
}

// pyJSONError is json.JSONDecodeError: msg and the character position.
type pyJSONError struct {
	msg string
	pos int
}

func (e *pyJSONError) Error() string { return fmt.Sprintf("%s: char %d", e.msg, e.pos) }

// pyValueError is any other exception json.loads raises on bytes
// (UnicodeDecodeError, the int digit limit): FastAPI answers those 400.
type pyValueError struct{ msg string }

func (e *pyValueError) Error() string { return e.msg }

// pyMaxIntDigits is CPython 3.11's default int max_str_digits.
const pyMaxIntDigits = 4300

// pyLoads is json.loads(b) for bytes b.
func pyLoads(b []byte) (*pyValue, error) {
	s, err := pyDecodeText(b)
	if err != nil {
		return nil, err
	}
	p := &pyParser{s: s}
	p.ws()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, &pyJSONError{"Extra data", p.i}
	}
	return v, nil
}

// pyDecodeText is bytes.decode(detect_encoding(b), 'surrogatepass') from
// Lib/json/__init__.py, as code points (surrogates allowed).
func pyDecodeText(b []byte) ([]rune, error) {
	switch {
	case bytes.HasPrefix(b, []byte{0, 0, 0xfe, 0xff}):
		return decodeUTF32(b[4:], true)
	case bytes.HasPrefix(b, []byte{0xff, 0xfe, 0, 0}):
		return decodeUTF32(b[4:], false)
	case bytes.HasPrefix(b, []byte{0xfe, 0xff}):
		return decodeUTF16(b[2:], true)
	case bytes.HasPrefix(b, []byte{0xff, 0xfe}):
		return decodeUTF16(b[2:], false)
	case bytes.HasPrefix(b, []byte{0xef, 0xbb, 0xbf}):
		return decodeUTF8(b[3:])
	}
	if len(b) >= 4 {
		switch {
		case b[0] == 0 && b[1] != 0:
			return decodeUTF16(b, true)
		case b[0] == 0:
			return decodeUTF32(b, true)
		case b[1] == 0 && (b[2] != 0 || b[3] != 0):
			return decodeUTF16(b, false)
		case b[1] == 0:
			return decodeUTF32(b, false)
		}
	} else if len(b) == 2 {
		switch {
		case b[0] == 0:
			return decodeUTF16(b, true)
		case b[1] == 0:
			return decodeUTF16(b, false)
		}
	}
	return decodeUTF8(b)
}

func decodeUTF8(b []byte) ([]rune, error) {
	out := make([]rune, 0, len(b))
	for i := 0; i < len(b); {
		// surrogatepass: ED A0..BF 80..BF is a surrogate code point.
		if b[i] == 0xed && i+2 < len(b) && b[i+1] >= 0xa0 && b[i+1] <= 0xbf && b[i+2] >= 0x80 && b[i+2] <= 0xbf {
			out = append(out, rune(b[i]&0x0f)<<12|rune(b[i+1]&0x3f)<<6|rune(b[i+2]&0x3f))
			i += 3
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return nil, &pyValueError{fmt.Sprintf("'utf-8' codec can't decode byte 0x%02x in position %d", b[i], i)}
		}
		out = append(out, r)
		i += n
	}
	return out, nil
}

func decodeUTF16(b []byte, big bool) ([]rune, error) {
	if len(b)%2 != 0 {
		return nil, &pyValueError{"'utf-16' codec can't decode: truncated data"}
	}
	out := make([]rune, 0, len(b)/2)
	unit := func(i int) rune {
		if big {
			return rune(b[i])<<8 | rune(b[i+1])
		}
		return rune(b[i+1])<<8 | rune(b[i])
	}
	for i := 0; i < len(b); i += 2 {
		u := unit(i)
		if u >= 0xd800 && u < 0xdc00 && i+3 < len(b) {
			if l := unit(i + 2); l >= 0xdc00 && l < 0xe000 {
				out = append(out, 0x10000+(u-0xd800)<<10+(l-0xdc00))
				i += 2
				continue
			}
		}
		out = append(out, u) // a lone surrogate passes (surrogatepass)
	}
	return out, nil
}

func decodeUTF32(b []byte, big bool) ([]rune, error) {
	if len(b)%4 != 0 {
		return nil, &pyValueError{"'utf-32' codec can't decode: truncated data"}
	}
	out := make([]rune, 0, len(b)/4)
	for i := 0; i < len(b); i += 4 {
		var u uint32
		if big {
			u = uint32(b[i])<<24 | uint32(b[i+1])<<16 | uint32(b[i+2])<<8 | uint32(b[i+3])
		} else {
			u = uint32(b[i+3])<<24 | uint32(b[i+2])<<16 | uint32(b[i+1])<<8 | uint32(b[i])
		}
		if u > 0x10ffff {
			return nil, &pyValueError{"'utf-32' codec can't decode: code point not in range(0x110000)"}
		}
		out = append(out, rune(u))
	}
	return out, nil
}

// pyParser is the scanner of Modules/_json.c (scan_once_unicode,
// _parse_object_unicode, _parse_array_unicode, scanstring_unicode,
// _match_number_unicode), strict mode.
type pyParser struct {
	s []rune
	i int
}

// ws skips json's WHITESPACE: [ \t\n\r]*.
func (p *pyParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *pyParser) hasPrefix(lit string) bool {
	if p.i+len(lit) > len(p.s) {
		return false
	}
	for k := range len(lit) {
		if p.s[p.i+k] != rune(lit[k]) {
			return false
		}
	}
	return true
}

func (p *pyParser) value() (*pyValue, error) {
	if p.i >= len(p.s) {
		return nil, &pyJSONError{"Expecting value", p.i}
	}
	switch c := p.s[p.i]; {
	case c == '"':
		str, err := p.str()
		if err != nil {
			return nil, err
		}
		return &pyValue{kind: pyString, text: str}, nil
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	}
	for _, lit := range []struct {
		text string
		kind pyKind
	}{{"null", pyNull}, {"true", pyBool}, {"false", pyBool}, {"NaN", pyNumber}, {"Infinity", pyNumber}, {"-Infinity", pyNumber}} {
		if p.hasPrefix(lit.text) {
			p.i += len(lit.text)
			return &pyValue{kind: lit.kind, text: lit.text}, nil
		}
	}
	return p.number()
}

// number is _match_number_unicode: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?
// where a fraction or exponent without digits is left for the caller.
func (p *pyParser) number() (*pyValue, error) {
	start, i := p.i, p.i
	digit := func(k int) bool { return k < len(p.s) && p.s[k] >= '0' && p.s[k] <= '9' }
	if i < len(p.s) && p.s[i] == '-' {
		i++
	}
	switch {
	case digit(i) && p.s[i] != '0':
		for digit(i) {
			i++
		}
	case digit(i):
		i++
	default:
		return nil, &pyJSONError{"Expecting value", start}
	}
	intEnd, isFloat := i, false
	if i+1 < len(p.s) && p.s[i] == '.' && digit(i+1) {
		isFloat = true
		i += 2
		for digit(i) {
			i++
		}
	}
	if i < len(p.s) && (p.s[i] == 'e' || p.s[i] == 'E') {
		e := i
		i++
		if i < len(p.s) && (p.s[i] == '-' || p.s[i] == '+') {
			i++
		}
		for digit(i) {
			i++
		}
		if digit(i - 1) {
			isFloat = true
		} else {
			i = e
		}
	}
	if !isFloat {
		digits := intEnd - start
		if p.s[start] == '-' {
			digits--
		}
		if digits > pyMaxIntDigits {
			return nil, &pyValueError{fmt.Sprintf("Exceeds the limit (%d digits) for integer string conversion: value has %d digits", pyMaxIntDigits, digits)}
		}
	}
	p.i = i
	return &pyValue{kind: pyNumber, text: string(p.s[start:i])}, nil
}

// str is scanstring_unicode with strict=True; p.i is at the opening quote.
func (p *pyParser) str() (string, error) {
	begin := p.i
	p.i++
	var out []rune
	hex4 := func(at int) (rune, bool) {
		var v rune
		for k := at; k < at+4; k++ {
			c := p.s[k]
			switch {
			case c >= '0' && c <= '9':
				v = v<<4 | (c - '0')
			case c >= 'a' && c <= 'f':
				v = v<<4 | (c - 'a' + 10)
			case c >= 'A' && c <= 'F':
				v = v<<4 | (c - 'A' + 10)
			default:
				return 0, false
			}
		}
		return v, true
	}
	for {
		if p.i >= len(p.s) {
			return "", &pyJSONError{"Unterminated string starting at", begin}
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return wtf8(out), nil
		case c < 0x20:
			return "", &pyJSONError{"Invalid control character at", p.i}
		case c != '\\':
			out = append(out, c)
			p.i++
			continue
		}
		p.i++ // the backslash
		if p.i >= len(p.s) {
			return "", &pyJSONError{"Unterminated string starting at", begin}
		}
		esc := p.s[p.i]
		if esc != 'u' {
			m := map[rune]rune{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}
			r, ok := m[esc]
			if !ok {
				return "", &pyJSONError{"Invalid \\escape", p.i - 1}
			}
			out = append(out, r)
			p.i++
			continue
		}
		// \uXXXX: at least one character must follow the four digits.
		next := p.i + 1
		end := next + 4
		if end >= len(p.s) {
			return "", &pyJSONError{"Invalid \\uXXXX escape", next - 1}
		}
		u, ok := hex4(next)
		if !ok {
			return "", &pyJSONError{"Invalid \\uXXXX escape", end - 5}
		}
		if u >= 0xd800 && u <= 0xdbff && end+6 < len(p.s) && p.s[end] == '\\' && p.s[end+1] == 'u' {
			l, ok := hex4(end + 2)
			if !ok {
				return "", &pyJSONError{"Invalid \\uXXXX escape", end + 1}
			}
			if l >= 0xdc00 && l <= 0xdfff {
				u = 0x10000 + (u-0xd800)<<10 + (l - 0xdc00)
				end += 6
			}
		}
		out = append(out, u)
		p.i = end
	}
}

func (p *pyParser) object() (*pyValue, error) {
	v := &pyValue{kind: pyObject, vals: map[string]*pyValue{}}
	p.i++
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return v, nil
	}
	for {
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return nil, &pyJSONError{"Expecting property name enclosed in double quotes", p.i}
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, &pyJSONError{"Expecting ':' delimiter", p.i}
		}
		p.i++
		p.ws()
		val, err := p.value()
		if err != nil {
			return nil, err
		}
		if _, dup := v.vals[key]; !dup {
			v.keys = append(v.keys, key)
		}
		v.vals[key] = val // the last one wins, at the first one's place
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return v, nil
		}
		if p.i >= len(p.s) || p.s[p.i] != ',' {
			return nil, &pyJSONError{"Expecting ',' delimiter", p.i}
		}
		p.i++
		p.ws()
	}
}

func (p *pyParser) array() (*pyValue, error) {
	v := &pyValue{kind: pyArray}
	p.i++
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return v, nil
	}
	for {
		item, err := p.value()
		if err != nil {
			return nil, err
		}
		v.items = append(v.items, item)
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return v, nil
		}
		if p.i >= len(p.s) || p.s[p.i] != ',' {
			return nil, &pyJSONError{"Expecting ',' delimiter", p.i}
		}
		p.i++
		p.ws()
	}
}

// wtf8 encodes code points as UTF-8, surrogates included (as CESU-style
// three-byte sequences), so a Go string can hold a Python str.
func wtf8(rs []rune) string {
	var b strings.Builder
	for _, r := range rs {
		if r >= 0xd800 && r <= 0xdfff {
			b.WriteByte(0xe0 | byte(r>>12))
			b.WriteByte(0x80 | byte(r>>6)&0x3f)
			b.WriteByte(0x80 | byte(r)&0x3f)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// encode writes v as compact JSON. Strings are escaped as JSON requires
// (surrogates as \uXXXX); numbers keep their literal, so NaN, Infinity and
// -Infinity come out as Python's json.dumps writes them.
func (v *pyValue) encode(b *bytes.Buffer) {
	switch v.kind {
	case pyNull:
		b.WriteString("null")
	case pyBool, pyNumber:
		b.WriteString(v.text)
	case pyString:
		writePyString(b, v.text)
	case pyArray:
		b.WriteByte('[')
		for i, item := range v.items {
			if i > 0 {
				b.WriteByte(',')
			}
			item.encode(b)
		}
		b.WriteByte(']')
	case pyObject:
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writePyString(b, k)
			b.WriteByte(':')
			v.vals[k].encode(b)
		}
		b.WriteByte('}')
	}
}

func (v *pyValue) raw() json.RawMessage {
	var b bytes.Buffer
	v.encode(&b)
	return b.Bytes()
}

func writePyString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c == 0xed && i+2 < len(s) && s[i+1] >= 0xa0 { // a surrogate
			fmt.Fprintf(b, `\u%04x`, rune(c&0x0f)<<12|rune(s[i+1]&0x3f)<<6|rune(s[i+2]&0x3f))
			i += 3
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
		i++
	}
	b.WriteByte('"')
}

// pyBody is a request body parsed as OpenWebUI's form_data dict: each
// top-level value as compact JSON (which is not valid for Go when it holds
// NaN or Infinity; str and friends then see nothing).
type pyBody map[string]json.RawMessage

// encodeBody writes a body to forward: keys sorted, values as they are.
func encodeBody(body map[string]json.RawMessage) []byte {
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writePyString(&b, k)
		b.WriteByte(':')
		if body[k] == nil {
			b.WriteString("null")
		} else {
			b.Write(body[k])
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// parseBody reads a model route's body as FastAPI does for a
// `form_data: dict` parameter (fastapi/routing.py get_request_handler):
// an empty body is a missing field (422); a Content-Type other than
// application/json or application/*+json leaves the bytes unparsed, which
// are no dict (422); json.loads failing with JSONDecodeError is 422
// json_invalid, with another exception 400 "There was an error parsing the
// body"; a value other than an object is 422 dict_type. It answers the
// error itself and returns ok false then.
func parseBody(w http.ResponseWriter, r *http.Request, raw []byte) (pyBody, bool) {
	if len(raw) == 0 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
			"type": "missing", "loc": []any{"body"}, "msg": "Field required", "input": nil}}})
		return nil, false
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSONContentType(ct) {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
			"type": "dict_type", "loc": []any{"body"}, "msg": "Input should be a valid dictionary", "input": string(raw)}}})
		return nil, false
	}
	v, err := pyLoads(raw)
	if err != nil {
		if je, ok := err.(*pyJSONError); ok {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
				"type": "json_invalid", "loc": []any{"body", je.pos}, "msg": "JSON decode error",
				"input": map[string]any{}, "ctx": map[string]any{"error": je.msg}}}})
		} else {
			detail(w, http.StatusBadRequest, "There was an error parsing the body")
		}
		return nil, false
	}
	if v.kind != pyObject {
		var input any
		if json.Unmarshal(v.raw(), &input) != nil {
			input = nil
		}
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
			"type": "dict_type", "loc": []any{"body"}, "msg": "Input should be a valid dictionary", "input": input}}})
		return nil, false
	}
	body := make(pyBody, len(v.keys))
	for _, k := range v.keys {
		body[k] = v.vals[k].raw()
	}
	return body, true
}

// isJSONContentType is FastAPI's test on an email.message.Message
// content type: main type "application", subtype "json" or "*+json".
// A value email cannot parse counts as text/plain.
func isJSONContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, _, _ = strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		if strings.Count(mt, "/") != 1 {
			return false
		}
	}
	main, sub, _ := strings.Cut(mt, "/")
	return main == "application" && (sub == "json" || strings.HasSuffix(sub, "+json"))
}

// pyTruthy is Python's bool() of a JSON value: false for null, false, 0,
// "", [] and {}.
func pyTruthy(raw json.RawMessage) bool {
	v, err := pyLoads(raw)
	if err != nil || raw == nil {
		return false
	}
	switch v.kind {
	case pyNull:
		return false
	case pyBool:
		return v.text == "true"
	case pyNumber:
		f, err := strconv.ParseFloat(v.text, 64)
		return err != nil || f != 0 // NaN and Infinity are true
	case pyString:
		return v.text != ""
	case pyArray:
		return len(v.items) > 0
	default:
		return len(v.keys) > 0
	}
}
