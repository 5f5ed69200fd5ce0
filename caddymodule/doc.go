// Package caddymodule adapts OpenWebUI Monitor to Caddy: the
// openwebui_monitor app, its HTTP handler and their Caddyfile syntax. It
// stays thin; the logic lives in the internal packages.
package caddymodule
