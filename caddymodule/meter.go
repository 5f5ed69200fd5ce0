package caddymodule

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/openwebui-monitor/owmon/internal/edge"
	"github.com/openwebui-monitor/owmon/internal/identity"
)

func init() {
	caddy.RegisterModule(Meter{})
	httpcaddyfile.RegisterHandlerDirective("openwebui_meter", parseMeter)
	// Before respond (which Caddy orders before reverse_proxy): a site that
	// answers the rest with `respond 404` must still reach the handler.
	httpcaddyfile.RegisterDirectiveOrder("openwebui_meter", httpcaddyfile.Before, "respond")
}

// Meter is the openwebui_meter HTTP handler, for the listener OpenWebUI
// uses as a model connection's base URL, in front of the reverse_proxy to
// the real provider. It sees every model call OpenWebUI makes (background
// tasks and tool rounds included), charges each to the user OpenWebUI
// forwards, and refuses calls a balance cannot cover. It shares the app's
// store and ledger with openwebui_monitor; when both see a call, this one
// adopts the front's hold and charges, and the others only gate.
type Meter struct {
	app *App
	cfg edge.ProviderConfig
}

// CaddyModule returns the Caddy module information.
func (Meter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.openwebui_meter",
		New: func() caddy.Module { return new(Meter) },
	}
}

// Provision fetches the app.
func (m *Meter) Provision(ctx caddy.Context) error {
	appIface, err := ctx.App("openwebui_monitor")
	if err != nil {
		return fmt.Errorf("getting openwebui_monitor app: %v", err)
	}
	m.app = appIface.(*App)
	s := m.app.settings
	m.cfg = edge.ProviderConfig{
		SharedKey:     identity.NewSecret(s.ProviderKey),
		UserJWTSecret: s.ForwardUserSecret,
		SystemUser:    identity.User{ID: s.SystemUser, Name: "System", Role: "system"},
	}
	return nil
}

// Validate refuses a listener without a shared key: anyone who reaches it
// could spend the provider key and name any user.
func (m *Meter) Validate() error {
	if !m.cfg.SharedKey.Set() {
		return errors.New("openwebui_meter needs provider_key (OWMON_PROVIDER_KEY): the key OpenWebUI's connection sends")
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (m *Meter) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return m.app.gate.ServeProvider(w, r, m.cfg, next)
}

func parseMeter(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Meter)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler. It takes no arguments; the
// global openwebui_monitor block holds provider_key and the rest:
//
//	openwebui_meter
func (m *Meter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("openwebui_meter takes no block; configure it in the global openwebui_monitor option")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Meter)(nil)
	_ caddy.Validator             = (*Meter)(nil)
	_ caddyhttp.MiddlewareHandler = (*Meter)(nil)
	_ caddyfile.Unmarshaler       = (*Meter)(nil)
)
