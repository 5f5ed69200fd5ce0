package admin

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

type userJSON struct {
	ID        string       `json:"id"`
	Email     string       `json:"email"`
	Name      string       `json:"name"`
	Role      string       `json:"role"`
	Balance   money.Amount `json:"balance"`
	Deleted   bool         `json:"deleted"` // blocked; the old monitor's name
	CreatedAt time.Time    `json:"created_at"`
}

func userOut(u store.User) userJSON {
	return userJSON{u.ID, u.Email, u.Name, u.Role, u.Balance, u.Blocked, u.CreatedAt}
}

// listUsers: GET /api/v1/users?page&pageSize&sortField&sortOrder&search&deleted
func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	uq, err := userQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	users, total, err := a.store.ListUsers(r.Context(), uq)
	if errors.Is(err, store.ErrInvalidQuery) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		a.storageFailed(w, "list users", err)
		return
	}
	out := make([]userJSON, len(users))
	for i, u := range users {
		out[i] = userOut(u)
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out, "total": total, "page": uq.Page, "pageSize": uq.PageSize})
}

type balanceBody struct {
	Balance *money.Amount `json:"balance" validate:"required"`
	Reason  string        `json:"reason" validate:"max=500"`
}

// setBalance: PUT /api/v1/users/{id}/balance {"balance": 12.5}
func (a *API) setBalance(w http.ResponseWriter, r *http.Request) {
	var b balanceBody
	if !a.decode(w, r, &b) {
		return
	}
	c, err := a.ledger.SetBalance(r.Context(), r.PathValue("id"), *b.Balance, "admin", b.Reason)
	a.answerChange(w, c, err, "balance")
}

type topUpBody struct {
	Amount *money.Amount `json:"amount" validate:"required"`
	Reason string        `json:"reason" validate:"max=500"`
}

// topUp: POST /api/v1/users/{id}/topup {"amount": 5, "reason": "…"}; a
// negative amount takes money away. Zero, or a result beyond the range of an
// amount, is a 422 naming amount, and nothing is written (no audit line).
func (a *API) topUp(w http.ResponseWriter, r *http.Request) {
	var b topUpBody
	if !a.decode(w, r, &b) {
		return
	}
	if *b.Amount == 0 {
		// A change of nothing would only add a line to the audit record.
		writeFieldError(w, "amount", "must not be zero; nothing was changed")
		return
	}
	c, err := a.ledger.AdjustBalance(r.Context(), r.PathValue("id"), *b.Amount, "admin", b.Reason)
	a.answerChange(w, c, err, "amount")
}

// writeFieldError answers 422 for one field, in writeValidation's shape.
func writeFieldError(w http.ResponseWriter, field, msg string) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": field + ": " + msg, "errors": map[string]string{field: msg}})
}

// answerChange answers a balance change; field is the request's field a
// change out of range is about.
func (a *API) answerChange(w http.ResponseWriter, c store.BalanceChange, err error, field string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such user")
	case errors.Is(err, store.ErrOutOfRange):
		writeFieldError(w, field, strings.TrimSuffix(err.Error(), ": "+store.ErrOutOfRange.Error())+"; nothing was changed")
	case err != nil:
		a.storageFailed(w, "balance change", err)
	default:
		writeJSON(w, http.StatusOK, map[string]any{
			"success": true, "balance": c.NewBalance, "oldBalance": c.OldBalance, "changeId": c.ID,
		})
	}
}

// balanceHistory: GET /api/v1/users/{id}/balance-history
func (a *API) balanceHistory(w http.ResponseWriter, r *http.Request) {
	changes, err := a.store.BalanceChanges(r.Context(), r.PathValue("id"), 100)
	if err != nil {
		a.storageFailed(w, "balance history", err)
		return
	}
	type changeJSON struct {
		ID         int64        `json:"id"`
		Actor      string       `json:"actor"`
		Reason     string       `json:"reason"`
		OldBalance money.Amount `json:"old_balance"`
		NewBalance money.Amount `json:"new_balance"`
		CreatedAt  time.Time    `json:"created_at"`
	}
	out := make([]changeJSON, len(changes))
	for i, c := range changes {
		out[i] = changeJSON{c.ID, c.Actor, c.Reason, c.OldBalance, c.NewBalance, c.CreatedAt}
	}
	writeJSON(w, http.StatusOK, map[string]any{"changes": out})
}

type patchBody struct {
	Deleted *bool `json:"deleted" validate:"required"`
}

// patchUser: PATCH /api/v1/users/{id} {"deleted": true} blocks the user.
func (a *API) patchUser(w http.ResponseWriter, r *http.Request) {
	var b patchBody
	if !a.decode(w, r, &b) {
		return
	}
	id := r.PathValue("id")
	err := a.ledger.SetBlocked(r.Context(), id, *b.Deleted)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "User not found")
		return
	}
	if err != nil {
		a.storageFailed(w, "block user", err)
		return
	}
	u, err := a.store.User(r.Context(), id)
	if err != nil {
		a.storageFailed(w, "read user", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "user": userOut(u)})
}

// deleteUser: DELETE /api/v1/users/{id} removes the user and their history.
func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) {
	err := a.ledger.DeleteUser(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "User not found")
		return
	}
	if err != nil {
		a.storageFailed(w, "delete user", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}

func allowed(v string, list []string) bool {
	for _, x := range list {
		if v == x {
			return true
		}
	}
	return false
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return `"` + s + `"`
}
