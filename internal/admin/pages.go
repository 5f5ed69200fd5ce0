package admin

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/web"
)

// The pages live at /, /users, /users/{id}, /models, /records, /settings and
// /login below wherever the dashboard is mounted (the prefix is stripped
// before the request reaches us). Every link, form action and fetch is
// relative: each page gets Base, the way back to the mount point ("./" or
// "../"), so nothing needs to know the prefix.

const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"

// ui serves the dashboard's pages and keeps its sessions.
type ui struct {
	api      *API
	mux      *http.ServeMux
	sessions *sessions
	pages    map[string]*template.Template
}

// routePages registers the dashboard's pages. They have a mux of their own:
// the API's routes need the bearer token or a session, the pages only a
// session, the login form and static files nothing.
func (a *API) routePages(_ *http.ServeMux) {
	u := &ui{api: a, mux: http.NewServeMux(), sessions: newSessions(), pages: map[string]*template.Template{}}
	for _, name := range []string{"login", "overview", "users", "user", "models", "records", "settings", "budgets"} {
		u.pages[name] = template.Must(template.New("").Funcs(template.FuncMap{
			"static":  func(name string) string { return "static/" + name + "?v=" + web.Version(name) },
			"pathesc": url.PathEscape,
			"pair":    func(v *view, recs []store.Record) recordsCtx { return recordsCtx{v, recs} },
		}).ParseFS(web.Templates, "templates/layout.html", "templates/partials.html", "templates/"+name+".html"))
	}
	m := u.mux
	m.HandleFunc("GET /login", u.loginForm)
	m.HandleFunc("POST /login", u.login)
	m.HandleFunc("POST /logout", u.logout)
	m.HandleFunc("GET /lang", u.setLanguage)
	m.HandleFunc("GET /static/{name}", u.static)
	m.HandleFunc("GET /{$}", u.page("overview", u.overview))
	m.HandleFunc("GET /users", u.page("users", u.users))
	m.HandleFunc("GET /users/{id}", u.page("user", u.user))
	m.HandleFunc("GET /models", u.page("models", u.models))
	m.HandleFunc("GET /records", u.page("records", u.records))
	m.HandleFunc("GET /settings", u.page("settings", u.settings))
	m.HandleFunc("GET /budgets", u.page("budgets", u.budgets))
	a.ui = u
}

// serves reports whether the request is for a page rather than the API.
func (u *ui) serves(r *http.Request) bool {
	_, pattern := u.mux.Handler(r)
	return pattern != ""
}

// view is what every template gets.
type view struct {
	Lang, Base, CSRF, Page, Self, Currency string
	Langs                                  []langLink
	Error                                  string
	Data                                   any
	// Health is shown as a banner when charges are not reaching the store.
	Health *ledger.Health
}

type langLink struct {
	Code, Name, URL string
	Current         bool
}

// recordsCtx is what the records-table template gets.
type recordsCtx struct {
	V       *view
	Records []store.Record
}

// Tokens is the input and output tokens of totals.
func (v *view) Tokens(t store.UsageTotals) int64 { return t.InputTokens + t.OutputTokens }

// T translates a key.
func (v *view) T(key string) string { return translate(v.Lang, key) }

// Money shows an amount rounded for reading (formatMoney), with the exact
// amount as its title (the browser's tooltip).
func (v *view) Money(a money.Amount) template.HTML {
	return template.HTML(`<span class="money" title="` + template.HTMLEscapeString(exactMoney(v.Currency, a)) + `">` +
		template.HTMLEscapeString(formatMoney(v.Currency, a)) + `</span>`)
}

// Int formats a count with thousands separators.
func (v *view) Int(n int64) string { return formatInt(n) }

// Time formats a time in UTC.
func (v *view) Time(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") }

// formatMoney rounds an amount for reading, half away from zero: two
// decimals from 1 up, up to four below 1, two significant digits below a
// cent (0.000042), never rounded to zero; at least two decimals, with the
// currency symbol and thousands separators. exactMoney is every digit.
func formatMoney(cur string, a money.Amount) string {
	sign, n := "", uint64(a)
	if a < 0 {
		sign, n = "-", uint64(-(a+1))+1 // math.MinInt64 too
	}
	const nano = 1_000_000_000 // units per whole (money.Digits decimals)
	var dec int
	switch {
	case n >= nano:
		dec = 2
	case n >= nano/100:
		dec = 4
	default: // two significant digits of what is below a cent
		dec = money.Digits + 2 - len(strconv.FormatUint(n, 10))
		dec = min(max(dec, 2), money.Digits)
	}
	unit := uint64(1)
	for range money.Digits - dec {
		unit *= 10
	}
	q := (n + unit/2) / unit // at most (2^63+5e8)/1: no overflow in uint64
	scale := nano / unit
	frac := strconv.FormatUint(q%scale, 10)
	frac = strings.Repeat("0", dec-len(frac)) + frac
	for len(frac) > 2 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	return sign + cur + formatDigits(strconv.FormatUint(q/scale, 10)) + "." + frac
}

// exactMoney is an amount with every digit it has (at least two decimals),
// the currency symbol and thousands separators.
func exactMoney(cur string, a money.Amount) string {
	s := a.String()
	sign := ""
	if s, _ = strings.CutPrefix(s, "-"); s != a.String() {
		sign = "-"
	}
	whole, frac, _ := strings.Cut(s, ".")
	for len(frac) < 2 {
		frac += "0"
	}
	return sign + cur + formatDigits(whole) + "." + frac
}

func formatInt(n int64) string {
	if n < 0 {
		return "-" + formatDigits(strconv.FormatInt(-n, 10))
	}
	return formatDigits(strconv.FormatInt(n, 10))
}

func formatDigits(s string) string {
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	head := len(s) % 3
	if head > 0 {
		b.WriteString(s[:head])
	}
	for i := head; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// base is the relative way from the request's path back to the mount point.
func base(r *http.Request) string {
	depth := strings.Count(r.URL.EscapedPath(), "/") - 1
	if depth <= 0 {
		return "./"
	}
	return strings.Repeat("../", depth)
}

// originalPath is the path the client asked for, before the prefix was cut.
func originalPath(r *http.Request) string {
	uri := r.RequestURI
	if uri == "" {
		return r.URL.EscapedPath()
	}
	if u, err := url.ParseRequestURI(uri); err == nil {
		return u.EscapedPath()
	}
	return r.URL.EscapedPath()
}

// mountPrefix is the part of the client's path that was cut before the
// request reached us: "/monitor", or "" at the root of a site.
func mountPrefix(r *http.Request) string {
	orig, rest := originalPath(r), r.URL.EscapedPath()
	if p, ok := strings.CutSuffix(orig, rest); ok {
		return p
	}
	if rest == "/" {
		return strings.TrimSuffix(orig, "/")
	}
	return ""
}

// redirect answers 303 with a relative Location, which the browser resolves
// against the address it asked for (http.Redirect would resolve it against
// the path with the prefix cut).
func redirect(w http.ResponseWriter, to string) {
	w.Header().Set("Location", to)
	w.WriteHeader(http.StatusSeeOther)
}

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

func (u *ui) newView(r *http.Request, page string) *view {
	v := &view{Lang: language(r), Base: base(r), Page: page, Currency: u.api.opts.Currency}
	v.Self = strings.TrimPrefix(r.URL.EscapedPath(), "/")
	if r.URL.RawQuery != "" {
		v.Self += "?" + r.URL.RawQuery
	}
	for _, l := range languages {
		v.Langs = append(v.Langs, langLink{l.Code, l.Name,
			v.Base + "lang?" + url.Values{"l": {l.Code}, "back": {v.Self}}.Encode(), l.Code == v.Lang})
	}
	return v
}

func (u *ui) render(w http.ResponseWriter, status int, name string, v *view) {
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		u.api.log.Error("page rendering failed", "page", name, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// page wraps a page handler: it needs a session (else: to the login form)
// and renders the named template with what fn put into the view. fn
// returns the status, or 0 when it answered itself.
func (u *ui) page(name string, fn func(w http.ResponseWriter, r *http.Request, v *view) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// "/monitor" must become "/monitor/", or relative links miss the prefix.
		if r.URL.Path == "/" && !strings.HasSuffix(originalPath(r), "/") {
			last := path.Base(originalPath(r))
			if r.URL.RawQuery != "" {
				last += "?" + r.URL.RawQuery
			}
			redirect(w, "./"+last+"/")
			return
		}
		_, s, ok := u.session(r)
		if !ok {
			securityHeaders(w)
			redirect(w, base(r)+"login")
			return
		}
		v := u.newView(r, name)
		v.CSRF = s.csrf
		if h := u.api.ledger.Health(r.Context()); h.Status != "ok" {
			v.Health = &h
		}
		if status := fn(w, r, v); status != 0 {
			u.render(w, status, name, v)
		}
	}
}

func (u *ui) loginForm(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := u.session(r); ok {
		securityHeaders(w)
		redirect(w, "./")
		return
	}
	v := u.newView(r, "login")
	if !u.api.token.Set() {
		v.Error = v.T("login.notoken")
	}
	u.render(w, http.StatusOK, "login", v)
}

func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	v := u.newView(r, "login")
	client := identity.ClientAddr(r)
	limited := func(wait time.Duration) {
		v.Error = v.T("login.limited")
		w.Header().Set("Retry-After", strconv.FormatInt(identity.RetryAfterSeconds(wait), 10))
		u.render(w, http.StatusTooManyRequests, "login", v)
	}
	// Refuse early, before reading the body; the decision that counts is
	// Check's, taken atomically once the token is known.
	if ok, wait := u.api.throttle.Limited(client); ok {
		limited(wait)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		v.Error = v.T("login.failed")
		u.render(w, http.StatusBadRequest, "login", v)
		return
	}
	res, wait := u.api.throttle.Check(client, u.api.token, r.PostForm.Get("token"))
	if res == identity.Throttled {
		limited(wait)
		return
	}
	if res != identity.Right {
		u.api.log.Warn("dashboard login failed", "client", client)
		v.Error = v.T("login.failed")
		if !u.api.token.Set() {
			v.Error = v.T("login.notoken")
		}
		u.render(w, http.StatusUnauthorized, "login", v)
		return
	}
	id, _ := u.sessions.create()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: mountPrefix(r) + "/",
		MaxAge: int(sessionTTL / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	securityHeaders(w)
	redirect(w, "./")
}

func (u *ui) logout(w http.ResponseWriter, r *http.Request) {
	id, s, ok := u.session(r)
	if ok {
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		got := r.Header.Get("X-CSRF-Token")
		if got == "" {
			got = r.PostFormValue("csrf")
		}
		if !csrfMatches(got, s.csrf) {
			writeError(w, http.StatusForbidden, "missing or wrong CSRF token")
			return
		}
		u.sessions.remove(id)
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: mountPrefix(r) + "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	securityHeaders(w)
	redirect(w, "login")
}

// setLanguage: GET /lang?l=zh&back=users — remembers the language in a
// cookie and goes back to the page (a relative path only).
func (u *ui) setLanguage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if _, ok := messages[q.Get("l")]; ok {
		http.SetCookie(w, &http.Cookie{
			Name: "lang", Value: q.Get("l"), Path: mountPrefix(r) + "/", MaxAge: 365 * 24 * 3600,
			Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
		})
	}
	back := q.Get("back")
	if b, err := url.Parse(back); err != nil || b.Scheme != "" || b.Host != "" || b.User != nil ||
		strings.ContainsAny(back, `\:`) || strings.HasPrefix(back, "/") {
		back = ""
	}
	securityHeaders(w)
	redirect(w, "./"+back)
}

func (u *ui) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	b, err := fs.ReadFile(web.Static, name)
	if err != nil || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	securityHeaders(w)
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	if r.URL.Query().Get("v") == web.Version(name) {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	_, _ = w.Write(b)
}

// pageURL is path with the query q, changed by the key/value pairs kv ("" deletes).
func pageURL(p string, q url.Values, kv ...string) string {
	c := url.Values{}
	for k, vs := range q {
		c[k] = append([]string(nil), vs...)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			c.Del(kv[i])
		} else {
			c.Set(kv[i], kv[i+1])
		}
	}
	if e := c.Encode(); e != "" {
		return p + "?" + e
	}
	return p
}

// pager is the paging links of a table.
type pager struct {
	Page, Pages int
	Total       int64
	Prev, Next  string // "" at either end
}

func newPager(p string, q url.Values, page, size int, total int64) pager {
	pages := int((total + int64(size) - 1) / int64(size))
	if pages < 1 {
		pages = 1
	}
	pg := pager{Page: page, Pages: pages, Total: total}
	if page > 1 {
		pg.Prev = pageURL(p, q, "page", strconv.Itoa(page-1))
	}
	if page < pages {
		pg.Next = pageURL(p, q, "page", strconv.Itoa(page+1))
	}
	return pg
}

// ---- Overview ----

type overviewData struct {
	Preset, From, To, Metric string
	Presets                  []link
	Metrics                  []link
	Usage                    store.Usage
	Share, Ranking, Daily    template.HTML
	Breakdown                template.HTML // by purpose, by path, token kinds
}

type link struct {
	Key, Label, URL string
	Current         bool
}

func (u *ui) overview(w http.ResponseWriter, r *http.Request, v *view) int {
	q := r.URL.Query()
	d := &overviewData{Metric: overviewMetric(q)}
	status := http.StatusOK
	rg, err := usageQuery(q, time.Now(), "7d")
	if err != nil {
		v.Error, status = err.Error(), http.StatusBadRequest
		rg, _ = usageQuery(nil, time.Now(), "7d") // show the default range
	}
	from, to := rg.From, rg.To
	d.Preset = rg.Preset
	if !from.IsZero() {
		d.From = from.Format("2006-01-02")
	}
	if !to.IsZero() {
		d.To = to.AddDate(0, 0, -1).Format("2006-01-02")
	}
	for _, p := range presets[:len(presets)-1] {
		d.Presets = append(d.Presets, link{p, v.T("range." + p), pageURL("./", q, "range", p, "from", "", "to", "", "startTime", "", "endTime", ""), p == d.Preset})
	}
	for _, m := range []string{"cost", "calls"} {
		d.Metrics = append(d.Metrics, link{m, v.T("metric." + m), pageURL("./", q, "metric", m), m == d.Metric})
	}
	usage, err := u.api.store.UsageBetween(r.Context(), from, to)
	if err != nil {
		u.api.log.Error("overview usage", "error", err)
		v.Error = "the monitor's database is unavailable"
	}
	d.Usage = usage
	d.Share, d.Ranking, d.Daily = overviewCharts(v, usage, d.Metric, v.Base)
	d.Breakdown = breakdownTables(v, usage, d.Metric)
	v.Data = d
	return status
}

// ---- Users ----

type usersData struct {
	Search, Sort, Order string
	Status              string // "", "active" or "blocked"
	Users               []store.User
	Pager               pager
	SortLinks           map[string]string
}

func (u *ui) users(w http.ResponseWriter, r *http.Request, v *view) int {
	q := r.URL.Query()
	uq, err := userQuery(q)
	if err != nil {
		v.Error = err.Error()
		v.Data = &usersData{Search: uq.Search, Sort: "created_at", Order: "desc", SortLinks: map[string]string{}}
		return http.StatusBadRequest
	}
	d := &usersData{Search: uq.Search, Sort: uq.SortField, Order: "asc"}
	if d.Sort == "" {
		d.Sort = "created_at"
	}
	if uq.Descending {
		d.Order = "desc"
	}
	if uq.Blocked != nil {
		d.Status = map[bool]string{false: "active", true: "blocked"}[*uq.Blocked]
	}
	users, total, err := u.api.store.ListUsers(r.Context(), uq)
	if err != nil {
		u.api.log.Error("users page", "error", err)
		v.Error = "the monitor's database is unavailable"
	}
	d.Users = users
	d.Pager = newPager("users", q, uq.Page, uq.PageSize, total)
	d.SortLinks = map[string]string{}
	for _, f := range store.UserSortFields {
		o := "asc" // names and the like: A first; amounts and dates: most first
		if f == "balance" || f == "created_at" {
			o = "desc"
		}
		if f == d.Sort { // a second click turns the order round
			o = map[string]string{"asc": "desc", "desc": "asc"}[d.Order]
		}
		d.SortLinks[f] = pageURL("users", q, "sort", f, "order", o, "sortField", "", "sortOrder", "", "page", "")
	}
	v.Data = d
	return http.StatusOK
}

type userData struct {
	User    store.User
	Changes []store.BalanceChange
	Records []store.Record
	// Usage is the user's usage of all time by purpose and path (the
	// breakdown rollups), shown as Breakdown.
	Usage     store.Usage
	Breakdown template.HTML
	// RecordTotal is how many records the user has (deleting them says so).
	RecordTotal int64
}

func (u *ui) user(w http.ResponseWriter, r *http.Request, v *view) int {
	id := r.PathValue("id")
	usr, err := u.api.store.User(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		v.Error = v.T("user.notfound")
		return http.StatusNotFound
	}
	if err != nil {
		u.api.log.Error("user page", "error", err)
		v.Error = "the monitor's database is unavailable"
		return http.StatusServiceUnavailable
	}
	d := &userData{User: usr}
	if d.Changes, err = u.api.store.BalanceChanges(r.Context(), id, 50); err == nil {
		d.Records, d.RecordTotal, err = u.api.store.ListRecords(r.Context(), store.RecordQuery{
			PageSize: 20, Descending: true, Users: []string{id},
		})
	}
	if err == nil {
		if d.Usage, err = u.api.store.UserUsageBetween(r.Context(), id, time.Time{}, time.Time{}); err == nil {
			d.Breakdown = breakdownTables(v, d.Usage, "cost")
		}
	}
	if err != nil {
		u.api.log.Error("user page", "error", err)
		v.Error = "the monitor's database is unavailable"
	}
	v.Data = d
	return http.StatusOK
}

// ---- Models ----

func (u *ui) models(w http.ResponseWriter, r *http.Request, v *view) int {
	d, err := u.api.modelsPage(r.Context()) // models.go
	if err != nil {
		u.api.log.Error("models page", "error", err)
		v.Error = "the monitor's database is unavailable"
	}
	v.Data = d
	return http.StatusOK
}

// ---- Records ----

type recordsData struct {
	Users, Models, From, To, Sort, Order string
	Records                              []store.Record
	Pager                                pager
	Export                               string
	SortFields                           []string
	// User is the user search (a name, an email or an id); UserList and
	// ModelList suggest users and models (<datalist>).
	User                string
	UserList, ModelList []suggestion
}

func (u *ui) records(w http.ResponseWriter, r *http.Request, v *view) int {
	q := r.URL.Query()
	rq, err := recordQuery(q, recordsPagePageSize)
	d := &recordsData{Users: strings.Join(rq.Users, ","), Models: strings.Join(rq.Models, ","), User: rq.UserSearch,
		Sort: recordSortName(rq.SortField), Order: "ascend",
		SortFields: []string{"use_time", "cost", "input_tokens", "output_tokens", "model_name", "nickname", "user_id"},
		// The export reads the same filter with the same parser.
		Export: pageURL("api/v1/panel/records/export", q, "page", "", "pageSize", "")}
	if rq.Descending {
		d.Order = "descend"
	}
	if !rq.From.IsZero() {
		d.From = rq.From.UTC().Format("2006-01-02")
	}
	if !rq.To.IsZero() {
		d.To = rq.To.UTC().Add(-time.Nanosecond).Format("2006-01-02")
	}
	if err != nil {
		v.Error = err.Error()
		v.Data = d
		return http.StatusBadRequest
	}
	var total int64
	if d.UserList, d.ModelList, err = u.api.recordSuggestions(r.Context()); err == nil {
		if err = u.api.resolveModels(r.Context(), &rq); err == nil {
			d.Records, total, err = u.api.store.ListRecords(r.Context(), rq)
		}
	}
	if err != nil {
		u.api.log.Error("records page", "error", err)
		v.Error = "the monitor's database is unavailable"
	}
	d.Pager = newPager("records", q, rq.Page, rq.PageSize, total)
	v.Data = d
	return http.StatusOK
}

// ---- Settings ----

func (u *ui) settings(w http.ResponseWriter, r *http.Request, v *view) int {
	o := u.api.opts
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	v.Data = map[string]any{
		"Store":     u.api.store.Kind(),
		"OpenWebUI": o.OpenWebUI != "" && o.OpenWebUIAPIKey != "",
		// Admins paste this key into the OpenWebUI function; the page is
		// behind the login and sent no-store.
		"APIKey":   o.FunctionAPIKey,
		"Endpoint": scheme + "://" + r.Host,
		"Answers":  u.api.openWebUIAnswers(r.Context()),
		// The tables a backup holds, as the import answers count them.
		"Tables": []string{"users", "records", "model_prices", "balance_changes"},
	}
	return http.StatusOK
}

// openWebUIAnswers asks OpenWebUI for its models, briefly: "" when it
// answers, else what went wrong.
func (a *API) openWebUIAnswers(ctx context.Context) string {
	if a.opts.OpenWebUI == "" {
		return "openwebui is not configured"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.opts.OpenWebUI+"/api/models", nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+a.opts.OpenWebUIAPIKey)
	resp, err := a.opts.Client.Do(req)
	if err != nil {
		return "no answer: " + err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "answered " + resp.Status
	}
	return ""
}
