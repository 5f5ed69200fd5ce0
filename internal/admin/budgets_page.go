package admin

// The Budgets page: limits, grants and OpenWebUI's groups, with forms
// that call the JSON API (budgets.go) the way the other pages do.

import (
	"html/template"
	"net/http"
	"strings"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/money"
)

// budgetsData is what the Budgets page shows.
type budgetsData struct {
	Limits []limitRow
	Grants []grantRow
	Groups []groupRow
	Roles  []string
	// Sync: this server can sync OpenWebUI's groups now.
	Sync bool
}

type limitRow struct {
	budget.Limit
	ScopeText string        // the scope as an admin reads it ("group Staff", "everyone")
	Amount    template.HTML // money, or a count
	Window    string
}

type grantRow struct {
	budget.Grant
	ScopeText string
	Window    string
}

type groupRow struct {
	budget.Group
	Limits []limitRow
}

// scopeText words a scope on the page; a group by its name when it is synced.
func scopeText(v *view, s budget.Scope, names map[string]string) string {
	switch s.Kind {
	case "all":
		return v.T("budgets.scope.all")
	case "group":
		if n := names[s.ID]; n != "" {
			return v.T("budgets.group") + " " + n
		}
		return v.T("budgets.group") + " " + s.ID
	case "role":
		return v.T("budgets.role") + " " + s.ID
	}
	return v.T("budgets.user") + " " + s.ID
}

// windowText words a window: "Day", or "5h (rolling)".
func windowText(v *view, w budget.Window) string {
	if w.Calendar != "" {
		return v.T("budgets.window." + w.Calendar)
	}
	return w.String() + " (" + v.T("budgets.rolling") + ")"
}

func (u *ui) budgets(w http.ResponseWriter, r *http.Request, v *view) int {
	ctx := r.Context()
	d := &budgetsData{Roles: budget.Roles, Sync: u.api.opts.SyncGroups != nil}
	v.Data = d
	limits, err := u.api.store.Limits(ctx)
	grants, gerr := u.api.store.Grants(ctx)
	groups, perr := u.api.store.Groups(ctx)
	for _, e := range []error{err, gerr, perr} {
		if e != nil {
			u.api.log.Error("budgets page", "error", e)
			v.Error = "the monitor's database is unavailable"
			return http.StatusOK
		}
	}
	names := map[string]string{}
	for _, g := range groups {
		names[g.ID] = g.Name
	}
	byGroup := map[string][]limitRow{}
	for _, l := range limits {
		row := limitRow{Limit: l, ScopeText: scopeText(v, l.Scope, names), Window: windowText(v, l.Window)}
		if l.Measure == budget.Cost {
			row.Amount = v.Money(money.Amount(l.Amount))
		} else {
			row.Amount = template.HTML(template.HTMLEscapeString(v.Int(l.Amount) + " " + strings.ToLower(v.T("budgets.measure."+string(l.Measure)))))
		}
		d.Limits = append(d.Limits, row)
		if l.Scope.Kind == "group" {
			byGroup[l.Scope.ID] = append(byGroup[l.Scope.ID], row)
		}
	}
	for _, g := range grants {
		d.Grants = append(d.Grants, grantRow{Grant: g, ScopeText: scopeText(v, g.Scope, names), Window: windowText(v, g.Window)})
	}
	for _, g := range groups {
		d.Groups = append(d.Groups, groupRow{Group: g, Limits: byGroup[g.ID]})
	}
	return http.StatusOK
}
