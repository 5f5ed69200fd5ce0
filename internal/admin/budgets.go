package admin

// Budgets in the admin API: limits, grants, OpenWebUI's groups as synced,
// and a user's effective limits with their window's usage (see
// internal/budget). Amounts of money are answered as decimal strings
// ("12.5"), counts of tokens and messages as JSON integers; either is
// read as a JSON number or a string holding one.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// routeBudgets registers the budget endpoints.
func (a *API) routeBudgets(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/limits", a.listLimits)
	mux.HandleFunc("POST /api/v1/limits", a.createLimit)
	mux.HandleFunc("PUT /api/v1/limits/{id}", a.updateLimit)
	mux.HandleFunc("DELETE /api/v1/limits/{id}", a.deleteLimit)
	mux.HandleFunc("GET /api/v1/grants", a.listGrants)
	mux.HandleFunc("POST /api/v1/grants", a.createGrant)
	mux.HandleFunc("DELETE /api/v1/grants/{id}", a.deleteGrant)
	mux.HandleFunc("GET /api/v1/users/{id}/limits", a.userLimits)
	mux.HandleFunc("GET /api/v1/groups", a.listGroups)
	mux.HandleFunc("POST /api/v1/groups/sync", a.syncGroups)
}

// budgetsChanged makes the ledger read limits and groups again at once.
func (a *API) budgetsChanged() {
	if b := a.ledger.Budgets(); b != nil {
		b.Invalidate()
	}
}

// logBudgetChange logs one admin change of budgets: who, what, the old
// and the new value (as the ledger logs the other admin changes).
func (a *API) logBudgetChange(msg string, attrs ...any) {
	a.log.Info(msg, append([]any{"actor", "admin"}, attrs...)...)
}

// ---- Limits ----

type limitJSON struct {
	ID          int64           `json:"id"`
	Scope       string          `json:"scope"`
	Measure     string          `json:"measure"`
	Amount      json.RawMessage `json:"amount"`
	Window      string          `json:"window"`
	Rolling     bool            `json:"rolling"`
	Models      []string        `json:"models"`
	Shared      bool            `json:"shared"`
	Description string          `json:"description"`
}

func limitOut(l budget.Limit) limitJSON {
	models := l.Models
	if models == nil {
		models = []string{}
	}
	return limitJSON{ID: l.ID, Scope: l.Scope.String(), Measure: string(l.Measure), Amount: ledger.MeasureJSON(l, l.Amount),
		Window: l.Window.String(), Rolling: l.Window.Rolling > 0, Models: models, Shared: l.Shared, Description: l.Describe()}
}

// limitText is a limit in one line, for the log: "12.5 cost per day (group:staff)".
func limitText(l budget.Limit) string {
	return l.FormatAmount(l.Amount) + " " + l.Describe()
}

type limitBody struct {
	Scope   string          `json:"scope" validate:"required,max=210"`
	Measure string          `json:"measure" validate:"required"`
	Amount  json.RawMessage `json:"amount" validate:"required"`
	Window  string          `json:"window" validate:"required,max=20"`
	Models  []string        `json:"models"`
	Shared  bool            `json:"shared"`
}

// fieldError is a request's field at fault, answered as a 422.
type fieldError struct{ field, msg string }

func (e fieldError) Error() string { return e.field + ": " + e.msg }

// asField names field as the one err is about. The budget package's
// errors start with the field's name ("window: …", `scope "x": …`); the
// name is not repeated, and a value it quotes goes last:
// `scope: want … (not "x")`.
func asField(field string, err error) fieldError {
	msg := strings.TrimPrefix(err.Error(), field)
	msg = strings.TrimSpace(strings.TrimPrefix(msg, ":"))
	if q, qerr := strconv.QuotedPrefix(msg); qerr == nil && strings.HasPrefix(msg[len(q):], ": ") {
		msg = msg[len(q)+2:] + " (not " + q + ")"
	}
	return fieldError{field, msg}
}

// validationField names the field of one of Validate's errors ("amount: …").
func validationField(err error) fieldError {
	field, msg, ok := strings.Cut(err.Error(), ": ")
	if !ok || strings.ContainsAny(field, " \"") {
		field, _, _ = strings.Cut(err.Error(), " ")
		return asField(field, err)
	}
	return fieldError{field, msg}
}

// unquote is a JSON string's text, or a JSON number's digits.
func unquote(raw json.RawMessage) (string, bool) {
	s := strings.TrimSpace(string(raw))
	if strings.HasPrefix(s, `"`) {
		var v string
		if json.Unmarshal([]byte(s), &v) != nil {
			return "", false
		}
		return strings.TrimSpace(v), true
	}
	return s, s != "" && s != "null" && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))
}

// parseMeasureAmount reads a limit's amount: a decimal amount of money for
// cost (exactly, as every amount of the API), a whole count else.
func parseMeasureAmount(m budget.Measure, raw json.RawMessage) (int64, error) {
	s, ok := unquote(raw)
	if m == budget.Cost {
		var a money.Amount
		if !ok {
			return 0, fieldError{"amount", "must be a decimal amount, such as 12.5"}
		}
		if err := a.UnmarshalJSON([]byte(s)); err != nil {
			return 0, fieldError{"amount", err.Error()}
		}
		return int64(a), nil
	}
	if !ok {
		return 0, fieldError{"amount", "must be a whole number of " + string(m)}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fieldError{"amount", "is too large"}
	}
	if err != nil {
		return 0, fieldError{"amount", "must be a whole number of " + string(m)}
	}
	return n, nil
}

// limit reads a limit from the body, checked field by field.
func (b limitBody) limit() (budget.Limit, error) {
	var l budget.Limit
	var err error
	if l.Scope, err = budget.ParseScope(strings.TrimSpace(b.Scope)); err != nil {
		return l, asField("scope", err)
	}
	if l.Measure, err = budget.ParseMeasure(b.Measure); err != nil {
		return l, asField("measure", err)
	}
	if l.Amount, err = parseMeasureAmount(l.Measure, b.Amount); err != nil {
		return l, err
	}
	if l.Window, err = budget.ParseWindow(strings.TrimSpace(b.Window)); err != nil {
		return l, asField("window", err)
	}
	for _, m := range b.Models {
		if m = strings.TrimSpace(m); m != "" {
			l.Models = append(l.Models, m)
		}
	}
	if len(l.Models) < len(b.Models) {
		return l, fieldError{"models", "a pattern is 1 to 200 characters"}
	}
	l.Shared = b.Shared
	if err := l.Validate(); err != nil {
		return l, validationField(err)
	}
	return l, nil
}

// badField answers a request's field error (422) and reports true, or
// reports false for another error.
func badField(w http.ResponseWriter, err error) bool {
	var fe fieldError
	if errors.As(err, &fe) {
		writeFieldError(w, fe.field, fe.msg+"; nothing was changed")
		return true
	}
	return false
}

// pathID reads the {id} of a limit's or grant's path.
func pathID(w http.ResponseWriter, r *http.Request, what string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusNotFound, "no such "+what+" (its id is a positive whole number)")
		return 0, false
	}
	return id, true
}

// listLimits: GET /api/v1/limits
func (a *API) listLimits(w http.ResponseWriter, r *http.Request) {
	limits, err := a.store.Limits(r.Context())
	if err != nil {
		a.storageFailed(w, "list limits", err)
		return
	}
	out := make([]limitJSON, len(limits))
	for i, l := range limits {
		out[i] = limitOut(l)
	}
	writeJSON(w, http.StatusOK, map[string]any{"limits": out})
}

// createLimit: POST /api/v1/limits {scope, measure, amount, window, models?, shared?}
func (a *API) createLimit(w http.ResponseWriter, r *http.Request) {
	var b limitBody
	if !a.decode(w, r, &b) {
		return
	}
	l, err := b.limit()
	if badField(w, err) {
		return
	}
	saved, err := a.store.PutLimit(r.Context(), l)
	a.budgetsChanged() // also on error: the write may have happened
	if err != nil {
		a.storageFailed(w, "add limit", err)
		return
	}
	a.logBudgetChange("admin added a budget limit", "limit", saved.ID, "old", "none", "new", limitText(saved))
	writeJSON(w, http.StatusCreated, map[string]any{"success": true, "limit": limitOut(saved)})
}

// findLimit returns limit id, or store.ErrNotFound.
func (a *API) findLimit(ctx context.Context, id int64) (budget.Limit, error) {
	limits, err := a.store.Limits(ctx)
	if err != nil {
		return budget.Limit{}, err
	}
	for _, l := range limits {
		if l.ID == id {
			return l, nil
		}
	}
	return budget.Limit{}, store.ErrNotFound
}

// updateLimit: PUT /api/v1/limits/{id} with a whole limit, as POST takes it.
func (a *API) updateLimit(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "limit")
	if !ok {
		return
	}
	var b limitBody
	if !a.decode(w, r, &b) {
		return
	}
	l, err := b.limit()
	if badField(w, err) {
		return
	}
	l.ID = id
	old, oldErr := a.findLimit(r.Context(), id)
	if errors.Is(oldErr, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such limit")
		return
	}
	saved, err := a.store.PutLimit(r.Context(), l)
	a.budgetsChanged()
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such limit")
		return
	case err != nil:
		a.storageFailed(w, "change limit", err)
		return
	}
	oldText := "unknown"
	if oldErr == nil {
		oldText = limitText(old)
	}
	a.logBudgetChange("admin changed a budget limit", "limit", saved.ID, "old", oldText, "new", limitText(saved))
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "limit": limitOut(saved)})
}

// deleteLimit: DELETE /api/v1/limits/{id}
func (a *API) deleteLimit(w http.ResponseWriter, r *http.Request) {
	a.deleteBudgetItem(w, r, "limit", func(ctx context.Context, id int64) (string, error) {
		l, err := a.findLimit(ctx, id)
		return limitText(l), err
	}, a.store.DeleteLimit)
}

// deleteBudgetItem deletes a limit or a grant (kind) by its path id,
// logging what it was (describe) and answering 404 when there is none.
func (a *API) deleteBudgetItem(w http.ResponseWriter, r *http.Request, kind string,
	describe func(context.Context, int64) (string, error), del func(context.Context, int64) error) {
	id, ok := pathID(w, r, kind)
	if !ok {
		return
	}
	oldText, oldErr := describe(r.Context(), id)
	err := del(r.Context(), id)
	a.budgetsChanged()
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such "+kind)
		return
	case err != nil:
		a.storageFailed(w, "delete "+kind, err)
		return
	}
	if oldErr != nil {
		oldText = "unknown"
	}
	a.logBudgetChange("admin deleted a budget "+kind, kind, id, "old", oldText, "new", "none")
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}

// ---- Grants ----

type grantJSON struct {
	ID         int64      `json:"id"`
	Scope      string     `json:"scope"`
	Mode       string     `json:"mode"`
	Amount     string     `json:"amount"`
	Cap        *string    `json:"cap"` // add grants only
	Window     string     `json:"window"`
	LastWindow *time.Time `json:"last_window"` // the start of the last window applied; null: none yet
}

func grantOut(g budget.Grant) grantJSON {
	out := grantJSON{ID: g.ID, Scope: g.Scope.String(), Mode: g.Mode, Amount: g.Amount.String(), Window: g.Window.String()}
	if g.Mode == "add" {
		c := g.Cap.String()
		out.Cap = &c
	}
	if !g.LastWindow.IsZero() {
		t := g.LastWindow.UTC()
		out.LastWindow = &t
	}
	return out
}

// grantText is a grant in one line, for the log.
func grantText(g budget.Grant) string {
	s := g.Mode + " " + g.Amount.String()
	if g.Mode == "add" {
		s += " up to " + g.Cap.String()
	}
	return s + " every " + g.Window.String() + " (" + g.Scope.String() + ")"
}

type grantBody struct {
	Scope  string          `json:"scope" validate:"required,max=210"`
	Mode   string          `json:"mode" validate:"required"`
	Amount *money.Amount   `json:"amount" validate:"required"`
	Cap    json.RawMessage `json:"cap"`
	Window string          `json:"window" validate:"required,max=20"`
}

func (b grantBody) grant() (budget.Grant, error) {
	var g budget.Grant
	var err error
	if g.Scope, err = budget.ParseScope(strings.TrimSpace(b.Scope)); err != nil {
		return g, asField("scope", err)
	}
	g.Mode, g.Amount = b.Mode, *b.Amount
	if g.Mode != "reset" && g.Mode != "add" {
		return g, fieldError{"mode", "want reset or add"}
	}
	s, ok := unquote(b.Cap)
	if given := len(b.Cap) > 0 && string(b.Cap) != "null" && (s != "" || !ok); given {
		if g.Mode == "reset" {
			return g, fieldError{"cap", "only an add grant has a cap"}
		}
		if !ok {
			return g, fieldError{"cap", "must be a decimal amount, such as 20"}
		}
		if err := g.Cap.UnmarshalJSON([]byte(s)); err != nil {
			return g, fieldError{"cap", err.Error()}
		}
	} else if g.Mode == "add" {
		return g, fieldError{"cap", "an add grant needs a cap: the balance it never goes above"}
	}
	if g.Window, err = budget.ParseWindow(strings.TrimSpace(b.Window)); err != nil {
		return g, asField("window", err)
	}
	if err := g.Validate(); err != nil {
		return g, validationField(err)
	}
	return g, nil
}

// listGrants: GET /api/v1/grants
func (a *API) listGrants(w http.ResponseWriter, r *http.Request) {
	grants, err := a.store.Grants(r.Context())
	if err != nil {
		a.storageFailed(w, "list grants", err)
		return
	}
	out := make([]grantJSON, len(grants))
	for i, g := range grants {
		out[i] = grantOut(g)
	}
	writeJSON(w, http.StatusOK, map[string]any{"grants": out})
}

type appliedJSON struct {
	UserID     string `json:"user_id"`
	Actor      string `json:"actor"`
	OldBalance string `json:"old_balance"`
	NewBalance string `json:"new_balance"`
}

// createGrant: POST /api/v1/grants {scope, mode, amount, cap?, window}.
// The grants due are applied at once, this one's current window with them.
func (a *API) createGrant(w http.ResponseWriter, r *http.Request) {
	var b grantBody
	if !a.decode(w, r, &b) {
		return
	}
	g, err := b.grant()
	if badField(w, err) {
		return
	}
	saved, err := a.store.AddGrant(r.Context(), g)
	a.budgetsChanged()
	if err != nil {
		a.storageFailed(w, "add grant", err)
		return
	}
	a.logBudgetChange("admin added a budget grant", "grant", saved.ID, "old", "none", "new", grantText(saved))
	answer := map[string]any{"success": true}
	changes, err := a.ledger.ApplyGrants(r.Context())
	applied := make([]appliedJSON, 0, len(changes))
	for _, c := range changes {
		a.log.Info("grant applied", "actor", c.Actor, "user", c.UserID, "old_balance", c.OldBalance.String(),
			"new_balance", c.NewBalance.String(), "reason", c.Reason)
		applied = append(applied, appliedJSON{c.UserID, c.Actor, c.OldBalance.String(), c.NewBalance.String()})
	}
	if err != nil {
		// The grant is stored; the minute's sweep applies it.
		a.log.Error("applying budget grants", "error", err)
		answer["apply_error"] = "the grant is stored but could not be applied yet; it is retried within a minute"
	}
	if g, err := a.findGrant(r.Context(), saved.ID); err == nil {
		saved = g // with the window just applied
	}
	answer["grant"], answer["applied"] = grantOut(saved), applied
	writeJSON(w, http.StatusCreated, answer)
}

func (a *API) findGrant(ctx context.Context, id int64) (budget.Grant, error) {
	grants, err := a.store.Grants(ctx)
	if err != nil {
		return budget.Grant{}, err
	}
	for _, g := range grants {
		if g.ID == id {
			return g, nil
		}
	}
	return budget.Grant{}, store.ErrNotFound
}

// deleteGrant: DELETE /api/v1/grants/{id}. Balances it set stay as they are.
func (a *API) deleteGrant(w http.ResponseWriter, r *http.Request) {
	a.deleteBudgetItem(w, r, "grant", func(ctx context.Context, id int64) (string, error) {
		g, err := a.findGrant(ctx, id)
		return grantText(g), err
	}, a.store.DeleteGrant)
}

// ---- A user's limits ----

// userLimits: GET /api/v1/users/{id}/limits — the limits that decide the
// user's calls, each with what was used in its window, what remains and
// when it resets.
func (a *API) userLimits(w http.ResponseWriter, r *http.Request) {
	u, err := a.store.User(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "User not found")
		return
	}
	if err != nil {
		a.storageFailed(w, "read user", err)
		return
	}
	statuses, err := a.ledger.UserLimits(r.Context(), u.UserInfo)
	if err != nil {
		a.storageFailed(w, "user limits", err)
		return
	}
	out := make([]ledger.LimitJSON, len(statuses))
	for i, s := range statuses {
		out[i] = s.JSON()
	}
	writeJSON(w, http.StatusOK, map[string]any{"user_id": u.ID, "limits": out})
}

// ---- Groups ----

type groupJSON struct {
	ID      string      `json:"id"`
	Name    string      `json:"name"`
	Members []string    `json:"members"`
	Limits  []limitJSON `json:"limits"`
}

// listGroups: GET /api/v1/groups — OpenWebUI's groups as last synced, with
// their members and the limits scoped to each.
func (a *API) listGroups(w http.ResponseWriter, r *http.Request) {
	groups, err := a.store.Groups(r.Context())
	var limits []budget.Limit
	if err == nil {
		limits, err = a.store.Limits(r.Context())
	}
	if err != nil {
		a.storageFailed(w, "list groups", err)
		return
	}
	out := make([]groupJSON, len(groups))
	for i, g := range groups {
		out[i] = groupJSON{ID: g.ID, Name: g.Name, Members: g.Members, Limits: []limitJSON{}}
		if out[i].Members == nil {
			out[i].Members = []string{}
		}
		for _, l := range limits {
			if l.Scope.Kind == "group" && l.Scope.ID == g.ID {
				out[i].Limits = append(out[i].Limits, limitOut(l))
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": out, "sync": a.opts.SyncGroups != nil})
}

// errSyncOff is the answer to a sync when this server has no syncer.
const errSyncOff = "group sync is not configured on this server (it reads OpenWebUI's groups with openwebui and openwebui_api_key)"

// syncGroups: POST /api/v1/groups/sync — reads OpenWebUI's groups now.
// Without a syncer the answer is 409: the server is not set up for it,
// and asking again will not help until it is.
func (a *API) syncGroups(w http.ResponseWriter, r *http.Request) {
	if a.opts.SyncGroups == nil {
		writeError(w, http.StatusConflict, errSyncOff)
		return
	}
	n, err := a.opts.SyncGroups(r.Context())
	a.budgetsChanged()
	if err != nil {
		a.log.Warn("group sync failed", "actor", "admin", "error", err)
		writeError(w, http.StatusBadGateway, "group sync failed: "+err.Error())
		return
	}
	a.logBudgetChange("admin synced OpenWebUI's groups", "groups", n)
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "groups": n})
}
