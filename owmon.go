// Package owmon plugs OpenWebUI Monitor into Caddy. It exists so that
//
//	xcaddy build --with github.com/openwebui-monitor/owmon
//
// works: importing it registers the modules in package caddymodule.
package owmon

import (
	_ "github.com/openwebui-monitor/owmon/caddymodule"
)
