package caddymodule

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/openwebui-monitor/owmon/internal/admin"
	"github.com/openwebui-monitor/owmon/internal/edge"
	"github.com/openwebui-monitor/owmon/internal/function"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the openwebui_monitor HTTP handler, placed in front of the
// reverse_proxy to OpenWebUI. It answers the Usage Monitor function's
// /api/v1/inlet and /api/v1/outlet, gates and meters model calls, and
// passes every other request on untouched.
type Handler struct {
	app       *App
	endpoints *function.Endpoints
	admin     *admin.API // nil when the dashboard is off
	prefix    string     // where admin lives
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.openwebui_monitor",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fetches the openwebui_monitor app, configured or not.
func (h *Handler) Provision(ctx caddy.Context) error {
	appIface, err := ctx.App("openwebui_monitor")
	if err != nil {
		return fmt.Errorf("getting openwebui_monitor app: %v", err)
	}
	h.app = appIface.(*App)
	s := h.app.settings
	h.endpoints = function.New(h.app.ledger, counter, s.APIKey, s.MaxBodyBytes, s.BodyTimeout, ctx.Slogger())
	h.endpoints.ShareThrottle(h.app.apiKeys)
	if s.DashboardPath != "" {
		h.admin = admin.New(h.app.ledger, admin.Options{
			BackupDir:   s.BackupDir,
			AccessToken: s.AccessToken, MaxBodyBytes: s.MaxBodyBytes, BodyTimeout: s.BodyTimeout,
			OpenWebUI: s.OpenWebUI, OpenWebUIAPIKey: s.OpenWebUIAPIKey, FunctionAPIKey: s.APIKey, Currency: s.Currency, Log: ctx.Slogger(),
			Throttle: h.app.access,
		})
		h.prefix = strings.TrimSuffix(s.DashboardPath, "/")
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if function.Handles(r.URL.Path) {
		h.endpoints.ServeHTTP(w, r)
		return nil
	}
	if h.admin != nil {
		if rest, ok := under(r.URL.Path, h.prefix); ok {
			r2 := r.WithContext(r.Context())
			u := *r.URL
			u.Path, u.RawPath = rest, ""
			if raw, ok := under(r.URL.RawPath, h.prefix); ok && r.URL.RawPath != "" {
				u.RawPath = raw // keeps an escaped "/" (%2F) in a user id one segment
			}
			r2.URL = &u
			h.admin.ServeHTTP(w, r2)
			return nil
		}
	}
	if strings.HasPrefix(r.URL.Path, socketIOPath) {
		return h.serveSocketIO(w, r, next)
	}
	if chatID, ok := stopPath(r); ok {
		return h.serveStop(w, r, next, chatID)
	}
	call, handled := h.app.gate.Begin(w, r)
	if handled {
		return nil
	}
	if call == nil {
		return next.ServeHTTP(w, r)
	}
	return serveMetered(w, r, next, call)
}

// serveMetered passes a model call on and reads its answer on the way back.
func serveMetered(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, call *edge.Call) error {
	mw := &meterWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, call: call}
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
func (h *Handler) serveStop(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, chatID string) error {
	user, known := h.app.gate.Identify(r)
	if !known {
		return next.ServeHTTP(w, r)
	}
	sw := &statusWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err := next.ServeHTTP(sw, r)
	if err == nil && sw.status >= 200 && sw.status < 300 {
		h.app.gate.Tracker().Stop(chatID, user.ID)
	}
	return err
}

// statusWriter remembers the status of the answer it passes on.
type statusWriter struct {
	*caddyhttp.ResponseWriterWrapper
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriterWrapper.Write(p)
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

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ http.ResponseWriter         = (*statusWriter)(nil)
)
