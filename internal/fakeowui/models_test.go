package fakeowui

import (
	"testing"

	"github.com/tidwall/gjson"
)

func TestOpenWebUIModels(t *testing.T) {
	o := NewOpenWebUI(t, nil)
	_, key := o.AddUser("admin", "admin@example.com", "Admin", "admin")
	if resp := get(t, o.URL()+"/api/models"); resp.StatusCode != 401 {
		t.Fatalf("no credential: %d", resp.StatusCode)
	}
	resp := get(t, o.URL()+"/api/models", "Authorization", "Bearer "+key)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 200 || !j.Get("data").IsArray() || j.Get("data.#").Int() != 0 {
		t.Fatalf("empty list: %d %s", resp.StatusCode, j.Raw)
	}
	o.SetModels([]Model{
		{ID: "gpt-4o"},
		{ID: "helper", Name: "Helper", BaseModelID: "gpt-4o", SystemPrompt: "Be brief."},
	})
	for _, path := range []string{"/api/models", "/api/v1/models"} {
		resp := get(t, o.URL()+path, "Authorization", "Bearer "+key)
		j := gjson.Parse(readAll(t, resp))
		if resp.StatusCode != 200 || j.Get("data.#").Int() != 2 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, j.Raw)
		}
		plain, ws := j.Get("data.0"), j.Get("data.1")
		if plain.Get("id").Str != "gpt-4o" || plain.Get("name").Str != "gpt-4o" || plain.Get("object").Str != "model" ||
			plain.Get("owned_by").Str != "openai" || plain.Get("info").Exists() {
			t.Errorf("plain model %s", plain.Raw)
		}
		if ws.Get("id").Str != "helper" || ws.Get("name").Str != "Helper" || ws.Get("info.id").Str != "helper" ||
			ws.Get("info.base_model_id").Str != "gpt-4o" || ws.Get("info.name").Str != "Helper" ||
			ws.Get("info.params.system").Str != "Be brief." || !ws.Get("info.meta").IsObject() ||
			ws.Get("info.meta.profile_image_url").Exists() {
			t.Errorf("workspace model %s", ws.Raw)
		}
	}
}
