// Package config turns the openwebui_monitor options, with the old monitor's
// environment variables as fallbacks, into validated settings.
package config

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zone names work where the system has none (the Caddy image)

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
)

// Options are the configured values as text, exactly as an operator wrote
// them in the Caddyfile or JSON. Empty means "not set".
type Options struct {
	Database           string `json:"database,omitempty"`
	OpenWebUI          string `json:"openwebui,omitempty"`
	OpenWebUIAPIKey    string `json:"openwebui_api_key,omitempty"`
	APIKey             string `json:"api_key,omitempty"`
	AccessToken        string `json:"access_token,omitempty"`
	InitBalance        string `json:"init_balance,omitempty"`
	DefaultInputPrice  string `json:"default_input_price,omitempty"`
	DefaultOutputPrice string `json:"default_output_price,omitempty"`
	DefaultPerMsgPrice string `json:"default_per_msg_price,omitempty"`
	CostOnInlet        string `json:"cost_on_inlet,omitempty"`
	MaxBodySize        string `json:"max_body_size,omitempty"`
	BodyTimeout        string `json:"body_timeout,omitempty"`
	WebUISecretKey     string `json:"webui_secret_key,omitempty"`
	Mode               string `json:"mode,omitempty"`
	IdentityCacheTTL   string `json:"identity_cache_ttl,omitempty"`
	InjectUsage        string `json:"inject_usage,omitempty"`
	StripBackground    string `json:"strip_background,omitempty"`
	HoldTTL            string `json:"hold_ttl,omitempty"`
	MinHold            string `json:"min_hold,omitempty"`
	Dashboard          string `json:"dashboard,omitempty"`
	DashboardPath      string `json:"dashboard_path,omitempty"`
	Currency           string `json:"currency,omitempty"`
	ProviderKey        string `json:"provider_key,omitempty"`
	ForwardUserSecret  string `json:"forward_user_jwt_secret,omitempty"`
	SystemUser         string `json:"system_user,omitempty"`
	APIKeyHeader       string `json:"api_key_header,omitempty"`
	MaxTokensPerCall   string `json:"max_tokens_per_call,omitempty"`
	HoldOutputTokens   string `json:"hold_output_tokens,omitempty"`
	StoreOutage        string `json:"store_outage,omitempty"`
	Journal            string `json:"journal,omitempty"`
	LogCharges         string `json:"log_charges,omitempty"`
	Timezone           string `json:"timezone,omitempty"`
	GroupSync          string `json:"group_sync,omitempty"`
}

// Option describes one option: its Caddyfile name and environment fallback.
type Option struct {
	Name    string
	Env     string
	Default string
	field   func(*Options) *string
}

// Table lists every option, in the order the README documents them.
var Table = []Option{
	{"database", "DATABASE_URL", "SQLite file in Caddy's data directory", func(o *Options) *string { return &o.Database }},
	{"openwebui", "OPENWEBUI_DOMAIN", "", func(o *Options) *string { return &o.OpenWebUI }},
	{"openwebui_api_key", "OPENWEBUI_API_KEY", "", func(o *Options) *string { return &o.OpenWebUIAPIKey }},
	{"api_key", "API_KEY", "", func(o *Options) *string { return &o.APIKey }},
	{"access_token", "ACCESS_TOKEN", "", func(o *Options) *string { return &o.AccessToken }},
	{"init_balance", "INIT_BALANCE", "0", func(o *Options) *string { return &o.InitBalance }},
	{"default_input_price", "DEFAULT_MODEL_INPUT_PRICE", "60", func(o *Options) *string { return &o.DefaultInputPrice }},
	{"default_output_price", "DEFAULT_MODEL_OUTPUT_PRICE", "60", func(o *Options) *string { return &o.DefaultOutputPrice }},
	{"default_per_msg_price", "DEFAULT_MODEL_PER_MSG_PRICE", "-1", func(o *Options) *string { return &o.DefaultPerMsgPrice }},
	{"cost_on_inlet", "COST_ON_INLET", "0", func(o *Options) *string { return &o.CostOnInlet }},
	{"max_body_size", "OWMON_MAX_BODY_SIZE", "32MiB", func(o *Options) *string { return &o.MaxBodySize }},
	{"body_timeout", "OWMON_BODY_TIMEOUT", "60s", func(o *Options) *string { return &o.BodyTimeout }},
	{"webui_secret_key", "WEBUI_SECRET_KEY", "", func(o *Options) *string { return &o.WebUISecretKey }},
	{"mode", "OWMON_MODE", "enforce", func(o *Options) *string { return &o.Mode }},
	{"identity_cache_ttl", "OWMON_IDENTITY_CACHE_TTL", "30s", func(o *Options) *string { return &o.IdentityCacheTTL }},
	{"inject_usage", "OWMON_INJECT_USAGE", "on", func(o *Options) *string { return &o.InjectUsage }},
	{"strip_background", "OWMON_STRIP_BACKGROUND", "on", func(o *Options) *string { return &o.StripBackground }},
	{"hold_ttl", "OWMON_HOLD_TTL", "15m", func(o *Options) *string { return &o.HoldTTL }},
	{"min_hold", "OWMON_MIN_HOLD", "0", func(o *Options) *string { return &o.MinHold }},
	{"dashboard", "OWMON_DASHBOARD", "on", func(o *Options) *string { return &o.Dashboard }},
	{"dashboard_path", "OWMON_DASHBOARD_PATH", "/monitor", func(o *Options) *string { return &o.DashboardPath }},
	{"currency", "OWMON_CURRENCY", "$", func(o *Options) *string { return &o.Currency }},
	{"provider_key", "OWMON_PROVIDER_KEY", "", func(o *Options) *string { return &o.ProviderKey }},
	{"forward_user_jwt_secret", "FORWARD_USER_INFO_HEADER_JWT_SECRET", "", func(o *Options) *string { return &o.ForwardUserSecret }},
	{"system_user", "OWMON_SYSTEM_USER", "system", func(o *Options) *string { return &o.SystemUser }},
	{"api_key_header", "CUSTOM_API_KEY_HEADER", "x-api-key", func(o *Options) *string { return &o.APIKeyHeader }},
	{"max_tokens_per_call", "OWMON_MAX_TOKENS_PER_CALL", "100000000", func(o *Options) *string { return &o.MaxTokensPerCall }},
	{"hold_output_tokens", "OWMON_HOLD_OUTPUT_TOKENS", "4096", func(o *Options) *string { return &o.HoldOutputTokens }},
	{"store_outage", "OWMON_STORE_OUTAGE", "fail_open", func(o *Options) *string { return &o.StoreOutage }},
	{"journal", "OWMON_JOURNAL", "beside the SQLite file, or in Caddy's data directory", func(o *Options) *string { return &o.Journal }},
	{"log_charges", "OWMON_LOG_CHARGES", "on", func(o *Options) *string { return &o.LogCharges }},
	{"timezone", "TZ", "UTC", func(o *Options) *string { return &o.Timezone }},
	{"group_sync", "OWMON_GROUP_SYNC", "5m", func(o *Options) *string { return &o.GroupSync }},
}

// Set assigns the option called name; it reports false for an unknown name.
func (o *Options) Set(name, value string) bool {
	for _, opt := range Table {
		if opt.Name == name {
			*opt.field(o) = value
			return true
		}
	}
	return false
}

// WithEnv fills every unset option from its environment variable. The
// database also falls back to POSTGRES_URL and to the POSTGRES_HOST,
// POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DATABASE
// variables of the old monitor's docker-compose file.
func (o Options) WithEnv(getenv func(string) string) Options {
	for _, opt := range Table {
		if p := opt.field(&o); *p == "" {
			*p = getenv(opt.Env)
		}
	}
	if o.Database == "" {
		o.Database = getenv("POSTGRES_URL")
	}
	if o.Database == "" && getenv("POSTGRES_HOST") != "" {
		u := url.URL{Scheme: "postgres", Host: getenv("POSTGRES_HOST"), Path: "/" + getenv("POSTGRES_DATABASE")}
		if port := getenv("POSTGRES_PORT"); port != "" {
			u.Host += ":" + port
		}
		if user := getenv("POSTGRES_USER"); user != "" {
			if pw := getenv("POSTGRES_PASSWORD"); pw != "" {
				u.User = url.UserPassword(user, pw)
			} else {
				u.User = url.User(user)
			}
		}
		o.Database = u.String()
	}
	return o
}

// Database says where the store lives.
type Database struct {
	Kind string // "sqlite" or "postgres"
	DSN  string // file path for SQLite, connection URL for PostgreSQL
}

// Settings are validated options, ready to use.
type Settings struct {
	Database        Database
	OpenWebUI       string // base URL, no trailing slash
	OpenWebUIAPIKey string
	APIKey          string
	AccessToken     string
	InitBalance     money.Amount
	DefaultPrice    pricing.Price
	InletCosts      pricing.InletCosts
	MaxBodyBytes    int64
	BodyTimeout     time.Duration // how long a request body owmon reads may take to arrive

	WebUISecretKey   string        // verifies OpenWebUI's JWTs locally
	Enforce          bool          // refuse calls a balance cannot cover (mode enforce)
	IdentityCacheTTL time.Duration // how long a resolved token is trusted
	InjectUsage      bool          // ask providers for usage on streaming calls
	StripBackground  bool          // keep API-key chats out of background mode
	HoldTTL          time.Duration // when an unsettled hold is released
	MinHold          money.Amount  // least amount a call reserves
	DashboardPath    string        // where the admin API lives; "" when the dashboard is off
	Currency         string        // the symbol the dashboard shows before amounts

	ProviderKey       string // the key OpenWebUI's connections send to openwebui_meter
	ForwardUserSecret string // verifies X-OpenWebUI-User-Jwt; "" trusts plain user headers
	SystemUser        string // user id charged for provider calls that name no user
	APIKeyHeader      string // the header OpenWebUI reads API keys from (CUSTOM_API_KEY_HEADER)

	MaxTokensPerCall int64 // the most tokens one answer may report (max_tokens_per_call)
	// HoldOutputTokens is the answer a hold covers when the call sets no
	// max_tokens (hold_output_tokens).
	HoldOutputTokens int64
	// FailOpen: while the store cannot be written, admit known users
	// against their last known balance, settling into the journal
	// (store_outage fail_open); false refuses model calls (fail_closed).
	FailOpen bool
	// Journal is the file that keeps settlements the store cannot take
	// yet, and what calls in flight have produced; "" when off.
	Journal string
	// BackupDir is where a restore keeps the data it replaces: the SQLite
	// file's directory, or openwebui-monitor in Caddy's data directory.
	BackupDir string
	// LogCharges: one log line per charge (log_charges); off silences
	// those lines only.
	LogCharges bool
	// Location is the time zone of budgets' calendar windows (timezone).
	Location *time.Location
	// GroupSync is how often OpenWebUI's groups are read again
	// (group_sync); 0 when off.
	GroupSync time.Duration
}

// Settings validates the options. dataDir holds the SQLite file when no
// database is configured. Every error names the option and its bad value.
func (o Options) Settings(dataDir string) (Settings, error) {
	var s Settings
	var err error
	if s.Database, err = parseDatabase(o.Database, dataDir); err != nil {
		return s, err
	}
	s.BackupDir = filepath.Join(dataDir, "openwebui-monitor")
	if s.Database.Kind == "sqlite" {
		s.BackupDir = filepath.Dir(s.Database.DSN)
	}
	if s.MaxTokensPerCall, err = tokenCount("max_tokens_per_call", o.MaxTokensPerCall, "100000000"); err != nil {
		return s, err
	}
	if s.HoldOutputTokens, err = tokenCount("hold_output_tokens", o.HoldOutputTokens, "4096"); err != nil {
		return s, err
	}
	if s.LogCharges, err = onOff("log_charges", o.LogCharges); err != nil {
		return s, err
	}
	if s.Location, err = location(o.Timezone); err != nil {
		return s, fmt.Errorf("timezone: %q is not a time zone name such as Asia/Shanghai or UTC", o.Timezone)
	}
	switch o.GroupSync {
	case "off":
	default:
		if s.GroupSync, err = time.ParseDuration(cmp.Or(o.GroupSync, "5m")); err != nil || s.GroupSync < 10*time.Second {
			return s, fmt.Errorf("group_sync: %q is neither a duration of at least 10s nor off", o.GroupSync)
		}
	}
	switch o.StoreOutage {
	case "", "fail_open":
		s.FailOpen = true
	case "fail_closed":
	default:
		return s, fmt.Errorf("store_outage: %q is neither fail_open nor fail_closed", o.StoreOutage)
	}
	switch j := strings.TrimSpace(o.Journal); j {
	case "":
		// One journal per store: next to a SQLite file, and per database
		// in the data directory for PostgreSQL.
		if s.Database.Kind == "sqlite" {
			s.Journal = s.Database.DSN + ".journal"
		} else {
			sum := sha256.Sum256([]byte(s.Database.DSN))
			s.Journal = filepath.Join(dataDir, "openwebui-monitor", "journal-"+hex.EncodeToString(sum[:4]))
		}
	case "off":
	default:
		if !filepath.IsAbs(j) {
			return s, fmt.Errorf("journal: %q is not an absolute path (or off)", o.Journal)
		}
		s.Journal = filepath.Clean(j)
	}
	if s.FailOpen && s.Journal == "" {
		// Admitting calls the store cannot record needs somewhere durable
		// to keep their charges.
		if o.StoreOutage != "" {
			return s, fmt.Errorf("store_outage: fail_open keeps charges in the journal, which is off")
		}
		s.FailOpen = false
	}
	if o.OpenWebUI != "" {
		u, err := url.Parse(o.OpenWebUI)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return s, fmt.Errorf("openwebui: %q is not an http(s) URL", o.OpenWebUI)
		}
		s.OpenWebUI = strings.TrimRight(o.OpenWebUI, "/")
	}
	s.OpenWebUIAPIKey, s.APIKey, s.AccessToken = o.OpenWebUIAPIKey, o.APIKey, o.AccessToken
	if s.InitBalance, err = amount("init_balance", o.InitBalance, "0", true); err != nil {
		return s, err
	}
	if s.DefaultPrice.Input, err = amount("default_input_price", o.DefaultInputPrice, "60", false); err != nil {
		return s, err
	}
	if s.DefaultPrice.Output, err = amount("default_output_price", o.DefaultOutputPrice, "60", false); err != nil {
		return s, err
	}
	if s.DefaultPrice.PerMessage, err = amount("default_per_msg_price", o.DefaultPerMsgPrice, "-1", true); err != nil {
		return s, err
	}
	if s.InletCosts, err = pricing.ParseInletCosts(o.CostOnInlet); err != nil {
		return s, fmt.Errorf("cost_on_inlet: %q: %v", o.CostOnInlet, err)
	}
	size := o.MaxBodySize
	if size == "" {
		size = "32MiB"
	}
	if s.MaxBodyBytes, err = ParseSize(size); err != nil || s.MaxBodyBytes < 1024 {
		return s, fmt.Errorf("max_body_size: %q is not a size of at least 1KiB (e.g. 32MiB)", o.MaxBodySize)
	}
	if s.BodyTimeout, err = duration("body_timeout", o.BodyTimeout, "60s"); err != nil {
		return s, err
	}
	s.WebUISecretKey = o.WebUISecretKey
	switch o.Mode {
	case "", "enforce":
		s.Enforce = true
	case "monitor":
	default:
		return s, fmt.Errorf("mode: %q is neither enforce nor monitor", o.Mode)
	}
	if s.IdentityCacheTTL, err = duration("identity_cache_ttl", o.IdentityCacheTTL, "30s"); err != nil {
		return s, err
	}
	if s.HoldTTL, err = duration("hold_ttl", o.HoldTTL, "15m"); err != nil {
		return s, err
	}
	if s.InjectUsage, err = onOff("inject_usage", o.InjectUsage); err != nil {
		return s, err
	}
	if s.StripBackground, err = onOff("strip_background", o.StripBackground); err != nil {
		return s, err
	}
	if s.MinHold, err = amount("min_hold", o.MinHold, "0", false); err != nil {
		return s, err
	}
	s.Currency = o.Currency
	if s.Currency == "" {
		s.Currency = "$"
	}
	if len(s.Currency) > 8 {
		return s, fmt.Errorf("currency: %q is longer than a currency symbol", o.Currency)
	}
	s.ProviderKey, s.ForwardUserSecret = o.ProviderKey, o.ForwardUserSecret
	if s.ProviderKey != "" && len(s.ProviderKey) < 16 {
		return s, fmt.Errorf("provider_key: a shared key of %d characters is too easy to guess; use at least 16", len(s.ProviderKey))
	}
	s.SystemUser = strings.TrimSpace(o.SystemUser)
	if s.SystemUser == "" {
		s.SystemUser = "system"
	}
	s.APIKeyHeader = strings.TrimSpace(o.APIKeyHeader)
	if s.APIKeyHeader == "" {
		s.APIKeyHeader = "x-api-key"
	}
	if !validHeaderName(s.APIKeyHeader) {
		return s, fmt.Errorf("api_key_header: %q is not an HTTP header name", o.APIKeyHeader)
	}
	on, err := onOff("dashboard", o.Dashboard)
	if err != nil {
		return s, err
	}
	if on {
		s.DashboardPath = o.DashboardPath
		if s.DashboardPath == "" {
			s.DashboardPath = "/monitor"
		}
		if !strings.HasPrefix(s.DashboardPath, "/") || (len(s.DashboardPath) > 1 && strings.HasSuffix(s.DashboardPath, "/")) ||
			strings.ContainsAny(s.DashboardPath, "?#*{} ") {
			return s, fmt.Errorf("dashboard_path: %q is not a path like /monitor (or / on a site of its own)", o.DashboardPath)
		}
	}
	return s, nil
}

// validHeaderName reports whether s is an HTTP field name (an RFC 9110 token).
func validHeaderName(s string) bool {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

func duration(name, value, def string) (time.Duration, error) {
	if value == "" {
		value = def
	}
	d, err := time.ParseDuration(value)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: %q is not a positive duration (e.g. 30s, 15m)", name, value)
	}
	return d, nil
}

// MaxTokensLimit is the largest max_tokens_per_call accepted.
const MaxTokensLimit = 1_000_000_000_000_000

func tokenCount(name, value, def string) (int64, error) {
	if value == "" {
		value = def
	}
	n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
	if err != nil || n < 1 || n > MaxTokensLimit {
		return 0, fmt.Errorf("%s: %q is not a whole number of tokens from 1 to %d", name, value, int64(MaxTokensLimit))
	}
	return n, nil
}

func onOff(name, value string) (bool, error) {
	switch strings.ToLower(value) {
	case "", "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%s: %q is neither on nor off", name, value)
}

func amount(name, value, def string, negativeOK bool) (money.Amount, error) {
	if value == "" {
		value = def
	}
	v, err := money.Parse(value)
	if err != nil {
		return 0, fmt.Errorf("%s: %q: %v", name, value, err)
	}
	if v < 0 && !negativeOK {
		return 0, fmt.Errorf("%s: %q must not be negative", name, value)
	}
	return v, nil
}

func parseDatabase(v, dataDir string) (Database, error) {
	switch {
	case v == "":
		return Database{Kind: "sqlite", DSN: filepath.Join(dataDir, "openwebui-monitor", "monitor.db")}, nil
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		u, err := url.Parse(v)
		if err != nil || u.Host == "" && u.Query().Get("host") == "" {
			return Database{}, fmt.Errorf("database: %q is not a valid PostgreSQL URL", redact(v))
		}
		return Database{Kind: "postgres", DSN: v}, nil
	case strings.HasPrefix(v, "sqlite://"), strings.HasPrefix(v, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(v, "sqlite:"), "//")
		if path == "" {
			return Database{}, fmt.Errorf("database: %q names no file", v)
		}
		return Database{Kind: "sqlite", DSN: path}, nil
	}
	return Database{}, fmt.Errorf("database: %q is neither postgres://… nor sqlite://path", redact(v))
}

// redact hides a password in a database URL before it reaches a message.
func redact(v string) string {
	if u, err := url.Parse(v); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return v
}

// ParseSize reads a byte size such as "32MiB", "1MB", "4096" or "512KiB".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: no number", s)
	}
	units := map[string]int64{"": 1, "b": 1, "kb": 1000, "kib": 1 << 10, "mb": 1000 * 1000, "mib": 1 << 20, "gb": 1000 * 1000 * 1000, "gib": 1 << 30}
	mult, ok := units[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// location reads a time zone: a name (Asia/Shanghai), or TZ's POSIX forms
// ":Asia/Shanghai" and ":/etc/localtime" (a zoneinfo file).
func location(tz string) (*time.Location, error) {
	tz = strings.TrimPrefix(tz, ":")
	if strings.HasPrefix(tz, "/") {
		data, err := os.ReadFile(tz)
		if err != nil {
			return nil, err
		}
		return time.LoadLocationFromTZData(filepath.Base(tz), data)
	}
	return time.LoadLocation(cmp.Or(tz, "UTC"))
}
