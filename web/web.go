// Package web holds the dashboard's templates and static files, embedded in
// the binary: no build step, no files to deploy.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"sync"
)

// Templates are the pages' html/template files (templates/*.html).
//
//go:embed templates/*.html
var Templates embed.FS

//go:embed static/*
var static embed.FS

// Static is the static files (CSS, JS, icons) at the root.
var Static, _ = fs.Sub(static, "static")

var (
	hashOnce sync.Once
	hashes   map[string]string
)

// Version returns a short content hash of a static file, for cache-busting
// URLs (static/app.css?v=…); "" for a file that does not exist.
func Version(name string) string {
	hashOnce.Do(func() {
		hashes = map[string]string{}
		entries, _ := fs.ReadDir(Static, ".")
		for _, e := range entries {
			b, err := fs.ReadFile(Static, e.Name())
			if err != nil {
				continue
			}
			sum := sha256.Sum256(b)
			hashes[e.Name()] = hex.EncodeToString(sum[:6])
		}
	})
	return hashes[name]
}
