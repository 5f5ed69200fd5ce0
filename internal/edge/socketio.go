package edge

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/openwebui-monitor/owmon/internal/wstap"
)

// SocketIOPath is where OpenWebUI mounts socket.io, in every version (§5).
const SocketIOPath = "/ws/socket.io"

// serveSocketIO passes OpenWebUI's socket.io traffic on and lets the tap
// read what the server sends the browser: the frames of an upgraded
// websocket, or the bodies of long-polling answers. Not a byte is changed
// or held back. Traffic of an unidentified user passes untapped.
func (g *Gate) serveSocketIO(w http.ResponseWriter, r *http.Request, next Handler) error {
	user, ok := g.Identify(r)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	tracker := g.tracker
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		// Ask for frames we can read as they are; the tap still inflates
		// when an upstream compresses anyway.
		r.Header.Del("Sec-Websocket-Extensions")
		tw := &tapWriter{wrapper: wrapper{w},
			open: func(ext string) *wstap.Conn { return tracker.OpenWebSocket(user.ID, ext) }}
		return next.ServeHTTP(tw, r)
	case r.Method == http.MethodGet && q.Get("transport") == "polling" && q.Get("sid") != "":
		r.Header.Set("Accept-Encoding", "identity")
		body := tracker.OpenPolling(q.Get("sid"), user.ID).Body()
		defer body.Close()
		return next.ServeHTTP(&pollWriter{wrapper: wrapper{w}, body: body}, r)
	}
	return next.ServeHTTP(w, r)
}

// tapWriter hands reverse_proxy a connection whose writes (the server's
// frames, after the 101 answer) the tap reads once they were sent.
type tapWriter struct {
	wrapper
	open func(extensions string) *wstap.Conn
}

// Hijack takes over the browser's connection, as reverse_proxy does on a
// protocol switch, and wraps it.
func (w *tapWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// The upstream's answer headers are ours by now (reverse_proxy copies
	// them before it switches protocols).
	return &tapConn{Conn: conn, tap: w.open(headerFold(w.Header(), "Sec-WebSocket-Extensions"))}, brw, nil
}

// headerFold reads a header whatever the case of its key: reverse_proxy
// stores the websocket headers under their RFC spelling
// ("Sec-WebSocket-…"), which Header.Get, canonicalising, does not find.
func headerFold(h http.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return strings.Join(v, ", ")
		}
	}
	return ""
}

// tapConn is the browser's connection: what is written to it is read by
// the tap after it was written.
type tapConn struct {
	net.Conn
	tap   *wstap.Conn
	close sync.Once
}

func (c *tapConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		_, _ = c.tap.Write(p[:n])
	}
	return n, err
}

func (c *tapConn) Close() error {
	c.close.Do(c.tap.Close)
	return c.Conn.Close()
}

var errNoHalfClose = errors.New("connection cannot close its write half")

// CloseWrite keeps reverse_proxy's half-close working through the wrapper.
func (c *tapConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errNoHalfClose
}

// pollWriter lets the tap read a long-polling answer's body as it is sent.
type pollWriter struct {
	wrapper
	body *wstap.BodyWriter
}

func (w *pollWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	if n > 0 {
		_, _ = w.body.Write(p[:n])
	}
	return n, err
}

// ReadFrom is masked: the writer beneath's would bypass Write.
func (w *pollWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{w}, r)
}

// Interface guards
var (
	_ http.Hijacker       = (*tapWriter)(nil)
	_ http.ResponseWriter = (*pollWriter)(nil)
	_ io.ReaderFrom       = (*pollWriter)(nil)
)
