package edge

import (
	"io"
	"net/http"
)

// wrapper passes a response writer on; Unwrap lets http.ResponseController
// (reverse_proxy's flushes and hijacks) reach the connection beneath.
type wrapper struct {
	http.ResponseWriter
}

// Unwrap returns the writer beneath.
func (w wrapper) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Push passes an HTTP/2 push on, where the writer beneath takes one.
func (w wrapper) Push(target string, opts *http.PushOptions) error {
	if p, ok := w.ResponseWriter.(http.Pusher); ok {
		return p.Push(target, opts)
	}
	return http.ErrNotSupported
}

// meterWriter shows the answer of a model call to its Call as it passes.
// It never holds the answer back: each write goes on at once and is
// flushed (only an incomplete line can wait for its end when a usage
// chunk must be removed).
type meterWriter struct {
	wrapper
	call        *Call
	wroteHeader bool
	err         error
}

func (w *meterWriter) WriteHeader(status int) {
	if w.wroteHeader {
		return
	}
	w.call.Header(status, w.Header())
	if status >= 200 {
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *meterWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if out := w.call.Write(p); len(out) > 0 {
		if _, err := w.ResponseWriter.Write(out); err != nil {
			w.err = err
			return 0, err
		}
		if err := http.NewResponseController(w.ResponseWriter).Flush(); err != nil {
			w.err = err
			return 0, err
		}
	}
	return len(p), nil
}

// FlushError lets the proxy's flushes through.
func (w *meterWriter) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// ReadFrom is masked: the writer beneath's would bypass Write.
func (w *meterWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{w}, r)
}

// finish sends what the meter still held when the answer ended.
func (w *meterWriter) finish() {
	if rest := w.call.Close(); len(rest) > 0 && w.err == nil {
		_, _ = w.ResponseWriter.Write(rest)
	}
}

// statusWriter remembers the status of the answer it passes on.
type statusWriter struct {
	wrapper
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

type writerOnly struct{ io.Writer }

// Interface guards
var (
	_ http.ResponseWriter = (*meterWriter)(nil)
	_ io.ReaderFrom       = (*meterWriter)(nil)
	_ http.ResponseWriter = (*statusWriter)(nil)
	_ http.Pusher         = wrapper{}
)
