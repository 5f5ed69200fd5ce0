package admin

// The user's own page: GET /me (HTML) and GET /api/v1/me (JSON) show an
// OpenWebUI user their balance, their budget limits with what is left and
// when each resets, their usage of the last 30 days by day and by model,
// and their latest records. They are for every OpenWebUI user, not for
// admins: no access_token and no dashboard session, but the credential
// OpenWebUI itself would take (its "token" cookie on the same host, a
// bearer JWT or an sk- key), identified as the gate identifies model calls
// (Options.Identify). Whose data is shown follows from that credential
// alone: no parameter names a user.

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/web"
)

const (
	meDays    = 30 // the usage shown: today and the 29 days before, UTC
	meRecords = 30 // the latest records shown
)

// routeMe readies the user page's template (the pages' FuncMap, its own
// file).
func (a *API) routeMe() {
	a.ui.pages["me"] = template.Must(template.New("").Funcs(template.FuncMap{
		"static":  func(name string) string { return "static/" + name + "?v=" + web.Version(name) },
		"pathesc": url.PathEscape,
		"pair":    func(v *view, recs []store.Record) recordsCtx { return recordsCtx{v, recs} },
	}).ParseFS(web.Templates, "templates/layout.html", "templates/partials.html", "templates/me.html"))
}

// serveMe answers GET (and HEAD) /me and /api/v1/me, and reports whether
// the request was for them. They need no admin credential, so they are
// served before the API's check.
func (a *API) serveMe(w http.ResponseWriter, r *http.Request) bool {
	page := r.URL.Path == "/me"
	if !page && r.URL.Path != "/api/v1/me" {
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return true
	}
	// What is shown depends on the credential: never from a shared cache.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Add("Vary", "Cookie, Authorization")
	if page {
		a.mePage(w, r)
	} else {
		a.meAPI(w, r)
	}
	return true
}

// meRefusal is why a request gets no user's data: its status, a text for
// the JSON answer and a key of the page's message.
type meRefusal struct {
	status     int
	text, key  string
	retryAfter time.Duration
}

// identify returns the user the request's credential names, or why not.
// A credential OpenWebUI refuses counts against the client at the
// identity throttle, like a wrong access token; a client with too many
// is refused before its credential is looked up. Credentials are never
// logged.
func (a *API) identify(r *http.Request) (store.UserInfo, *meRefusal) {
	if a.opts.Identify == nil {
		return store.UserInfo{}, &meRefusal{status: http.StatusNotFound, text: "the user page needs the gate's identity (openwebui)", key: "me.off"}
	}
	client := identity.ClientAddr(r)
	if limited, wait := a.opts.Identities.Limited(client); limited {
		return store.UserInfo{}, a.tooMany(wait)
	}
	u, err := a.opts.Identify(r)
	switch {
	case err == nil && u.ID != "":
		return u, nil
	case errors.Is(err, identity.ErrNoCredential):
		return store.UserInfo{}, &meRefusal{status: http.StatusUnauthorized, text: "Not signed in to OpenWebUI: send its token cookie, a bearer token or an API key", key: "me.signin"}
	case errors.Is(err, identity.ErrUnauthenticated):
		if res, wait := a.opts.Identities.Fail(client); res == identity.Throttled {
			return store.UserInfo{}, a.tooMany(wait)
		}
		a.log.Info("user page: OpenWebUI refused the credential", "client", client)
		return store.UserInfo{}, &meRefusal{status: http.StatusUnauthorized, text: "OpenWebUI does not accept this credential: sign in again", key: "me.expired"}
	case errors.Is(err, identity.ErrForbidden):
		return store.UserInfo{}, &meRefusal{status: http.StatusForbidden,
			text: "OpenWebUI would not say whose API key this is: an administrator must allow /api/v1/auths for API keys", key: "me.forbidden"}
	default:
		if r.Context().Err() == nil {
			a.log.Warn("user page: cannot identify the user", "client", client, "error", err)
		}
		return store.UserInfo{}, &meRefusal{status: http.StatusServiceUnavailable, text: "The usage monitor cannot reach OpenWebUI to identify you; try again shortly", key: "me.unavailable"}
	}
}

func (a *API) tooMany(wait time.Duration) *meRefusal {
	return &meRefusal{status: http.StatusTooManyRequests, retryAfter: wait, key: "login.limited",
		text: "Too many failed attempts; retry after " + strconv.FormatInt(identity.RetryAfterSeconds(wait), 10) + " seconds"}
}

// meData is what the user page and its JSON show.
type meData struct {
	User    store.User
	Limits  []ledger.LimitStatus
	Usage   store.Usage // Total, ByDay (every day of the range) and ByModel (most cost first)
	From    time.Time   // the usage's range, [From, To)
	To      time.Time
	Records []store.Record
}

// me reads what the user sees of themselves. A user OpenWebUI knows but
// the monitor has not met yet is created with the initial balance, as
// their first call would.
func (a *API) me(ctx context.Context, info store.UserInfo) (*meData, error) {
	u, err := a.store.User(ctx, info.ID)
	if errors.Is(err, store.ErrNotFound) {
		if err = a.ledger.EnsureUser(ctx, info); err == nil {
			u, err = a.store.User(ctx, info.ID)
		}
	}
	if err != nil {
		return nil, err
	}
	// OpenWebUI down, a JWT verified here: only the id is known. The role
	// (role limits) is then the one stored.
	if info.Email == "" && info.Name == "" {
		info = u.UserInfo
	}
	d := &meData{User: u}
	if d.Limits, err = a.ledger.UserLimits(ctx, info); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	d.To = now
	d.From = time.Date(now.Year(), now.Month(), now.Day()-(meDays-1), 0, 0, 0, 0, time.UTC)
	if d.Usage, err = a.userUsage(ctx, u.ID, d.From, d.To); err != nil {
		return nil, err
	}
	d.Records, _, err = a.store.ListRecords(ctx, store.RecordQuery{PageSize: meRecords, Descending: true, Users: []string{u.ID}})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// userUsage is one user's final usage in [from, to) by UTC day (every
// day of the range, those without usage too) and by model, from the daily
// rollup (and the records of today so far).
func (a *API) userUsage(ctx context.Context, userID string, from, to time.Time) (store.Usage, error) {
	got, err := a.store.UserUsageBetween(ctx, userID, from, to)
	if err != nil {
		return store.Usage{}, err
	}
	u := store.Usage{Total: got.Total, ByDay: []store.DayUsage{}, ByModel: got.ByModel, Models: got.Models}
	days := got.ByDay
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		x := store.DayUsage{Day: d}
		if len(days) > 0 && days[0].Day.Equal(d) {
			x, days = days[0], days[1:]
		}
		u.ByDay = append(u.ByDay, x)
	}
	return u, nil
}

// ---- JSON ----

type meJSON struct {
	User    meUserJSON         `json:"user"`
	Balance money.Amount       `json:"balance"`
	Blocked bool               `json:"blocked"`
	Limits  []ledger.LimitJSON `json:"limits"`
	Usage   meUsageJSON        `json:"usage"`
	Records []recordJSON       `json:"records"`
}

type meUserJSON struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
	Role  string `json:"role"`
}

type meUsageJSON struct {
	From  time.Time  `json:"from"`
	To    time.Time  `json:"to"`
	Total totalsJSON `json:"total"`
	Daily []struct {
		Day string `json:"day"`
		totalsJSON
	} `json:"daily"`
	Models []struct {
		ModelName string `json:"model_name"`
		totalsJSON
	} `json:"models"`
}

func (d *meData) json() meJSON {
	u := d.User
	out := meJSON{User: meUserJSON{u.ID, u.Email, u.Name, u.Role}, Balance: u.Balance, Blocked: u.Blocked,
		Limits: make([]ledger.LimitJSON, len(d.Limits)), Records: make([]recordJSON, len(d.Records))}
	for i, l := range d.Limits {
		out.Limits[i] = l.JSON()
	}
	for i, r := range d.Records {
		out.Records[i] = recordOut(r)
	}
	out.Usage = meUsageJSON{From: d.From, To: d.To, Total: totalsOut(d.Usage.Total)}
	out.Usage.Daily = make([]struct {
		Day string `json:"day"`
		totalsJSON
	}, len(d.Usage.ByDay))
	for i, x := range d.Usage.ByDay {
		out.Usage.Daily[i].Day, out.Usage.Daily[i].totalsJSON = x.Day.Format("2006-01-02"), totalsOut(x.UsageTotals)
	}
	out.Usage.Models = make([]struct {
		ModelName string `json:"model_name"`
		totalsJSON
	}, len(d.Usage.ByModel))
	for i, m := range d.Usage.ByModel {
		out.Usage.Models[i].ModelName, out.Usage.Models[i].totalsJSON = m.Model, totalsOut(m.UsageTotals)
	}
	return out
}

// meAPI: GET /api/v1/me — the caller's own balance, limits, usage and
// records, for scripts and the function's status line.
func (a *API) meAPI(w http.ResponseWriter, r *http.Request) {
	info, refused := a.identify(r)
	if refused != nil {
		if refused.status == http.StatusTooManyRequests {
			tooManyAttempts(w, refused.retryAfter)
			return
		}
		if refused.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="OpenWebUI"`)
		}
		writeError(w, refused.status, refused.text)
		return
	}
	d, err := a.me(r.Context(), info)
	if err != nil {
		a.storageFailed(w, "user page", err)
		return
	}
	writeJSON(w, http.StatusOK, d.json())
}

// ---- The page ----

// mePageData is what me.html gets.
type mePageData struct {
	*meData
	OK     bool   // the user's data is there
	SignIn string // the refusal's message, with a link to OpenWebUI's sign-in
	Login  string // OpenWebUI's sign-in page, coming back here
	Rows   []meLimitRow
	Daily  template.HTML
	Share  template.HTML
}

// meLimitRow is a limit as the page shows it.
type meLimitRow struct {
	ID                      int64
	What, Scope, Resets     string
	Used, Amount, Remaining template.HTML
	UsedN, AmountN          int64
	Exhausted, Rolling      bool
}

func (a *API) mePage(w http.ResponseWriter, r *http.Request) {
	u := a.ui
	v := u.newView(r, "me")
	p := &mePageData{Login: "/auth?redirect=" + url.QueryEscape(mountPrefix(r)+"/me")}
	v.Data = p
	info, refused := a.identify(r)
	if refused != nil {
		if refused.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(identity.RetryAfterSeconds(refused.retryAfter), 10))
		}
		p.SignIn = v.T(refused.key)
		u.render(w, refused.status, "me", v)
		return
	}
	d, err := a.me(r.Context(), info)
	if err != nil {
		a.log.Error("user page", "error", err)
		v.Error = v.T("me.store")
		u.render(w, http.StatusServiceUnavailable, "me", v)
		return
	}
	p.meData, p.OK = d, true
	for _, l := range d.Limits {
		p.Rows = append(p.Rows, meLimitRowOf(v, l))
	}
	days := make([]chartItem, len(d.Usage.ByDay))
	for i, x := range d.Usage.ByDay {
		size, val := metricOf(v, "cost", x.UsageTotals)
		days[i] = chartItem{Label: x.Day.Format("2006-01-02"), Value: val, Size: size}
	}
	unit := v.T("metric.cost")
	if v.Currency != "" {
		unit += " (" + v.Currency + ")"
	}
	if d.Usage.Total.Calls > 0 {
		p.Daily = dayChart(days, "cost", v.Currency, unit)
		var models []chartItem
		for _, m := range d.Usage.ByModel {
			size, val := metricOf(v, "cost", m.UsageTotals)
			models = append(models, chartItem{Label: m.Model, Value: val, Size: size})
		}
		p.Share = shareChart(models)
	}
	u.render(w, http.StatusOK, "me", v)
}

// meLimitRowOf describes a limit in the page's language.
func meLimitRowOf(v *view, s ledger.LimitStatus) meLimitRow {
	l := s.Limit
	amount := func(n int64) template.HTML {
		if l.Measure == budget.Cost {
			return v.Money(money.Amount(n))
		}
		return template.HTML(template.HTMLEscapeString(formatInt(n)))
	}
	what := v.T("me.measure."+string(l.Measure)) + " · "
	if l.Window.Calendar != "" {
		what += v.T("me.window." + l.Window.Calendar)
	} else {
		what += strings.Replace(v.T("me.window.rolling"), "%s", l.Window.String(), 1)
	}
	if len(l.Models) > 0 {
		what += " · " + strings.Join(l.Models, ", ")
	}
	scope := v.T("me.scope." + l.Scope.Kind)
	if l.Scope.Kind == "group" || l.Scope.Kind == "role" {
		scope += " " + l.Scope.ID
	}
	if l.Shared {
		scope += " · " + v.T("me.shared")
	}
	return meLimitRow{ID: l.ID, What: what, Scope: scope, Resets: v.Time(s.Reset) + " UTC",
		Used: amount(s.Used), Amount: amount(l.Amount), Remaining: amount(s.Remaining),
		UsedN: min(s.Used, l.Amount), AmountN: l.Amount, Exhausted: s.Remaining <= 0, Rolling: l.Window.Rolling > 0}
}
