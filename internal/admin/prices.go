package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/openwebui-monitor/owmon/internal/body"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

type priceUpdate struct {
	ID          string        `json:"id" validate:"required,max=512"`
	InputPrice  *money.Amount `json:"input_price" validate:"required"`
	OutputPrice *money.Amount `json:"output_price" validate:"required"`
	PerMsgPrice *money.Amount `json:"per_msg_price"` // absent: bill by tokens
}

type priceResult struct {
	ID      string     `json:"id"`
	Success bool       `json:"success"`
	Data    *priceJSON `json:"data,omitempty"`
	Error   string     `json:"error,omitempty"`
}

type priceJSON struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	BaseModelID string       `json:"base_model_id"`
	InputPrice  money.Amount `json:"input_price"`
	OutputPrice money.Amount `json:"output_price"`
	PerMsgPrice money.Amount `json:"per_msg_price"`
	Priced      bool         `json:"priced"`
	UpdatedAt   time.Time    `json:"updated_at"`
}

func priceOut(p store.ModelPrice) priceJSON {
	return priceJSON{p.ID, p.Name, p.BaseModelID, p.Input, p.Output, p.PerMessage, p.Priced, p.UpdatedAt}
}

// updatePrices: POST /api/v1/models/price with {"updates": [...]} or a bare
// list. Every item gets its own result; an invalid item is reported, never
// skipped silently, and does not stop the others.
func (a *API) updatePrices(w http.ResponseWriter, r *http.Request) {
	raw, err := body.Read(w, r, a.maxBody, a.opts.BodyTimeout)
	if errors.Is(err, body.ErrTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", a.maxBody))
		return
	}
	if errors.Is(err, body.ErrTimeout) {
		writeError(w, http.StatusRequestTimeout, fmt.Sprintf("request body not received within %v (body_timeout)", a.opts.BodyTimeout))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var items []json.RawMessage
	var wrapped struct {
		Updates []json.RawMessage `json:"updates"`
	}
	if err := json.Unmarshal(raw, &items); err != nil {
		if err := json.Unmarshal(raw, &wrapped); err != nil || wrapped.Updates == nil {
			writeError(w, http.StatusBadRequest, `body: expected {"updates": [...]} or a list of {id, input_price, output_price, per_msg_price}`)
			return
		}
		items = wrapped.Updates
	}
	results := make([]priceResult, len(items))
	updated := 0
	for i, item := range items {
		results[i] = a.updatePrice(r, item)
		if results[i].Success {
			updated++
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"success": updated == len(items),
		"message": fmt.Sprintf("Successfully updated prices of %d models", updated),
		"results": results,
	})
}

func (a *API) updatePrice(r *http.Request, item json.RawMessage) priceResult {
	var u priceUpdate
	if err := decodeJSON(item, &u, false); err != nil {
		var id struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(item, &id)
		return priceResult{ID: id.ID, Error: "invalid item: " + err.Error()}
	}
	res := priceResult{ID: u.ID}
	if err := a.validate.Struct(u); err != nil {
		res.Error = validationText(err)
		return res
	}
	per := money.Units(-1)
	if u.PerMsgPrice != nil {
		per = *u.PerMsgPrice
	}
	switch {
	case *u.InputPrice < 0:
		res.Error = "input_price: must not be negative"
		return res
	case *u.OutputPrice < 0:
		res.Error = "output_price: must not be negative"
		return res
	}
	p := store.ModelPrice{ID: u.ID, Name: u.ID, Input: *u.InputPrice, Output: *u.OutputPrice, PerMessage: per}
	if old, err := a.store.ModelPrice(r.Context(), u.ID); err == nil {
		p.Name, p.BaseModelID = old.Name, old.BaseModelID
	}
	saved, err := a.ledger.PutPrice(r.Context(), p)
	if err != nil {
		res.Error = "could not store the price"
		return res
	}
	out := priceOut(saved)
	res.Success, res.Data = true, &out
	return res
}

// listPrices: GET /api/v1/models/prices — every price row we keep.
func (a *API) listPrices(w http.ResponseWriter, r *http.Request) {
	prices, err := a.store.ListModelPrices(r.Context())
	if err != nil {
		a.storageFailed(w, "list prices", err)
		return
	}
	out := make([]priceJSON, len(prices))
	for i, p := range prices {
		out[i] = priceOut(p)
	}
	writeJSON(w, http.StatusOK, out)
}
