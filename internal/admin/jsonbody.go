package admin

// Reading JSON request bodies. Every JSON endpoint of the API reads its
// body through decodeJSON: exactly one JSON value, nothing after it but
// white space, and a value a field cannot take named by its path.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// errTrailing reports data after the body's JSON value, such as a second
// object: {"balance":1}{"balance":2}.
var errTrailing = errors.New("unexpected data after the JSON value; send exactly one JSON value")

// decodeJSON reads exactly one JSON value from raw into v. Anything but
// white space after it is an error (errTrailing), and with strict so is a
// field v does not have. An error that is not about the JSON's syntax names
// the path of the field it is about, such as "data.users[2].balance: out of
// range". (encoding/json holds a whole value in memory to decode it, so
// having the body in memory costs nothing more.)
func decodeJSON(raw []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return notJSON{err}
		}
		if path, leaf := locate(raw, reflect.TypeOf(v), strict); path != "" && leaf != nil {
			return fmt.Errorf("%s: %s", path, describe(leaf))
		}
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return notJSON{errTrailing}
	}
	return nil
}

// notJSON is a body that is not one JSON value, as opposed to a JSON value
// with a field of the wrong kind (whose error names the field).
type notJSON struct{ err error }

func (e notJSON) Error() string { return "invalid JSON: " + e.err.Error() }
func (e notJSON) Unwrap() error { return e.err }

// describe words an error about one value.
func describe(err error) string {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("must be %s, not a JSON %s", typeName(typ.Type), typ.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	}
	return "a number"
}

// lister is a type that decodes as a list of some other type (section).
type lister interface{ listType() reflect.Type }

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// locate finds the first value in raw that does not decode into its place
// in t, and returns its path and the error decoding it alone gives; "" when
// it cannot tell.
func locate(raw []byte, t reflect.Type, strict bool) (string, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if l, ok := reflect.New(t).Interface().(lister); ok {
		t = l.listType()
	}
	err := decodeStrict(raw, reflect.New(t).Interface(), strict)
	if err == nil {
		return "", nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) && t.Kind() != reflect.Slice {
		return "", err // a leaf with a decoder of its own (an amount)
	}
	switch t.Kind() {
	case reflect.Struct:
		var fields map[string]json.RawMessage
		if json.Unmarshal(raw, &fields) != nil {
			return "", err
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			v, ok := fields[name]
			if !ok {
				for k, kv := range fields { // encoding/json matches names without case too
					if strings.EqualFold(k, name) {
						v, ok = kv, true
						break
					}
				}
			}
			if !ok {
				continue
			}
			if path, leaf := locate(v, f.Type, strict); leaf != nil {
				return join(name, path), leaf
			}
		}
	case reflect.Slice, reflect.Array:
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return "", err
		}
		for i, item := range items {
			if path, leaf := locate(item, t.Elem(), strict); leaf != nil {
				return join("["+strconv.Itoa(i)+"]", path), leaf
			}
		}
	case reflect.Map:
		var items map[string]json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return "", err
		}
		for k, item := range items {
			if path, leaf := locate(item, t.Elem(), strict); leaf != nil {
				return join(k, path), leaf
			}
		}
	}
	return "", err
}

// join appends a field's path to its parent's.
func join(parent, path string) string {
	switch {
	case path == "":
		return parent
	case strings.HasPrefix(path, "["):
		return parent + path
	}
	return parent + "." + path
}

func decodeStrict(raw []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if strict {
		dec.DisallowUnknownFields()
	}
	return dec.Decode(v)
}
