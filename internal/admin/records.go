package admin

import (
	"context"
	"encoding/csv"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

type recordJSON struct {
	ID           int64        `json:"id"`
	UserID       string       `json:"user_id"`
	Nickname     string       `json:"nickname"`
	UseTime      time.Time    `json:"use_time"`
	ModelName    string       `json:"model_name"`
	InputTokens  int64        `json:"input_tokens"`
	OutputTokens int64        `json:"output_tokens"`
	Cost         money.Amount `json:"cost"`
	BalanceAfter money.Amount `json:"balance_after"`
	Source       string       `json:"source"`
	Status       string       `json:"status"`
	Estimated    bool         `json:"estimated"`
	Purpose      string       `json:"purpose"`
	ChatID       string       `json:"chat_id"`
	MessageID    string       `json:"message_id"`
	DurationMS   int64        `json:"duration_ms"`
}

func recordOut(r store.Record) recordJSON {
	return recordJSON{r.ID, r.UserID, r.Nickname, r.CreatedAt, r.Model, r.InputTokens, r.OutputTokens,
		r.Cost, r.BalanceAfter, r.Source, r.Status, r.Estimated, r.Purpose, r.ChatID, r.MessageID, r.DurationMS}
}

// listRecords: GET /api/v1/panel/records?page&pageSize&sortField&sortOrder&users&models&startDate&endDate
// (the records page's from and to as well: recordQuery)
func (a *API) listRecords(w http.ResponseWriter, r *http.Request) {
	rq, err := recordQuery(r.URL.Query(), recordsAPIPageSize)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := a.resolveModels(r.Context(), &rq); err != nil {
		a.storageFailed(w, "list records", err)
		return
	}
	recs, total, err := a.store.ListRecords(r.Context(), rq)
	if errors.Is(err, store.ErrInvalidQuery) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		a.storageFailed(w, "list records", err)
		return
	}
	out := make([]recordJSON, len(recs))
	for i, rec := range recs {
		out[i] = recordOut(rec)
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": out, "total": total})
}

// exportRecords: GET /api/v1/panel/records/export — the filtered records as
// CSV (RFC 4180), streamed row by row.
func (a *API) exportRecords(w http.ResponseWriter, r *http.Request) {
	rq, err := recordQuery(r.URL.Query(), recordsAPIPageSize)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := a.resolveModels(r.Context(), &rq); err != nil {
		a.storageFailed(w, "export records", err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="usage_records.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"time", "user_id", "nickname", "model", "input_tokens", "output_tokens", "cost", "balance_after", "source", "status", "purpose", "estimated"})
	n := 0
	err = a.store.EachRecord(r.Context(), rq, func(rec store.Record) error {
		if err := cw.Write([]string{
			rec.CreatedAt.UTC().Format(time.RFC3339), cell(rec.UserID), cell(rec.Nickname), cell(rec.Model),
			strconv.FormatInt(rec.InputTokens, 10), strconv.FormatInt(rec.OutputTokens, 10),
			rec.Cost.String(), rec.BalanceAfter.String(), rec.Source, rec.Status, cell(rec.Purpose),
			strconv.FormatBool(rec.Estimated),
		}); err != nil {
			return err
		}
		if n++; n%500 == 0 {
			cw.Flush()
		}
		return cw.Error()
	})
	cw.Flush()
	if err != nil {
		// The header is out: all we can do is stop, and say why in the log.
		a.log.Error("record export stopped", "error", err)
	}
}

// resolveModels lets a records filter name a model as its price row does:
// each entry of rq.Models keeps the records of the model with that id and
// adds those of the models the prices call by that name (in any case). The
// price rows are few; the records are still selected by model id.
func (a *API) resolveModels(ctx context.Context, rq *store.RecordQuery) error {
	if len(rq.Models) == 0 {
		return nil
	}
	prices, err := a.store.ListModelPrices(ctx)
	if err != nil {
		return err
	}
	out := slices.Clone(rq.Models)
	for _, m := range rq.Models {
		for _, p := range prices {
			if p.Name != "" && strings.EqualFold(p.Name, m) && !slices.Contains(out, p.ID) {
				out = append(out, p.ID)
			}
		}
	}
	rq.Models = out
	return nil
}

// suggestion is an <option> of a filter's <datalist>: the text it fills
// in, and what the browser shows beside it.
type suggestion struct{ Value, Label string }

// maxSuggestions is the most users the records page suggests (by name;
// the search itself reaches every user).
const maxSuggestions = 500

// recordSuggestions are the records filter's suggestions: the users' names
// (their emails beside) and the models' ids (their names beside).
func (a *API) recordSuggestions(ctx context.Context) (users, models []suggestion, err error) {
	us, _, err := a.store.ListUsers(ctx, store.UserQuery{PageSize: maxSuggestions, SortField: "name"})
	if err != nil {
		return nil, nil, err
	}
	for _, u := range us {
		switch {
		case u.Name != "":
			users = append(users, suggestion{u.Name, u.Email})
		case u.Email != "":
			users = append(users, suggestion{u.Email, ""})
		}
	}
	prices, err := a.store.ListModelPrices(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range prices {
		label := p.Name
		if label == p.ID {
			label = ""
		}
		models = append(models, suggestion{p.ID, label})
	}
	return users, models, nil
}

// cell neutralises text a spreadsheet would run as a formula.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

type totalsJSON struct {
	TotalCount   int64        `json:"total_count"`
	TotalCost    money.Amount `json:"total_cost"`
	InputTokens  int64        `json:"input_tokens"`
	OutputTokens int64        `json:"output_tokens"`
}

func totalsOut(t store.UsageTotals) totalsJSON {
	return totalsJSON{t.Calls, t.Cost, t.InputTokens, t.OutputTokens}
}

// usage: GET /api/v1/panel/usage?startTime&endTime (or range, from, to) — totals per model, per
// user (by id, with the current name) and per day.
func (a *API) usage(w http.ResponseWriter, r *http.Request) {
	rg, err := usageQuery(r.URL.Query(), time.Now(), "all")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	from, to := rg.From, rg.To
	u, err := a.store.UsageBetween(r.Context(), from, to)
	if err != nil {
		a.storageFailed(w, "usage", err)
		return
	}
	type modelJSON struct {
		ModelName string `json:"model_name"`
		totalsJSON
	}
	type userJSON struct {
		UserID   string `json:"user_id"`
		Nickname string `json:"nickname"`
		totalsJSON
	}
	type dayJSON struct {
		Day string `json:"day"`
		totalsJSON
	}
	models := make([]modelJSON, len(u.ByModel))
	for i, m := range u.ByModel {
		models[i] = modelJSON{m.Model, totalsOut(m.UsageTotals)}
	}
	users := make([]userJSON, len(u.ByUser))
	for i, x := range u.ByUser {
		users[i] = userJSON{x.UserID, x.Name, totalsOut(x.UsageTotals)}
	}
	days := make([]dayJSON, len(u.ByDay))
	for i, d := range u.ByDay {
		days[i] = dayJSON{d.Day.Format("2006-01-02"), totalsOut(d.UsageTotals)}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"models": models, "users": users, "daily": days,
		"timeRange": map[string]any{"startTime": timeOrNil(from), "endTime": timeOrNil(to)},
		"stats": map[string]any{
			"totalTokens": u.Total.InputTokens + u.Total.OutputTokens, "totalCalls": u.Total.Calls,
			"totalCost": u.Total.Cost, "activeUsers": u.ActiveUsers, "models": u.Models,
		},
	})
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// Name is a record's status, source or purpose (kind "rstatus", "source"
// or "purpose") or a sort field ("sort") in the page's language; a value
// with no translation shows as it is.
func (v *view) Name(kind, value string) string {
	if s, ok := messages[v.Lang][kind+"."+value]; ok {
		return s
	}
	if s, ok := messages["en"][kind+"."+value]; ok {
		return s
	}
	return value
}

// AnyEstimated reports whether a record in the table is estimated (the
// table then explains its mark).
func (c recordsCtx) AnyEstimated() bool {
	for _, r := range c.Records {
		if r.Estimated {
			return true
		}
	}
	return false
}
