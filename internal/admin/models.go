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

	"github.com/openwebui-monitor/owmon/internal/ledger"
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
	// Where the price comes from: "own", "base" (price_source_model's
	// price) or "default", resolved as charges are.
	PriceSource      ledger.PriceSourceKind `json:"price_source"`
	PriceSourceModel string                 `json:"price_source_model,omitempty"`
	Listed           bool                   `json:"listed"` // OpenWebUI serves it
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

// listTimeout bounds asking OpenWebUI for its models.
const listTimeout = 10 * time.Second

// errNotConfigured: no OpenWebUI address to ask.
var errNotConfigured = errors.New("no OpenWebUI address is configured (set the module's openwebui URL and API key)")

// modelEntry is one model of the merged list: OpenWebUI's model or a row of
// ours, with the price it is charged at and where that price comes from.
type modelEntry struct {
	ID, Name, BaseModelID, SystemPrompt string
	Listed                              bool              // OpenWebUI serves it
	Row                                 *store.ModelPrice // our row, if any
	Price                               pricing.Price
	Source                              ledger.PriceSource
}

// owuiModels asks OpenWebUI for its models, within listTimeout.
func (a *API) owuiModels(ctx context.Context) ([]owuiModel, error) {
	if a.opts.OpenWebUI == "" {
		return nil, errNotConfigured
	}
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	return a.fetchModels(ctx)
}

// mergedModels is every model OpenWebUI serves (those we have no row for
// are recorded, unpriced, so that admins can price them and charges find
// their base), then the rows of ours it does not list (see seenOnly). When
// OpenWebUI cannot be asked, fetchErr says why and the list is our rows. Each entry's price is
// resolved by the ledger's rule, with OpenWebUI's base_model_id (else our
// row's) as its base.
func (a *API) mergedModels(ctx context.Context) (entries []modelEntry, fetchErr, err error) {
	rows, err := a.store.ListModelPrices(ctx)
	if err != nil {
		return nil, nil, err
	}
	listed, fetchErr := a.owuiModels(ctx)
	if fetchErr != nil {
		a.log.Warn("could not list OpenWebUI's models", "error", fetchErr)
		listed = nil
	}
	byID := make(map[string]store.ModelPrice, len(rows))
	for _, p := range rows {
		byID[p.ID] = p
	}
	recorded := false
	seen := make(map[string]bool, len(listed))
	for _, m := range listed {
		if m.ID == "" || seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		// A row we have is left alone, unless it is unpriced and names no
		// base while OpenWebUI names one: the meters read the base from
		// the row, so it is written there (RecordModel does just that).
		if p, ok := byID[m.ID]; ok && (p.Priced || p.BaseModelID != "" || m.base() == "") {
			continue
		}
		if err := a.ledger.RecordModel(ctx, m.ID, m.name(), m.base()); err != nil {
			return nil, fetchErr, err
		}
		recorded = true
	}
	if recorded {
		if rows, err = a.store.ListModelPrices(ctx); err != nil {
			return nil, fetchErr, err
		}
		clear(byID)
		for _, p := range rows {
			byID[p.ID] = p
		}
	}
	table := a.ledger.PriceTable(rows)
	entries = make([]modelEntry, 0, len(listed)+len(rows))
	clear(seen)
	for _, m := range listed {
		if m.ID == "" || seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		e := modelEntry{ID: m.ID, Name: m.name(), BaseModelID: m.base(), SystemPrompt: m.system(), Listed: true}
		if row, ok := byID[m.ID]; ok {
			e.Row = &row
			if e.BaseModelID == "" {
				e.BaseModelID = row.BaseModelID
			}
		}
		e.Price, e.Source = table.Source(e.ID, e.BaseModelID)
		entries = append(entries, e)
	}
	for _, p := range rows {
		if seen[p.ID] {
			continue
		}
		name := p.Name
		if name == "" {
			name = p.ID
		}
		e := modelEntry{ID: p.ID, Name: name, BaseModelID: p.BaseModelID, Row: &p}
		e.Price, e.Source = table.Source(e.ID, e.BaseModelID)
		entries = append(entries, e)
	}
	return entries, fetchErr, nil
}

// seenOnly: an unpriced row of ours that OpenWebUI does not list, a model
// only seen in traffic. Lists leave these out while OpenWebUI answers.
func (e modelEntry) seenOnly() bool { return !e.Listed && e.Row != nil && !e.Row.Priced }

// json is the entry as an item of GET /api/v1/models.
func (e modelEntry) json(a *API) modelJSON {
	price := e.Price
	if price.PerMessage < 0 { // billed by tokens: shown as -1, as stored prices are
		price.PerMessage = money.Units(-1)
	}
	out := modelJSON{
		ID: e.ID, BaseModelID: e.BaseModelID, Name: e.Name, ImageURL: a.imageURL(e.ID), SystemPrompt: e.SystemPrompt,
		InputPrice: price.Input, OutputPrice: price.Output, PerMsgPrice: price.PerMessage,
		PriceSource: e.Source.Kind, PriceSourceModel: e.Source.From, Listed: e.Listed,
	}
	if e.Row != nil {
		t := e.Row.UpdatedAt
		out.UpdatedAt, out.Priced = &t, e.Row.Priced
	}
	return out
}

// listModels: GET /api/v1/models — OpenWebUI's models with the prices they
// are charged at, then the priced models OpenWebUI did not list; 502 with
// the priced models we know when OpenWebUI cannot be asked.
func (a *API) listModels(w http.ResponseWriter, r *http.Request) {
	entries, fetchErr, err := a.mergedModels(r.Context())
	if err != nil {
		a.storageFailed(w, "list models", err)
		return
	}
	out := make([]modelJSON, 0, len(entries))
	for _, e := range entries {
		if !e.seenOnly() {
			out = append(out, e.json(a))
		}
	}
	if fetchErr != nil {
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": "OpenWebUI could not be reached: " + fetchErr.Error(), "models": out})
		return
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

// derived is the price row a sync copies into for an entry: our row (or a
// new one named as OpenWebUI names the model) with the entry's base, which
// prefers OpenWebUI's info.base_model_id to the one we stored.
func (e modelEntry) derived() store.ModelPrice {
	p := store.ModelPrice{ID: e.ID, Name: e.Name}
	if e.Row != nil {
		p = *e.Row
		if p.Name == "" {
			p.Name = e.Name
		}
	}
	p.BaseModelID = e.BaseModelID
	return p
}

// syncPrice: POST /api/v1/models/sync-price {"modelId": "..."} — the
// model's base model's price becomes its own. The base is OpenWebUI's
// info.base_model_id when OpenWebUI lists the model, else the one we
// stored, then the pipe suffix.
func (a *API) syncPrice(w http.ResponseWriter, r *http.Request) {
	var req modelRequest
	if !a.decode(w, r, &req) {
		return
	}
	ctx := r.Context()
	entries, _, err := a.mergedModels(ctx)
	if err != nil {
		a.storageFailed(w, "list models", err)
		return
	}
	var entry *modelEntry
	for i := range entries {
		if entries[i].ID == req.ModelID {
			entry = &entries[i]
			break
		}
	}
	if entry == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model %q is unknown", req.ModelID))
		return
	}
	p := entry.derived()
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
// (OpenWebUI's model with an info.base_model_id, a row of ours with a
// base_model_id, or a pipe model whose suffix we price) takes its base
// model's price. When OpenWebUI cannot be asked, our rows alone are synced
// and openwebui_error says why.
func (a *API) syncAllPrices(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	entries, fetchErr, err := a.mergedModels(ctx)
	if err != nil {
		a.storageFailed(w, "list models", err)
		return
	}
	known := make(map[string]store.ModelPrice, len(entries))
	for _, e := range entries {
		if e.Row != nil {
			known[e.ID] = *e.Row
		}
	}
	results := []syncResult{}
	synced := 0
	for _, e := range entries {
		p := e.derived()
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
	out := map[string]any{
		"success":      true,
		"message":      fmt.Sprintf("Synced the prices of %d models", synced),
		"syncedModels": synced,
		"results":      results,
	}
	if fetchErr != nil {
		out["openwebui_error"] = "OpenWebUI could not be reached: " + fetchErr.Error()
		out["message"] = fmt.Sprintf("Synced the prices of %d models (OpenWebUI could not be reached: only the models stored here were synced)", synced)
	}
	writeJSON(w, http.StatusOK, out)
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

// modelsPageData is what the models page shows.
type modelsPageData struct {
	// OpenWebUI is "listed" (the list is OpenWebUI's models with ours),
	// "unconfigured" (no openwebui address) or "unreachable"; Problem is
	// what went wrong, and NoKey says no openwebui_api_key is set.
	OpenWebUI string
	Problem   string
	NoKey     bool
	Listed    int // models OpenWebUI serves
	Rows      []modelRow
}

// modelRow is a row of the models page: the price the model is charged at,
// as the inputs show it, and where it comes from.
type modelRow struct {
	ID, Name, BaseModelID string
	Input, Output         string // effective, per 1M tokens
	PerMessage            string // effective flat price; "": billed by tokens
	Source                string // "own", "base" or "default"
	SourceModel           string // for "base": the model whose price it is
	Listed                bool   // OpenWebUI serves it
	Syncable              bool   // it has a base model to copy a price from
}

// modelsPage gathers the models page: OpenWebUI's models merged with our
// rows, or our rows alone (seen or priced) when OpenWebUI cannot be asked.
func (a *API) modelsPage(ctx context.Context) (*modelsPageData, error) {
	entries, fetchErr, err := a.mergedModels(ctx)
	if err != nil {
		return &modelsPageData{OpenWebUI: "listed"}, err
	}
	d := &modelsPageData{OpenWebUI: "listed", NoKey: a.opts.OpenWebUIAPIKey == ""}
	switch {
	case errors.Is(fetchErr, errNotConfigured):
		d.OpenWebUI = "unconfigured"
	case fetchErr != nil:
		d.OpenWebUI, d.Problem = "unreachable", fetchErr.Error()
	}
	d.Rows = make([]modelRow, 0, len(entries))
	for _, e := range entries {
		if fetchErr == nil && e.seenOnly() {
			continue // when OpenWebUI cannot be asked, we list all we know
		}
		row := modelRow{
			ID: e.ID, Name: e.Name, BaseModelID: e.BaseModelID,
			Input: e.Price.Input.String(), Output: e.Price.Output.String(),
			Source: string(e.Source.Kind), SourceModel: e.Source.From, Listed: e.Listed,
			Syncable: len(pricing.BaseCandidates(e.ID, e.BaseModelID)) > 0,
		}
		if e.Price.PerMessageBilling() {
			row.PerMessage = e.Price.PerMessage.String()
		}
		if e.Listed {
			d.Listed++
		}
		d.Rows = append(d.Rows, row)
	}
	return d, nil
}
