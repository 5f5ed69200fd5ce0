package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// routeModels registers the routes that talk to OpenWebUI about models.
func (a *API) routeModels(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/models", a.listModels)
	mux.HandleFunc("POST /api/v1/models/sync-price", a.syncPrice)
	mux.HandleFunc("POST /api/v1/models/sync-all-prices", a.syncAllPrices)
	mux.HandleFunc("POST /api/v1/models/test", a.testModel)
}

// maxModelsBytes bounds what we read of OpenWebUI's answers.
const maxModelsBytes = 32 << 20

// testTimeout bounds a model test, whatever the client's timeout.
const testTimeout = 30 * time.Second

// modelJSON is one model of GET /api/v1/models: OpenWebUI's model with the
// price it is billed at.
type modelJSON struct {
	ID           string       `json:"id"`
	BaseModelID  string       `json:"base_model_id"`
	Name         string       `json:"name"`
	ImageURL     string       `json:"imageUrl"`
	SystemPrompt string       `json:"system_prompt"`
	InputPrice   money.Amount `json:"input_price"`
	OutputPrice  money.Amount `json:"output_price"`
	PerMsgPrice  money.Amount `json:"per_msg_price"`
	UpdatedAt    *time.Time   `json:"updated_at"` // null: no row of ours
	Priced       bool         `json:"priced"`     // the model has a price of its own
}

// owuiModel is what we read of an item of OpenWebUI's GET /api/models.
type owuiModel struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Info *struct {
		BaseModelID *string `json:"base_model_id"`
		Name        string  `json:"name"`
		Params      *struct {
			System json.RawMessage `json:"system"`
		} `json:"params"`
	} `json:"info"`
}

func (m owuiModel) base() string {
	if m.Info != nil && m.Info.BaseModelID != nil && *m.Info.BaseModelID != m.ID {
		return *m.Info.BaseModelID
	}
	return ""
}

func (m owuiModel) name() string {
	switch {
	case m.Name != "":
		return m.Name
	case m.Info != nil && m.Info.Name != "":
		return m.Info.Name
	}
	return m.ID
}

func (m owuiModel) system() string {
	if m.Info == nil || m.Info.Params == nil {
		return ""
	}
	var s string
	if json.Unmarshal(m.Info.Params.System, &s) != nil {
		return ""
	}
	return s
}

// openWebUIURL is OpenWebUI's base URL without a trailing slash.
func (a *API) openWebUIURL() string {
	return strings.TrimRight(a.opts.OpenWebUI, "/")
}

func (a *API) imageURL(id string) string {
	if a.opts.OpenWebUI == "" {
		return ""
	}
	return a.openWebUIURL() + "/api/v1/models/model/profile/image?id=" + url.QueryEscape(id)
}

// fetchModels asks OpenWebUI for its models.
func (a *API) fetchModels(ctx context.Context) ([]owuiModel, error) {
	if a.opts.OpenWebUI == "" {
		return nil, errors.New("no OpenWebUI address is configured")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.openWebUIURL()+"/api/models", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if a.opts.OpenWebUIAPIKey != "" {
		req.Header.Set("Authorization", "Bearer "+a.opts.OpenWebUIAPIKey)
	}
	resp, err := a.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxModelsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading its answer: %w", err)
	}
	if len(raw) > maxModelsBytes {
		return nil, fmt.Errorf("its model list is larger than %d bytes", maxModelsBytes)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("it answered %s%s", resp.Status, detailOf(raw))
	}
	var list struct {
		Data []owuiModel `json:"data"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("its model list is not JSON: %v", err)
	}
	if list.Data == nil {
		return nil, errors.New(`its answer has no "data" list of models`)
	}
	return list.Data, nil
}

// detailOf is ": <message>" from an error body of OpenWebUI or a provider
// ({"detail": ...}, {"error": {"message": ...}}, {"error": "..."},
// {"message": ...} or text), or "" for an empty body.
func detailOf(raw []byte) string {
	var msg string
	if gjson.ValidBytes(raw) {
		j := gjson.ParseBytes(raw)
		for _, path := range []string{"detail", "error.message", "error", "message"} {
			if v := j.Get(path); v.Exists() && v.Type != gjson.Null {
				if v.Type == gjson.String {
					msg = v.Str
				} else {
					msg = v.Raw
				}
				break
			}
		}
	}
	if msg == "" {
		msg = string(raw)
	}
	msg = strings.TrimSpace(msg)
	if r := []rune(msg); len(r) > 500 {
		msg = string(r[:500]) + "…"
	}
	if msg == "" {
		return ""
	}
	return ": " + msg
}

// rowModel is a price row of ours as a model of the list.
func (a *API) rowModel(p store.ModelPrice) modelJSON {
	t := p.UpdatedAt
	name := p.Name
	if name == "" {
		name = p.ID
	}
	return modelJSON{
		ID: p.ID, BaseModelID: p.BaseModelID, Name: name, ImageURL: a.imageURL(p.ID),
		InputPrice: p.Input, OutputPrice: p.Output, PerMsgPrice: p.PerMessage,
		UpdatedAt: &t, Priced: p.Priced,
	}
}

// listModels: GET /api/v1/models — OpenWebUI's models with their prices,
// then the priced models OpenWebUI did not list.
func (a *API) listModels(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rows, err := a.store.ListModelPrices(ctx)
	if err != nil {
		a.storageFailed(w, "list prices", err)
		return
	}
	listed, fetchErr := a.fetchModels(ctx)
	if fetchErr != nil {
		a.log.Warn("could not list OpenWebUI's models", "error", fetchErr)
		known := []modelJSON{}
		for _, p := range rows {
			if p.Priced {
				known = append(known, a.rowModel(p))
			}
		}
		msg := "OpenWebUI could not be reached: " + fetchErr.Error()
		if a.opts.OpenWebUI == "" {
			msg = "OpenWebUI could not be reached: no OpenWebUI address is configured (set the module's openwebui URL and API key)"
		}
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": msg, "models": known})
		return
	}

	byID := make(map[string]store.ModelPrice, len(rows))
	for _, p := range rows {
		byID[p.ID] = p
	}
	// Record the models we have no row for, so admins can price them.
	recorded := false
	seen := make(map[string]bool, len(listed))
	for _, m := range listed {
		if m.ID == "" || seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		if _, ok := byID[m.ID]; ok {
			continue
		}
		if err := a.ledger.RecordModel(ctx, m.ID, m.name(), m.base()); err != nil {
			a.storageFailed(w, "record model", err)
			return
		}
		recorded = true
	}
	if recorded {
		if rows, err = a.store.ListModelPrices(ctx); err != nil {
			a.storageFailed(w, "list prices", err)
			return
		}
		clear(byID)
		for _, p := range rows {
			byID[p.ID] = p
		}
	}

	out := make([]modelJSON, 0, len(listed)+len(rows))
	clear(seen)
	for _, m := range listed {
		if m.ID == "" || seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		row, ok := byID[m.ID]
		base := m.base()
		if base == "" && ok {
			base = row.BaseModelID
		}
		price, err := a.ledger.Price(ctx, m.ID, base)
		if err != nil {
			a.storageFailed(w, "price model", err)
			return
		}
		if price.PerMessage < 0 { // billed by tokens: shown as -1, as stored prices are
			price.PerMessage = money.Units(-1)
		}
		item := modelJSON{
			ID: m.ID, BaseModelID: base, Name: m.name(), ImageURL: a.imageURL(m.ID), SystemPrompt: m.system(),
			InputPrice: price.Input, OutputPrice: price.Output, PerMsgPrice: price.PerMessage,
		}
		if ok {
			t := row.UpdatedAt
			item.UpdatedAt, item.Priced = &t, row.Priced
		}
		out = append(out, item)
	}
	for _, p := range rows {
		if p.Priced && !seen[p.ID] {
			out = append(out, a.rowModel(p))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

type modelRequest struct {
	ModelID string `json:"modelId" validate:"required,max=512"`
}

// errNoBase: a model with no priced base model to copy from.
var errNoBase = errors.New("no priced base model")

// pricedBase finds the priced base model p inherits from: its own
// base_model_id, then the pipe suffix (pricing.BaseCandidates). known, when
// not nil, is consulted before the store.
func (a *API) pricedBase(ctx context.Context, p store.ModelPrice, known map[string]store.ModelPrice) (store.ModelPrice, error) {
	for _, id := range pricing.BaseCandidates(p.ID, p.BaseModelID) {
		base, ok := known[id]
		if !ok {
			var err error
			base, err = a.store.ModelPrice(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return store.ModelPrice{}, err
			}
		}
		if base.Priced {
			return base, nil
		}
	}
	return store.ModelPrice{}, errNoBase
}

// copyBasePrice stores base's price as p's, keeping p's name and base.
func (a *API) copyBasePrice(ctx context.Context, p, base store.ModelPrice) (store.ModelPrice, error) {
	return a.ledger.PutPrice(ctx, store.ModelPrice{
		ID: p.ID, Name: p.Name, BaseModelID: p.BaseModelID,
		Input: base.Input, Output: base.Output, PerMessage: base.PerMessage,
	})
}

// syncPrice: POST /api/v1/models/sync-price {"modelId": "..."} — the
// model's base model's price becomes its own.
func (a *API) syncPrice(w http.ResponseWriter, r *http.Request) {
	var req modelRequest
	if !a.decode(w, r, &req) {
		return
	}
	ctx := r.Context()
	p, err := a.store.ModelPrice(ctx, req.ModelID)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model %q is unknown", req.ModelID))
		return
	}
	if err != nil {
		a.storageFailed(w, "read price", err)
		return
	}
	base, err := a.pricedBase(ctx, p, nil)
	if errors.Is(err, errNoBase) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model %q has no priced base model to copy a price from", req.ModelID))
		return
	}
	if err != nil {
		a.storageFailed(w, "read base price", err)
		return
	}
	saved, err := a.copyBasePrice(ctx, p, base)
	if err != nil {
		a.storageFailed(w, "store price", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true,
		"message": fmt.Sprintf("Copied the price of %s to %s", base.ID, p.ID),
		"data":    priceOut(saved),
	})
}

type syncResult struct {
	ID      string `json:"id"`
	Success bool   `json:"success"`
	Base    string `json:"base_model_id,omitempty"`
	Error   string `json:"error,omitempty"`
}

// syncAllPrices: POST /api/v1/models/sync-all-prices — every derived model
// we know (a row with a base_model_id, or a pipe model whose suffix we
// price) takes its base model's price.
func (a *API) syncAllPrices(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rows, err := a.store.ListModelPrices(ctx)
	if err != nil {
		a.storageFailed(w, "list prices", err)
		return
	}
	known := make(map[string]store.ModelPrice, len(rows))
	for _, p := range rows {
		known[p.ID] = p
	}
	results := []syncResult{}
	synced := 0
	for _, p := range rows {
		base, err := a.pricedBase(ctx, p, known)
		switch {
		case errors.Is(err, errNoBase):
			if p.BaseModelID != "" && p.BaseModelID != p.ID {
				results = append(results, syncResult{ID: p.ID, Base: p.BaseModelID, Error: fmt.Sprintf("base model %q has no price", p.BaseModelID)})
			}
			continue // not a derived model
		case err != nil:
			a.storageFailed(w, "read base price", err)
			return
		}
		saved, err := a.copyBasePrice(ctx, p, base)
		if err != nil {
			a.log.Error("admin storage failure", "what", "store price", "model", p.ID, "error", err)
			results = append(results, syncResult{ID: p.ID, Base: base.ID, Error: "could not store the price"})
			continue
		}
		known[p.ID] = saved
		synced++
		results = append(results, syncResult{ID: p.ID, Success: true, Base: base.ID})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"success":      true,
		"message":      fmt.Sprintf("Synced the prices of %d models", synced),
		"syncedModels": synced,
		"results":      results,
	})
}

// testModel: POST /api/v1/models/test {"modelId": "..."} — a one-line chat
// through OpenWebUI. Success or not, the answer is 200 with
// {success, message, response}, as in the old monitor.
func (a *API) testModel(w http.ResponseWriter, r *http.Request) {
	var req modelRequest
	if !a.decode(w, r, &req) {
		return
	}
	fail := func(msg string) {
		writeJSON(w, http.StatusOK, map[string]any{"success": false, "message": msg, "response": ""})
	}
	if a.opts.OpenWebUI == "" {
		fail("No OpenWebUI address is configured (set the module's openwebui URL and API key)")
		return
	}
	body, _ := json.Marshal(map[string]any{
		"model":    req.ModelID,
		"stream":   false,
		"messages": []map[string]string{{"role": "user", "content": "Reply with the single word: ok"}},
	})
	ctx, cancel := context.WithTimeout(r.Context(), testTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, a.openWebUIURL()+"/api/chat/completions", bytes.NewReader(body))
	if err != nil {
		fail("OpenWebUI's address is not usable: " + err.Error())
		return
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	if a.opts.OpenWebUIAPIKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+a.opts.OpenWebUIAPIKey)
	}
	resp, err := a.opts.Client.Do(hreq)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			fail(fmt.Sprintf("Model %s did not answer within %s", req.ModelID, testTimeout))
			return
		}
		fail("OpenWebUI could not be reached: " + err.Error())
		return
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxModelsBytes))
	if err != nil {
		fail(fmt.Sprintf("Reading OpenWebUI's answer failed (status %s): %v", resp.Status, err))
		return
	}
	if resp.StatusCode/100 != 2 {
		fail(fmt.Sprintf("Model %s failed: OpenWebUI answered %s%s", req.ModelID, resp.Status, detailOf(raw)))
		return
	}
	j := gjson.ParseBytes(raw)
	content := j.Get("choices.0.message.content")
	if !gjson.ValidBytes(raw) || content.Type != gjson.String {
		snippet := strings.TrimPrefix(detailOf(raw), ": ")
		fail(fmt.Sprintf("Model %s failed: OpenWebUI's answer has no assistant message: %s", req.ModelID, snippet))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"success":  true,
		"message":  fmt.Sprintf("Model %s answered", req.ModelID),
		"response": content.Str,
	})
}
