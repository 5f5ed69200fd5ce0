package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// TestREADMEFunctionOnlyCaddyfile runs the README's function-only
// Caddyfile as written (the port from OWMON_PORT): the function's inlet
// and outlet answer, the dashboard and its health answer, and only what
// the monitor does not serve reaches `respond 404`. (Caddy orders respond
// before reverse_proxy; openwebui_monitor must come before respond.)
func TestREADMEFunctionOnlyCaddyfile(t *testing.T) {
	port := freePort(t)
	t.Setenv("OWMON_PORT", fmt.Sprint(port))
	t.Setenv("DATABASE_URL", "sqlite://"+filepath.Join(t.TempDir(), "function-only.db"))
	t.Setenv("API_KEY", testAPIKey)
	t.Setenv("ACCESS_TOKEN", "admin-secret")
	t.Setenv("INIT_BALANCE", "5")
	cf := readmeCaddyfile(t, "function-only")
	cf = strings.Replace(cf, "{\n", "{\n\tadmin off\n\tauto_https off\n\tlog {\n\t\toutput discard\n\t}\n", 1)
	run(t, cf)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/inlet", strings.NewReader(
		`{"user":{"id":"u1","email":"u1@example.com","name":"U1","role":"user"},"body":{"model":"gpt-4o","messages":[]}}`))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || gjson.GetBytes(b, "balance").Float() != 5 {
		t.Fatalf("inlet: %d %s", resp.StatusCode, b)
	}
	for path, want := range map[string]int{"/monitor/healthz": 200, "/monitor/login": 200, "/elsewhere": 404} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
