package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	s, err := Options{}.Settings("/data")
	if err != nil {
		t.Fatal(err)
	}
	if s.Database.Kind != "sqlite" || s.Database.DSN != "/data/openwebui-monitor/monitor.db" {
		t.Fatalf("database = %+v", s.Database)
	}
	if s.DefaultPrice.Input != money.Units(60) || s.DefaultPrice.Output != money.Units(60) || s.DefaultPrice.PerMessage != money.Units(-1) {
		t.Fatalf("default price = %+v", s.DefaultPrice)
	}
	if s.InitBalance != 0 || s.MaxBodyBytes != 32<<20 {
		t.Fatalf("init %s, max body %d", s.InitBalance, s.MaxBodyBytes)
	}
	if !s.Enforce || !s.InjectUsage || !s.StripBackground || s.HoldTTL != 15*time.Minute || s.IdentityCacheTTL != 30*time.Second || s.MinHold != 0 {
		t.Fatalf("gate defaults %+v", s)
	}
	if s.DashboardPath != "/monitor" {
		t.Fatalf("dashboard path %q", s.DashboardPath)
	}
	if s.BodyTimeout != 60*time.Second {
		t.Fatalf("body timeout %v, want 60s", s.BodyTimeout)
	}
	if e, _ := (Options{}.WithEnv(env(map[string]string{"OWMON_BODY_TIMEOUT": "5s"}))).Settings("/d"); e.BodyTimeout != 5*time.Second {
		t.Fatalf("OWMON_BODY_TIMEOUT not applied: %v", e.BodyTimeout)
	}
	if s.MaxTokensPerCall != 100_000_000 {
		t.Fatalf("max tokens per call %d, want 100000000", s.MaxTokensPerCall)
	}
	if e, _ := (Options{}.WithEnv(env(map[string]string{"OWMON_MAX_TOKENS_PER_CALL": "5000"}))).Settings("/d"); e.MaxTokensPerCall != 5000 {
		t.Fatalf("OWMON_MAX_TOKENS_PER_CALL not applied: %d", e.MaxTokensPerCall)
	}
	if s.BackupDir != "/data/openwebui-monitor" {
		t.Fatalf("backup dir %q", s.BackupDir)
	}
	if p, _ := (Options{Database: "postgres://u@db/x"}).Settings("/data"); p.BackupDir != "/data/openwebui-monitor" {
		t.Fatalf("backup dir with PostgreSQL %q", p.BackupDir)
	}
	if f, _ := (Options{Database: "sqlite:///srv/mon/m.db"}).Settings("/data"); f.BackupDir != "/srv/mon" {
		t.Fatalf("backup dir of a SQLite file elsewhere %q", f.BackupDir)
	}
	if off, _ := (Options{Dashboard: "off"}).Settings("/d"); off.DashboardPath != "" {
		t.Fatalf("dashboard off still mounted at %q", off.DashboardPath)
	}
	if m, _ := (Options{Mode: "monitor", InjectUsage: "off"}).Settings("/d"); m.Enforce || m.InjectUsage {
		t.Fatalf("monitor/off not applied: %+v", m)
	}
}

func TestEnvFallbacks(t *testing.T) {
	o := Options{APIKey: "from-config"}.WithEnv(env(map[string]string{
		"API_KEY":           "from-env",
		"ACCESS_TOKEN":      "tok",
		"INIT_BALANCE":      "2.5",
		"COST_ON_INLET":     "gpt-4o:0.1",
		"OPENWEBUI_DOMAIN":  "https://chat.example.com/",
		"POSTGRES_HOST":     "db",
		"POSTGRES_PORT":     "5433",
		"POSTGRES_USER":     "mon",
		"POSTGRES_PASSWORD": "p@ss word",
		"POSTGRES_DATABASE": "monitor",
	}))
	s, err := o.Settings("/data")
	if err != nil {
		t.Fatal(err)
	}
	if s.APIKey != "from-config" || s.AccessToken != "tok" {
		t.Fatalf("config must win over env: %q %q", s.APIKey, s.AccessToken)
	}
	if s.InitBalance != 2_500_000_000 || s.InletCosts.For("gpt-4o") != 100_000_000 {
		t.Fatalf("init %s inlet %s", s.InitBalance, s.InletCosts.For("gpt-4o"))
	}
	if s.OpenWebUI != "https://chat.example.com" {
		t.Fatalf("openwebui = %q", s.OpenWebUI)
	}
	if s.Database.Kind != "postgres" || s.Database.DSN != "postgres://mon:p%40ss%20word@db:5433/monitor" {
		t.Fatalf("database = %+v", s.Database)
	}
	// DATABASE_URL comes before POSTGRES_URL and the parts.
	o = Options{}.WithEnv(env(map[string]string{"DATABASE_URL": "postgresql://a@h/x", "POSTGRES_URL": "postgres://b@h/y"}))
	if o.Database != "postgresql://a@h/x" {
		t.Fatalf("database = %q", o.Database)
	}
}

func TestInvalidValuesNameOptionAndValue(t *testing.T) {
	cases := []struct {
		opts Options
		want []string
	}{
		{Options{CostOnInlet: "gpt-4o:lots"}, []string{"cost_on_inlet", "gpt-4o:lots"}},
		{Options{DefaultInputPrice: "-3"}, []string{"default_input_price", "-3"}},
		{Options{DefaultOutputPrice: "cheap"}, []string{"default_output_price", "cheap"}},
		{Options{InitBalance: "1e-12"}, []string{"init_balance", "1e-12"}},
		{Options{OpenWebUI: "chat.example.com"}, []string{"openwebui", "chat.example.com"}},
		{Options{OpenWebUI: "http://"}, []string{"openwebui", "http://"}},
		{Options{Database: "mysql://x"}, []string{"database", "mysql://x"}},
		{Options{Database: "postgres://u:secret@/db"}, []string{"database", "xxxxx"}},
		{Options{MaxBodySize: "huge"}, []string{"max_body_size", "huge"}},
		{Options{Mode: "strict"}, []string{"mode", "strict"}},
		{Options{HoldTTL: "forever"}, []string{"hold_ttl", "forever"}},
		{Options{BodyTimeout: "0s"}, []string{"body_timeout", "0s"}},
		{Options{IdentityCacheTTL: "-1s"}, []string{"identity_cache_ttl", "-1s"}},
		{Options{InjectUsage: "maybe"}, []string{"inject_usage", "maybe"}},
		{Options{MinHold: "-0.1"}, []string{"min_hold", "-0.1"}},
		{Options{MaxTokensPerCall: "0"}, []string{"max_tokens_per_call", `"0"`}},
		{Options{MaxTokensPerCall: "1e8"}, []string{"max_tokens_per_call", "1e8"}},
		{Options{MaxTokensPerCall: "9223372036854775807"}, []string{"max_tokens_per_call", "9223372036854775807"}},
		{Options{DashboardPath: "monitor"}, []string{"dashboard_path", "monitor"}},
		{Options{DashboardPath: "/monitor/"}, []string{"dashboard_path", "/monitor/"}},
		{Options{Dashboard: "sometimes"}, []string{"dashboard", "sometimes"}},
		{Options{APIKeyHeader: "X Key:"}, []string{"api_key_header", "X Key:"}},
		{Options{ProviderKey: "hunter2"}, []string{"provider_key", "7 characters"}}, // the key itself is never echoed
	}
	for _, c := range cases {
		_, err := c.opts.Settings("/data")
		if err == nil {
			t.Fatalf("%+v accepted", c.opts)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q leaks a password", err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"32MiB": 32 << 20, "1MB": 1_000_000, "4096": 4096, "512 KiB": 512 << 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "MiB", "12XB", "99999999999999999999GiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestSetKnowsEveryOption(t *testing.T) {
	var o Options
	for _, opt := range Table {
		if !o.Set(opt.Name, "x") {
			t.Fatalf("Set(%q) unknown", opt.Name)
		}
	}
	if o.Set("no_such_option", "x") {
		t.Fatal("Set accepted an unknown option")
	}
}

// TestREADMEDocumentsEveryOption keeps the README's configuration table in
// step with the code.
func TestREADMEDocumentsEveryOption(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range Table {
		row := "| `" + opt.Name + "` | `" + opt.Env + "`"
		if !strings.Contains(string(b), row) {
			t.Errorf("README has no row starting %q", row)
		}
	}
}
