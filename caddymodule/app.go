package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/openwebui-monitor/owmon/internal/config"
	"github.com/openwebui-monitor/owmon/internal/database"
	"github.com/openwebui-monitor/owmon/internal/edge"
	"github.com/openwebui-monitor/owmon/internal/groupsync"
	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/journal"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/metrics"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/tokens"
)

func init() {
	caddy.RegisterModule(App{})
}

// stores keeps one open store per database across config reloads: Caddy
// provisions the new config before it stops the old one, and both must
// share the pool rather than open a second one (and in-flight writes of
// the old config must finish on an open store).
var stores = caddy.NewUsagePool()

// counter is shared by every config: its vocabularies are large and immutable.
var counter = tokens.New()

// App is the openwebui_monitor app. It owns the store and the ledger that
// the openwebui_monitor handlers share. Every option falls back to the
// environment variable of the monitor it replaces, so existing .env files
// keep working.
type App struct {
	config.Options

	settings config.Settings
	storeKey string
	store    store.Store
	ledger   *ledger.Ledger
	gate     *edge.Gate
	access   *identity.Throttle // wrong access_tokens per client, shared by every handler's dashboard
	apiKeys  *identity.Throttle // wrong api_keys per client, shared by every handler's inlet and outlet
	log      *slog.Logger
	stop     func() // ends the gate's sweeps
	// groups syncs OpenWebUI's groups into the store; nil when off (groups.go).
	groups *groupsync.Syncer
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "openwebui_monitor",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision validates the options and opens (or shares) the store.
func (a *App) Provision(ctx caddy.Context) error {
	a.log = ctx.Slogger()
	s, err := a.Options.WithEnv(os.Getenv).Settings(caddy.AppDataDir())
	if err != nil {
		return err
	}
	a.settings = s
	a.access = identity.NewThrottle(identity.ThrottleConfig{})
	a.apiKeys = identity.NewThrottle(identity.ThrottleConfig{})
	key := s.Database.Kind + "\x00" + s.Database.DSN + "\x00" + s.Journal
	log := a.log
	val, loaded, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		// The journal first: it refuses to open when another process
		// has it, before anything else is touched.
		var j *journal.Journal
		if s.Journal != "" {
			var err error
			if j, err = journal.Open(s.Journal, journal.Options{Logger: log}); err != nil {
				return nil, fmt.Errorf("journal: %w", err)
			}
			if st := j.Stats(); st.Recovered > 0 {
				log.Warn("the journal holds charges and calls in flight from the last run: they are charged once the store answers",
					"path", s.Journal, "entries", st.Recovered)
			}
		}
		// Generous: the first start on the old monitor's database adopts
		// its whole history in one transaction (about 3 s per 100,000 records).
		openCtx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		st, err := database.Open(openCtx, s.Database, log)
		if err != nil {
			if j != nil {
				j.Close()
			}
			return nil, err
		}
		sc := storeCloser{Store: st, claims: ledger.NewClaims(), durable: ledger.NewDurable(j, s.FailOpen, log), metrics: metrics.New()}
		if st.Kind() == "sqlite" {
			// One writer, in this process: holds can live in memory,
			// shared by every config over this store.
			sc.holds = ledger.NewLocalHolds()
		}
		return sc, nil
	})
	if err != nil {
		return err
	}
	a.storeKey = key
	a.store = val.(storeCloser).Store
	m := val.(storeCloser).metrics
	if !loaded {
		a.log.Info("store opened", "kind", s.Database.Kind)
	}
	a.ledger = ledger.New(a.store, ledger.Config{
		InitBalance:      s.InitBalance,
		DefaultPrice:     s.DefaultPrice,
		InletCosts:       s.InletCosts,
		MinHold:          s.MinHold,
		HoldOutputTokens: s.HoldOutputTokens,
		LocalHolds:       val.(storeCloser).holds,
		Durable:          val.(storeCloser).durable,
		Claims:           val.(storeCloser).claims,
		Budgets:          &ledger.Budgets{Location: s.Location},

		MaxTokensPerCall: s.MaxTokensPerCall,
		Metrics:          m,
		Log:              a.log,
		QuietCharges:     !s.LogCharges,
	})
	// The counters live with the store (across reloads); each config has
	// a registry of its own, which the metrics handler and the admin
	// endpoint's /metrics serve, and its gauges read this config's ledger.
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		l := a.ledger
		if err := m.Register(reg, metrics.Gauges{
			HoldsOpen:          func() float64 { return float64(l.HoldsOpen()) },
			SettlementsPending: func() float64 { return float64(l.SettlementsPending()) },
		}); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	resolver := identity.NewResolver(identity.Config{
		OpenWebUI: s.OpenWebUI, SecretKey: s.WebUISecretKey, TTL: s.IdentityCacheTTL, Metrics: m,
	})
	a.gate = edge.New(a.ledger, counter, resolver, edge.Config{
		Enforce: s.Enforce, InjectUsage: s.InjectUsage, StripBackground: s.StripBackground,
		HoldTTL: s.HoldTTL, MaxBodyBytes: s.MaxBodyBytes, BodyTimeout: s.BodyTimeout, APIKeyHeader: s.APIKeyHeader,
	}, a.log)
	if s.OpenWebUI == "" {
		if s.Enforce {
			a.log.Warn("openwebui (OPENWEBUI_DOMAIN) is not set: model calls through this proxy cannot be attributed to users and are refused with 503")
		} else {
			a.log.Warn("openwebui (OPENWEBUI_DOMAIN) is not set: model calls through this proxy cannot be attributed to users and pass unmetered")
		}
	}
	a.groups = a.newGroupSyncer()
	if s.APIKey == "" {
		a.log.Warn("no api_key (API_KEY) is set: /api/v1/inlet and /api/v1/outlet refuse every call")
	}
	if s.DashboardPath != "" && s.AccessToken == "" {
		a.log.Warn("no access_token (ACCESS_TOKEN) is set: the dashboard at " + s.DashboardPath + " is locked")
	}
	if s.Enforce && s.InitBalance <= 0 {
		a.log.Warn("init_balance (INIT_BALANCE) is " + s.InitBalance.String() + " in enforce mode: new users are refused (402) until an administrator funds them")
	}
	if !loaded {
		healthz := ""
		if s.DashboardPath != "" {
			healthz = strings.TrimSuffix(s.DashboardPath, "/") + "/healthz"
		}
		a.log.Info("openwebui_monitor started", "store", storeName(s.Database), "dashboard", orOff(s.DashboardPath),
			"healthz", orOff(healthz), "mode", map[bool]string{true: "enforce", false: "monitor"}[s.Enforce],
			"store_outage", map[bool]string{true: "fail_open", false: "fail_closed"}[s.FailOpen], "journal", orOff(s.Journal))
	}
	return nil
}

// storeName says which store is in use, for the start-up log: the SQLite
// file's full path, or PostgreSQL's host and database (never the password).
func storeName(db config.Database) string {
	if db.Kind == "sqlite" {
		if abs, err := filepath.Abs(db.DSN); err == nil {
			return "sqlite " + abs
		}
		return "sqlite " + db.DSN
	}
	u, err := url.Parse(db.DSN)
	if err != nil {
		return "postgres"
	}
	host := u.Host
	if host == "" {
		host = u.Query().Get("host")
	}
	return "postgres " + host + u.Path
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

// Start begins releasing holds nobody settled in time, and ending web-UI
// answers the websocket tap lost sight of.
func (a *App) Start() error {
	stopGate := a.gate.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	grants := make(chan struct{})
	go func() {
		defer close(done)
		a.ledger.Run(ctx) // deferred charges and the calls a crash interrupted
	}()
	go func() {
		defer close(grants)
		a.applyGrants(ctx)
	}()
	groupsDone := a.startGroupSync(ctx)
	a.stop = func() { stopGate(); cancel(); <-done; <-grants; <-groupsDone }
	return nil
}

// applyGrants applies budget grants as their windows begin: at start (a
// window missed while owmon was down is applied once) and every minute.
func (a *App) applyGrants(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		changes, err := a.ledger.ApplyGrants(ctx)
		if err != nil && ctx.Err() == nil {
			a.log.Error("applying budget grants", "error", err)
		}
		for _, c := range changes {
			a.log.Info("grant applied", "actor", c.Actor, "user", c.UserID, "old_balance", c.OldBalance.String(),
				"new_balance", c.NewBalance.String(), "reason", c.Reason)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop ends the hold sweeper.
func (a *App) Stop() error {
	if a.stop != nil {
		a.stop()
	}
	return nil
}

// Cleanup waits for this config's settlements, then releases its hold on
// the store; the last holder closes it.
func (a *App) Cleanup() error {
	if a.gate != nil {
		a.gate.Wait()
	}
	if a.storeKey == "" {
		return nil
	}
	_, err := stores.Delete(a.storeKey)
	a.storeKey = ""
	if err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	return nil
}

type storeCloser struct {
	store.Store
	holds  *ledger.LocalHolds // nil unless the store has a single writer here
	claims *ledger.Claims     // messages the provider meter charges, across reloads
	// durable keeps charges the store cannot take, in the journal.
	durable *ledger.Durable
	// metrics count for this store across config reloads.
	metrics *metrics.Metrics
}

// Destruct closes the store and then the journal, which keeps whatever
// the store did not take.
func (s storeCloser) Destruct() error {
	err := s.Close()
	if j := s.durable.Journal(); j != nil {
		err = errors.Join(err, j.Close())
	}
	return err
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
