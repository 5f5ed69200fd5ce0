package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/openwebui-monitor/owmon/internal/admin"
	"github.com/openwebui-monitor/owmon/internal/edge"
	"github.com/openwebui-monitor/owmon/internal/function"
	"github.com/openwebui-monitor/owmon/internal/identity"
)

func init() {
	caddy.RegisterModule(Handler{})
	// Throttles count Caddy's client_ip, which honours trusted_proxies.
	identity.SetClientIP(func(r *http.Request) string {
		ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
		return ip
	})
}

// Handler is the openwebui_monitor HTTP handler, placed in front of the
// reverse_proxy to OpenWebUI: edge.Front, which answers the Usage Monitor
// function's /api/v1/inlet and /api/v1/outlet, serves the dashboard, gates
// and meters model calls, and passes every other request on untouched.
type Handler struct {
	front edge.Front
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
	app := appIface.(*App)
	s := app.settings
	endpoints := function.New(app.ledger, counter, s.APIKey, s.MaxBodyBytes, s.BodyTimeout, ctx.Slogger())
	endpoints.ShareThrottle(app.apiKeys)
	h.front = edge.Front{Gate: app.gate, Endpoints: endpoints}
	if s.DashboardPath != "" {
		h.front.Admin = admin.New(app.ledger, admin.Options{
			BackupDir:   s.BackupDir,
			AccessToken: s.AccessToken, MaxBodyBytes: s.MaxBodyBytes, BodyTimeout: s.BodyTimeout,
			OpenWebUI: s.OpenWebUI, OpenWebUIAPIKey: s.OpenWebUIAPIKey, FunctionAPIKey: s.APIKey, Currency: s.Currency, Log: ctx.Slogger(),
			Throttle: app.access, Identify: identify(app.gate), SyncGroups: app.syncGroups(),
		})
		h.front.AdminPrefix = s.DashboardPath
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return h.front.ServeHTTP(w, r, next)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
