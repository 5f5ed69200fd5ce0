package web

import (
	"io/fs"
	"strings"
	"testing"
)

func TestEmbedded(t *testing.T) {
	for _, name := range []string{"app.css", "app.js"} {
		b, err := fs.ReadFile(Static, name)
		if err != nil || len(b) == 0 {
			t.Fatalf("static %s: %v", name, err)
		}
		if v := Version(name); len(v) != 12 {
			t.Fatalf("version of %s: %q", name, v)
		}
	}
	if Version("nope.js") != "" {
		t.Fatal("version of a missing file")
	}
	pages, err := fs.Glob(Templates, "templates/*.html")
	if err != nil || len(pages) < 7 {
		t.Fatalf("templates: %v %v", pages, err)
	}
	for _, p := range pages {
		b, _ := fs.ReadFile(Templates, p)
		// The CSP forbids inline scripts and styles.
		for _, bad := range []string{"<script>", "style=", "<style", "onclick", "onsubmit"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s contains %q", p, bad)
			}
		}
	}
}
