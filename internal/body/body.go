// Package body reads request bodies under a size cap and a time limit.
package body

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// ErrTooLarge reports a body over the cap.
var ErrTooLarge = errors.New("request body too large")

// ErrTimeout reports a body that did not arrive in time.
var ErrTimeout = errors.New("request body not received in time")

// initialCap is the most a read allocates before the body's bytes arrive:
// a client that declares a large body and sends nothing holds no more.
const initialCap = 16 << 10

// Read reads the whole body of r, refusing one longer than max bytes
// without reading more than max: a declared length over the cap is
// refused before anything is read. Memory grows with the bytes that
// arrive, not with the declared length.
//
// With timeout > 0 the whole body must arrive within timeout of the call,
// or Read fails with ErrTimeout, asks for an HTTP/1 connection to be closed
// ("Connection: close": the rest of the body is never read) and leaves the
// expired deadline in place, so the server does not wait for that rest
// either. The limit is the connection's read deadline
// (http.ResponseController); a server's own read timeout still applies,
// and under Caddy the shorter of the two wins.
//
// A body that arrived whole needs no clearing of the deadline: reaching
// its end clears it (net/http starts its background read; Caddy's body
// reader clears its own deadline), so the answer that follows may stream
// for as long as it takes. Clearing it here again would cut that answer:
// under Caddy, SetReadDeadline(time.Time{}) re-arms read_body, counted
// from the start of the request. When w cannot set deadlines, Read stops
// waiting at the limit all the same.
func Read(w http.ResponseWriter, r *http.Request, max int64, timeout time.Duration) ([]byte, error) {
	if r.ContentLength > max {
		return nil, ErrTooLarge
	}
	raw, err := read(w, r, max, timeout)
	if errors.Is(err, ErrTimeout) && r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close") // on HTTP/2 it would end every stream of the connection
	}
	return raw, err
}

func read(w http.ResponseWriter, r *http.Request, max int64, timeout time.Duration) ([]byte, error) {
	src := http.MaxBytesReader(w, r.Body, max)
	if timeout <= 0 || r.ContentLength == 0 {
		// No body (a server request's length is -1 when unknown): its
		// end is already reached, so a deadline would outlive it.
		return readAll(src, r.ContentLength)
	}
	if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return readWithTimer(r, src, timeout)
	}
	return readAll(src, r.ContentLength)
}

// readWithTimer is Read for a writer that cannot set a read deadline: the
// body is read on another goroutine, and Read stops waiting for it at the
// limit and closes the body, which ends a read that supports it.
func readWithTimer(r *http.Request, src io.Reader, timeout time.Duration) ([]byte, error) {
	type result struct {
		raw []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		raw, err := readAll(src, r.ContentLength)
		done <- result{raw, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res := <-done:
		return res.raw, res.err
	case <-timer.C:
		go r.Body.Close()
		return nil, ErrTimeout
	}
}

// readAll reads src to its end. The buffer starts at min(size, initialCap)
// and doubles as bytes arrive, up to the declared size.
func readAll(src io.Reader, size int64) ([]byte, error) {
	n := int64(512)
	if size > 0 {
		n = min(size, initialCap) + 1 // one more byte: EOF is seen without growing
	}
	buf := make([]byte, 0, n)
	for {
		if len(buf) == cap(buf) {
			c := 2 * int64(cap(buf))
			if size >= int64(len(buf)) && c > size+1 {
				c = size + 1
			}
			grown := make([]byte, len(buf), c)
			copy(grown, buf)
			buf = grown
		}
		m, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		switch {
		case err == io.EOF:
			return buf, nil
		case err == nil:
		case errors.As(err, new(*http.MaxBytesError)):
			return nil, ErrTooLarge
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, ErrTimeout
		default:
			return nil, fmt.Errorf("request body could not be read: %v", err)
		}
	}
}
