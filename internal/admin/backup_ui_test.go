package admin

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// TestImportPreview: ?mode=preview checks a backup as a restore would and
// answers what it would import and replace, writing nothing, on an empty
// store and on one that holds data; a bad file gets the restore's answer,
// with the reason in words.
func TestImportPreview(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		// Into an empty store: nothing to replace.
		status, body := e.raw(t, "POST", "/api/v1/panel/database/import?mode=preview", oldBackup)
		r := gjson.Parse(body)
		if status != 200 || !r.Get("preview").Bool() || r.Get("needs_replace").Bool() || r.Get("version").Str != "1.0" ||
			r.Get("imported.users").Int() != 2 || r.Get("imported.model_prices").Int() != 1 ||
			r.Get("imported.records").Int() != 2 || r.Get("imported.balance_changes").Int() != 0 ||
			r.Get("replaced.users").Int() != 0 || r.Get("replaced.records").Int() != 0 || r.Get("timestamp").Str == "" {
			t.Fatalf("preview into an empty store: %d %s", status, body)
		}
		_, _, empty := e.call(t, "GET", "/api/v1/panel/database/export", "")
		if n := gjson.Get(empty, "data.users.#").Int(); n != 0 {
			t.Fatalf("a preview imported %d users", n)
		}

		// Into a store with data: the counts of both, and still nothing written.
		e.user(t, "a", "Ann", "ann@example.com", 5)
		e.user(t, "b", "Ben", "ben@example.com", 5)
		e.user(t, "c", "Cy", "cy@example.com", 5)
		e.call(t, "POST", "/api/v1/users/a/topup", `{"amount": 1, "reason": "x"}`)
		_, _, before := e.call(t, "GET", "/api/v1/panel/database/export", "")
		status, body = e.raw(t, "POST", "/api/v1/panel/database/import?mode=preview", oldBackup)
		r = gjson.Parse(body)
		if status != 200 || !r.Get("needs_replace").Bool() || r.Get("imported.users").Int() != 2 ||
			r.Get("replaced.users").Int() != 3 || r.Get("replaced.balance_changes").Int() != 1 ||
			r.Get("replaced.model_prices").Int() != 0 || r.Get("replaced.records").Int() != 0 {
			t.Fatalf("preview into a store with data: %d %s", status, body)
		}
		// Our own export previews with its own counts.
		status, body = e.raw(t, "POST", "/api/v1/panel/database/import?mode=preview", before)
		if r = gjson.Parse(body); status != 200 || r.Get("version").Str != backupVersion ||
			r.Get("imported.users").Int() != 3 || r.Get("imported.balance_changes").Int() != 1 {
			t.Fatalf("preview of our export: %d %s", status, body)
		}
		_, _, after := e.call(t, "GET", "/api/v1/panel/database/export", "")
		if gjson.Get(after, "data").Raw != gjson.Get(before, "data").Raw {
			t.Fatal("a preview changed the data")
		}
		if files, _ := filepath.Glob(filepath.Join(e.backups, "*")); len(files) != 0 {
			t.Fatalf("a preview wrote %v", files)
		}

		// Bad files: the restore's status, and the reason in words.
		for _, c := range []struct {
			body, detail string
			status       int
		}{
			{`not json`, "it is not a JSON file", 400},
			{`[{"id": "gpt-4o"}]`, "it is not a JSON object with version and data", 400},
			{`{"version": "1.0", "data": {"users": []}}{}`, "more than one JSON value", 400},
			{`{"version": "1.0", "data": {"users": {}}}`, "data.users: must be a list", 400},
			{`{"version": "1.0", "data": {"users": []}}`, "", 422},
			{`{"version": "9", "data": {"users": [], "model_prices": [], "user_usage_records": []}}`, "", 422},
		} {
			status, body := e.raw(t, "POST", "/api/v1/panel/database/import?mode=preview", c.body)
			r := gjson.Parse(body)
			if status != c.status || r.Get("error").Str == "" || !strings.Contains(r.Get("detail").Str, c.detail) || r.Get("preview").Bool() {
				t.Fatalf("%s: %d %s", c.body, status, body)
			}
		}
		if status, body := e.raw(t, "POST", "/api/v1/panel/database/import?mode=dry", oldBackup); status != 400 ||
			!strings.Contains(gjson.Get(body, "error").Str, "preview") {
			t.Fatalf("mode=dry: %d %s", status, body)
		}
		_, _, after = e.call(t, "GET", "/api/v1/panel/database/export", "")
		if gjson.Get(after, "data").Raw != gjson.Get(before, "data").Raw {
			t.Fatal("a bad preview changed the data")
		}
	})
}
