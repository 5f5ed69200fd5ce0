package caddymodule

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/openwebui-monitor/owmon/internal/edge"
)

// meterWriter shows the answer of a model call to its edge.Call as it
// passes. It never holds the answer back: each write goes on at once and
// is flushed (only an incomplete line can wait for its end when a usage
// chunk must be removed).
type meterWriter struct {
	*caddyhttp.ResponseWriterWrapper // Unwrap, so ResponseController reaches the connection
	call                             *edge.Call
	wroteHeader                      bool
	err                              error
}

func (w *meterWriter) WriteHeader(status int) {
	if w.wroteHeader {
		return
	}
	w.call.Header(status, w.Header())
	if status >= 200 {
		w.wroteHeader = true
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

func (w *meterWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if out := w.call.Write(p); len(out) > 0 {
		if _, err := w.ResponseWriterWrapper.Write(out); err != nil {
			w.err = err
			return 0, err
		}
		if err := http.NewResponseController(w.ResponseWriterWrapper.ResponseWriter).Flush(); err != nil {
			w.err = err
			return 0, err
		}
	}
	return len(p), nil
}

// FlushError lets reverse_proxy's flushes through.
func (w *meterWriter) FlushError() error {
	return http.NewResponseController(w.ResponseWriterWrapper.ResponseWriter).Flush()
}

// ReadFrom is masked: ResponseWriterWrapper's would bypass Write.
func (w *meterWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{w}, r)
}

// finish sends what the meter still held when the answer ended.
func (w *meterWriter) finish() {
	if rest := w.call.Close(); len(rest) > 0 && w.err == nil {
		_, _ = w.ResponseWriterWrapper.Write(rest)
	}
}

type writerOnly struct{ io.Writer }

// Interface guards
var (
	_ http.ResponseWriter = (*meterWriter)(nil)
	_ io.ReaderFrom       = (*meterWriter)(nil)
)
