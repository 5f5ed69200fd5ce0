// Command owmon is Caddy with the standard modules plus OpenWebUI Monitor.
// It behaves like the caddy command: run, adapt, list-modules, version, …
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/openwebui-monitor/owmon/caddymodule"
)

func main() {
	caddycmd.Main()
}
