package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("openwebui_monitor", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("openwebui_monitor", parseHandler)
	// Before respond (which Caddy orders before reverse_proxy): a site that
	// answers the rest with `respond 404` must still reach the handler.
	httpcaddyfile.RegisterDirectiveOrder("openwebui_monitor", httpcaddyfile.Before, "respond")
}

func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("openwebui_monitor is configured twice")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "openwebui_monitor", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the global option block. Each
// option takes one value; every one is optional and falls back to its
// environment variable (the README's table), then to its default:
//
//	openwebui_monitor {
//		database                <postgres://… | postgresql://… | sqlite://path>
//		openwebui               <url>
//		openwebui_api_key       <key>
//		api_key                 <key>
//		access_token            <token>
//		init_balance            <amount>
//		default_input_price     <amount per 1M tokens>
//		default_output_price    <amount per 1M tokens>
//		default_per_msg_price   <amount, or -1 to bill by tokens>
//		cost_on_inlet           <amount | model:amount[,model:amount…]>
//		max_body_size           <size, e.g. 32MiB>
//		body_timeout            <duration, e.g. 60s>
//		webui_secret_key        <secret>
//		mode                    enforce|monitor
//		identity_cache_ttl      <duration>
//		inject_usage            on|off
//		strip_background        on|off
//		hold_ttl                <duration>
//		min_hold                <amount>
//		dashboard               on|off
//		dashboard_path          <path, e.g. /monitor, or />
//		currency                <symbol>
//		provider_key            <key of at least 16 characters>
//		forward_user_jwt_secret <secret>
//		system_user             <user id>
//		api_key_header          <header name>
//		max_tokens_per_call     <count>
//		hold_output_tokens      <count>
//		store_outage            fail_open|fail_closed
//		journal                 <absolute path>|off
//		log_charges             on|off
//		timezone                <zone, e.g. Asia/Shanghai>
//		group_sync              <duration, e.g. 5m>|off
//	}
//
// Values are checked here, so `caddy adapt` names a bad one.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		name := d.Val()
		var value string
		if !d.Args(&value) {
			return d.ArgErr()
		}
		if d.NextArg() {
			return d.Errf("%s takes one value", name)
		}
		if !a.Options.Set(name, value) {
			return d.Errf("unknown openwebui_monitor option %q", name)
		}
	}
	if _, err := a.Options.Settings(caddy.AppDataDir()); err != nil {
		return d.Errf("openwebui_monitor: %v", err)
	}
	return nil
}

func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler. It takes no arguments; the app's
// global option block holds the configuration:
//
//	openwebui_monitor
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("openwebui_monitor takes no block; configure it in the global openwebui_monitor option")
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
