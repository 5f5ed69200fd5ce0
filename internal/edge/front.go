package edge

import (
	"net/http"
	"strings"

	"github.com/openwebui-monitor/owmon/internal/function"
)

// Handler is what a request is passed on to: the reverse proxy to
// OpenWebUI or to a provider. Its error (the proxy's failure to reach the
// upstream) is returned as is; Caddy's caddyhttp.Handler is one.
type Handler interface {
	ServeHTTP(http.ResponseWriter, *http.Request) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// ServeHTTP calls f.
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

// Wrap adapts a plain http.Handler (an httputil.ReverseProxy) to Handler;
// it never returns an error.
func Wrap(h http.Handler) Handler {
	return HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		h.ServeHTTP(w, r)
		return nil
	})
}

// Front is the handler in front of OpenWebUI. It answers the Usage Monitor
// function's /api/v1/inlet and /api/v1/outlet, serves the dashboard under
// its prefix, taps OpenWebUI's socket.io traffic, follows "stop
// generating", gates and meters model calls, and passes every other
// request on untouched.
type Front struct {
	Gate        *Gate
	Endpoints   http.Handler // the function's inlet and outlet
	Admin       http.Handler // the dashboard; nil when it is off
	AdminPrefix string       // where Admin lives: "/monitor", or "" (or "/") for the root
}

// ServeHTTP serves a request in front of OpenWebUI, passing on to next
// what it does not answer itself. The error is next's.
//
// A model call's answer is read as it passes; its hold is settled however
// the answer ends, also when next aborts it with a panic
// (http.ErrAbortHandler), which then goes on up.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request, next Handler) error {
	if function.Handles(r.URL.Path) {
		f.Endpoints.ServeHTTP(w, r)
		return nil
	}
	if f.Admin != nil {
		prefix := strings.TrimSuffix(f.AdminPrefix, "/")
		if rest, ok := under(r.URL.Path, prefix); ok {
			r2 := r.WithContext(r.Context())
			u := *r.URL
			u.Path, u.RawPath = rest, ""
			if raw, ok := under(r.URL.RawPath, prefix); ok && r.URL.RawPath != "" {
				u.RawPath = raw // keeps an escaped "/" (%2F) in a user id one segment
			}
			r2.URL = &u
			f.Admin.ServeHTTP(w, r2)
			return nil
		}
	}
	if strings.HasPrefix(r.URL.Path, SocketIOPath) {
		return f.Gate.serveSocketIO(w, r, next)
	}
	if chatID, ok := stopPath(r); ok {
		return f.Gate.serveStop(w, r, next, chatID)
	}
	call, handled := f.Gate.Begin(w, r)
	if handled {
		return nil
	}
	if call == nil {
		return next.ServeHTTP(w, r)
	}
	return serveMetered(w, r, next, call)
}

// ServeProvider serves a request on the hop between OpenWebUI and a model
// provider (see BeginProvider), passing on to next what it does not refuse.
// The error is next's.
func (g *Gate) ServeProvider(w http.ResponseWriter, r *http.Request, pc ProviderConfig, next Handler) error {
	call, handled := g.BeginProvider(w, r, pc)
	if handled {
		return nil
	}
	if call == nil {
		return next.ServeHTTP(w, r)
	}
	return serveMetered(w, r, next, call)
}

// serveMetered passes a model call on and reads its answer on the way back.
func serveMetered(w http.ResponseWriter, r *http.Request, next Handler, call *Call) error {
	mw := &meterWriter{wrapper: wrapper{w}, call: call}
	// Deferred: reverse_proxy aborts an incomplete answer with a panic
	// (http.ErrAbortHandler), and that call must be settled too.
	defer func() {
		mw.finish()
		call.End()
	}()
	return next.ServeHTTP(mw, r)
}

// serveStop passes a user's "stop generating" on to OpenWebUI and, once
// OpenWebUI accepted it, tells the tap: the user's messages of that chat
// are then charged for what was produced, not left to a lapsed hold.
func (g *Gate) serveStop(w http.ResponseWriter, r *http.Request, next Handler, chatID string) error {
	user, known := g.Identify(r)
	if !known {
		return next.ServeHTTP(w, r)
	}
	sw := &statusWriter{wrapper: wrapper{w}}
	err := next.ServeHTTP(sw, r)
	if err == nil && sw.status >= 200 && sw.status < 300 {
		g.tracker.Stop(chatID, user.ID)
	}
	return err
}

// stopPath reports the chat whose generation POST
// /api/tasks/chat/{chat_id}/stop stops.
func stopPath(r *http.Request) (chatID string, ok bool) {
	if r.Method != http.MethodPost {
		return "", false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/tasks/chat/")
	if !ok {
		return "", false
	}
	chatID, ok = strings.CutSuffix(rest, "/stop")
	return chatID, ok && chatID != "" && !strings.Contains(chatID, "/")
}

// under reports whether path lies below prefix ("" is the root) and
// returns it relative to the prefix.
func under(path, prefix string) (string, bool) {
	if prefix == "" {
		return path, true
	}
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	if rest == "" {
		rest = "/"
	}
	return rest, true
}
