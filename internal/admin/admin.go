// Package admin is the dashboard's JSON API. Paths and shapes follow the
// monitor it replaces, so existing scripts (the community price-sync tool
// posting to /api/v1/models/price, for one) keep working when the API is
// mounted at the root of a site of its own.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-playground/validator/v10"

	"github.com/openwebui-monitor/owmon/internal/body"
	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// Options configure the API.
type Options struct {
	AccessToken     string // the bearer token admins send; none: every request is refused
	MaxBodyBytes    int64
	BodyTimeout     time.Duration
	OpenWebUI       string       // OpenWebUI's base URL, for its models
	OpenWebUIAPIKey string       // an OpenWebUI admin key
	FunctionAPIKey  string       // the key the filter function sends, shown to admins to paste
	Client          *http.Client // for OpenWebUI; default: 30s timeout
	Log             *slog.Logger
	Currency        string // the symbol shown before amounts on the pages; default "$"
	// Throttle counts wrong access tokens per client, for the bearer
	// check and the login alike; nil: one of the API's own.
	Throttle *identity.Throttle
	// BackupDir is where a restore that replaces data first saves it
	// (backup-<time>.json); none: such a restore is refused.
	BackupDir string
	// Identify names the OpenWebUI user a request's credential belongs
	// to, as the gate does, for the user's own page (/me, /api/v1/me);
	// nil: that page is off. Its errors match identity.ErrNoCredential
	// (401), identity.ErrUnauthenticated (401, counted at Identities),
	// identity.ErrForbidden (403); any other is OpenWebUI failing to
	// answer (503).
	Identify func(r *http.Request) (store.UserInfo, error)
	// Identities counts credentials OpenWebUI refused on the user's page,
	// per client; nil: one of the API's own.
	Identities *identity.Throttle
	// SyncGroups reads OpenWebUI's groups into the store now and returns
	// how many there are; nil: this server does not sync groups.
	SyncGroups func(ctx context.Context) (int, error)
}

// API serves the admin endpoints.
type API struct {
	ledger   *ledger.Ledger
	store    store.Store
	opts     Options
	token    identity.Secret
	throttle *identity.Throttle // wrong tokens per client (bearer and login)
	maxBody  int64
	log      *slog.Logger
	validate *validator.Validate
	mux      *http.ServeMux
	ui       *ui // the server-rendered pages and their sessions (pages.go)
}

// New returns the API.
func New(l *ledger.Ledger, opts Options) *API {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Currency == "" {
		opts.Currency = "$"
	}
	if opts.Throttle == nil {
		opts.Throttle = identity.NewThrottle(identity.ThrottleConfig{})
	}
	if opts.Identities == nil {
		opts.Identities = identity.NewThrottle(identity.ThrottleConfig{})
	}
	a := &API{
		ledger: l, store: l.Store(), opts: opts,
		token:   identity.NewSecret(opts.AccessToken),
		maxBody: opts.MaxBodyBytes, log: opts.Log, validate: newValidator(), throttle: opts.Throttle,
	}
	mux := http.NewServeMux()
	a.routeModels(mux)
	a.routePages(mux)
	a.routeMe()
	a.routeBudgets(mux)
	mux.HandleFunc("GET /api/v1/users", a.listUsers)
	mux.HandleFunc("PUT /api/v1/users/{id}/balance", a.setBalance)
	mux.HandleFunc("POST /api/v1/users/{id}/topup", a.topUp)
	mux.HandleFunc("GET /api/v1/users/{id}/balance-history", a.balanceHistory)
	mux.HandleFunc("PATCH /api/v1/users/{id}", a.patchUser)
	mux.HandleFunc("DELETE /api/v1/users/{id}", a.deleteUser)
	mux.HandleFunc("POST /api/v1/models/price", a.updatePrices)
	mux.HandleFunc("GET /api/v1/models/prices", a.listPrices)
	mux.HandleFunc("GET /api/v1/panel/records", a.listRecords)
	mux.HandleFunc("GET /api/v1/panel/records/export", a.exportRecords)
	mux.HandleFunc("GET /api/v1/panel/usage", a.usage)
	mux.HandleFunc("GET /api/v1/panel/database/export", a.exportDatabase)
	mux.HandleFunc("POST /api/v1/panel/database/import", a.importDatabase)
	a.mux = mux
	return a
}

func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	return v
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		a.health(w, r) // for load balancers and health checks: no credentials
		return
	}
	if a.serveMe(w, r) { // a user's own page: their OpenWebUI credential, no admin's
		return
	}
	// Pages, the login form and static files check sessions themselves.
	if a.ui != nil && a.ui.serves(r) {
		a.ui.mux.ServeHTTP(w, r)
		return
	}
	res, wait := a.authorized(r)
	if res == identity.Throttled {
		tooManyAttempts(w, wait)
		return
	}
	if res != identity.Right {
		// A browser session may stand in for the bearer token; a change
		// made with one needs the session's CSRF token as well.
		switch a.sessionAuthorized(r) {
		case sessionNone:
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized"})
			return
		case sessionNoCSRF:
			writeError(w, http.StatusForbidden, "missing or wrong X-CSRF-Token header")
			return
		}
	}
	a.mux.ServeHTTP(w, r)
}

// authorized checks the bearer token. Wrong ones are counted per client
// address; a client with too many gets Throttled, whatever it sends, until
// its budget refills. No token at all counts nothing.
func (a *API) authorized(r *http.Request) (identity.Result, time.Duration) {
	return a.throttle.Check(identity.ClientAddr(r), a.token, identity.BearerToken(r))
}

// tooManyAttempts refuses a client that sent too many wrong secrets.
func tooManyAttempts(w http.ResponseWriter, wait time.Duration) {
	secs := identity.RetryAfterSeconds(wait)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("Too many failed attempts; retry after %d seconds", secs))
}

// decode reads a JSON body into v and validates it; it answers the client
// and returns false when the body is wrong.
func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	raw, err := body.Read(w, r, a.maxBody, a.opts.BodyTimeout)
	if errors.Is(err, body.ErrTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", a.maxBody))
		return false
	}
	if errors.Is(err, body.ErrTimeout) {
		writeError(w, http.StatusRequestTimeout, fmt.Sprintf("request body not received within %v (body_timeout)", a.opts.BodyTimeout))
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	if err := decodeJSON(raw, v, true); err != nil {
		// "invalid JSON: …" for a body that is not JSON; "field: must be
		// …" for one whose field has the wrong kind.
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	if err := a.validate.Struct(v); err != nil {
		writeValidation(w, err)
		return false
	}
	return true
}

// writeValidation answers 422 with a message per field.
func writeValidation(w http.ResponseWriter, err error) {
	fields := fieldErrors(err)
	var msgs []string
	for f, m := range fields {
		msgs = append(msgs, f+": "+m)
	}
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": strings.Join(msgs, "; "), "errors": fields})
}

// validationText is a one-line account of what failed validation.
func validationText(err error) string {
	var msgs []string
	for f, m := range fieldErrors(err) {
		msgs = append(msgs, f+": "+m)
	}
	return strings.Join(msgs, "; ")
}

func fieldErrors(err error) map[string]string {
	fields := map[string]string{}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		fields["body"] = err.Error()
		return fields
	}
	for _, fe := range verrs {
		msg := fe.Tag()
		switch fe.Tag() {
		case "required":
			msg = "is required"
		case "max":
			msg = "must be at most " + fe.Param() + " characters"
		case "min":
			msg = "must be at least " + fe.Param()
		case "gte":
			msg = "must be at least " + fe.Param()
		}
		fields[fe.Field()] = msg
	}
	return fields
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"could not encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (a *API) storageFailed(w http.ResponseWriter, what string, err error) {
	a.log.Error("admin storage failure", "what", what, "error", err)
	writeError(w, http.StatusServiceUnavailable, "the monitor's database is unavailable; nothing was changed")
}

// health answers whether the store takes writes (200) or not (503), with
// the journal's state and the store_outage policy; no secrets.
func (a *API) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	h := a.ledger.Health(ctx)
	status := http.StatusOK
	if !h.StoreOK {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, h)
}
