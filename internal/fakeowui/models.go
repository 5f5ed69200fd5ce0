package fakeowui

import (
	"net/http"
	"time"
)

// Model is a model the fake OpenWebUI lists at GET /api/models (§6).
type Model struct {
	ID   string
	Name string // default ID
	// BaseModelID makes a workspace model wrapping that base model; with
	// it (or a SystemPrompt) the entry carries "info".
	BaseModelID  string
	SystemPrompt string // info.params.system
}

// SetModels sets the models GET /api/models lists from now on, in order.
func (o *OpenWebUI) SetModels(models []Model) {
	o.mu.Lock()
	o.models = append([]Model(nil), models...)
	o.mu.Unlock()
}

// listModels is GET /api/models and /api/v1/models (§6): {"data": [...]},
// workspace models with "info" (base_model_id, params, meta without
// profile_image_url), plain connection models without.
func (o *OpenWebUI) listModels(w http.ResponseWriter, r *http.Request, u fakeUser) {
	o.mu.Lock()
	models := append([]Model(nil), o.models...)
	o.mu.Unlock()
	data := make([]map[string]any, 0, len(models))
	created := time.Now().Unix()
	for _, m := range models {
		name := m.Name
		if name == "" {
			name = m.ID
		}
		item := map[string]any{
			"id": m.ID, "name": name, "object": "model", "created": created,
			"owned_by": "openai", "connection_type": "external",
			"tags": []any{}, "actions": []any{}, "filters": []any{},
		}
		if m.BaseModelID != "" || m.SystemPrompt != "" {
			info := map[string]any{
				"id": m.ID, "user_id": u.id, "name": name,
				"meta": map[string]any{
					"description":  nil,
					"capabilities": map[string]any{"vision": true, "usage": true},
				},
				"is_active": true, "updated_at": created, "created_at": created,
			}
			if m.BaseModelID != "" {
				info["base_model_id"] = m.BaseModelID
				item["preset"] = true
			} else {
				info["base_model_id"] = nil
			}
			if m.SystemPrompt != "" {
				info["params"] = map[string]any{"system": m.SystemPrompt}
			} else {
				info["params"] = map[string]any{}
			}
			item["info"] = info
		} else {
			item["openai"] = map[string]any{"id": m.ID, "object": "model", "owned_by": "openai"}
		}
		data = append(data, item)
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data})
}
