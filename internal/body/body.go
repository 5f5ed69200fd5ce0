// Package body reads request bodies under a size cap.
package body

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
)

// ErrTooLarge reports a body over the cap.
var ErrTooLarge = errors.New("request body too large")

// Read reads the whole body of r, refusing one longer than max bytes
// without reading more than max: a declared length over the cap is
// refused before anything is read.
func Read(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, ErrTooLarge
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, max))
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return nil, ErrTooLarge
	case err != nil:
		return nil, fmt.Errorf("request body could not be read: %v", err)
	}
	return buf.Bytes(), nil
}
