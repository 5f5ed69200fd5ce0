package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// owuiEnv is an env whose API talks to a fake OpenWebUI, relaying chats to
// a fake provider, with an admin's API key.
type owuiEnv struct {
	*env
	owui     *fakeowui.OpenWebUI
	provider *fakeowui.Provider
	key      string
}

func withOpenWebUI(t *testing.T, e *env) *owuiEnv {
	t.Helper()
	p := fakeowui.NewProvider(t)
	o := fakeowui.NewOpenWebUI(t, p)
	_, key := o.AddUser("admin", "admin@example.com", "Admin", "admin")
	return &owuiEnv{env: e.withAPI(t, o.URL(), key), owui: o, provider: p, key: key}
}

// withAPI is e with an API that asks openwebui with key.
func (e *env) withAPI(t *testing.T, openwebui, key string) *env {
	t.Helper()
	srv := httptest.NewServer(New(e.l, Options{
		AccessToken: token, MaxBodyBytes: 1 << 20, OpenWebUI: openwebui, OpenWebUIAPIKey: key,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}))
	t.Cleanup(srv.Close)
	return &env{st: e.st, l: e.l, srv: srv}
}

// do is call without the failure on 5xx answers.
func (e *env) do(t *testing.T, method, path, body string) (int, gjson.Result) {
	t.Helper()
	status, b := e.raw(t, method, path, body)
	if !gjson.Valid(b) {
		t.Fatalf("%s %s: not JSON: %d %s", method, path, status, b)
	}
	return status, gjson.Parse(b)
}

func (e *env) price(t *testing.T, id, base, in, out, per string) {
	t.Helper()
	if _, err := e.st.PutModelPrice(context.Background(), store.ModelPrice{
		ID: id, Name: id, BaseModelID: base, Input: amount(t, in), Output: amount(t, out), PerMessage: amount(t, per),
	}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) record(t *testing.T, id, base string) {
	t.Helper()
	if err := e.st.RecordModel(context.Background(), id, id, base); err != nil {
		t.Fatal(err)
	}
}

// byID indexes a JSON list of models.
func byID(t *testing.T, list gjson.Result) map[string]gjson.Result {
	t.Helper()
	out := map[string]gjson.Result{}
	for _, m := range list.Array() {
		if _, dup := out[m.Get("id").Str]; dup {
			t.Fatalf("model %s listed twice: %s", m.Get("id").Str, list.Raw)
		}
		out[m.Get("id").Str] = m
	}
	return out
}

func wantPrices(t *testing.T, m gjson.Result, in, out, per string, priced bool) {
	t.Helper()
	if m.Get("input_price").Raw != in || m.Get("output_price").Raw != out || m.Get("per_msg_price").Raw != per || m.Get("priced").Bool() != priced {
		t.Errorf("want %s/%s/%s priced=%v: %s", in, out, per, priced, m.Raw)
	}
}

func TestModelsList(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		o := withOpenWebUI(t, e)
		e.price(t, "gpt-4o", "", "2.5", "10", "-1")
		e.price(t, "own", "gpt-4o", "7", "8.000000001", "-1") // a workspace model with a price of its own
		e.price(t, "flat", "", "0", "0", "0.02")              // priced, not listed by OpenWebUI
		e.record(t, "seen-once", "")                          // unpriced, not listed: left out
		o.owui.SetModels([]fakeowui.Model{
			{ID: "gpt-4o"},
			{ID: "helper", Name: "Helper", BaseModelID: "gpt-4o", SystemPrompt: "Be brief."},
			{ID: "own", Name: "Own", BaseModelID: "gpt-4o"},
			{ID: "my_pipe.gpt-4o", Name: "Pipe"},
			{ID: "llama3:latest"},
		})

		status, r := o.do(t, "GET", "/api/v1/models", "")
		if status != 200 || !r.IsArray() || r.Get("#").Int() != 6 {
			t.Fatalf("list %d %s", status, r.Raw)
		}
		if r.Get("0.id").Str != "gpt-4o" || r.Get("4.id").Str != "llama3:latest" || r.Get("5.id").Str != "flat" {
			t.Errorf("order: OpenWebUI's models first, then ours: %s", r.Raw)
		}
		m := byID(t, r)
		wantPrices(t, m["gpt-4o"], "2.5", "10", "-1", true)
		wantPrices(t, m["helper"], "2.5", "10", "-1", false) // inherited from its base
		wantPrices(t, m["own"], "7", "8.000000001", "-1", true)
		wantPrices(t, m["my_pipe.gpt-4o"], "2.5", "10", "-1", false)         // the pipe suffix
		wantPrices(t, m["llama3:latest"], "1000000", "1000000", "-1", false) // the defaults (eachBackend's; per message -1 nano-unit, shown as -1)
		wantPrices(t, m["flat"], "0", "0", "0.02", true)
		if _, ok := m["seen-once"]; ok {
			t.Errorf("an unpriced model OpenWebUI does not list is shown: %s", r.Raw)
		}
		h := m["helper"]
		if h.Get("name").Str != "Helper" || h.Get("base_model_id").Str != "gpt-4o" || h.Get("system_prompt").Str != "Be brief." ||
			h.Get("imageUrl").Str != o.owui.URL()+"/api/v1/models/model/profile/image?id=helper" {
			t.Errorf("helper %s", h.Raw)
		}
		if got := m["llama3:latest"].Get("imageUrl").Str; got != o.owui.URL()+"/api/v1/models/model/profile/image?id="+url.QueryEscape("llama3:latest") || !strings.Contains(got, "llama3%3Alatest") {
			t.Errorf("image URL not escaped: %s", got)
		}
		if g := m["gpt-4o"]; g.Get("system_prompt").Str != "" || g.Get("base_model_id").Str != "" || g.Get("name").Str != "gpt-4o" {
			t.Errorf("plain model %s", g.Raw)
		}
		for id, x := range m {
			if x.Get("updated_at").Type != gjson.String {
				t.Errorf("%s: updated_at %s", id, x.Raw)
			}
		}

		// OpenWebUI was asked with the admin key.
		asked := false
		for _, req := range o.owui.Requests() {
			if req.Path == "/api/models" {
				asked = req.Header.Get("Authorization") == "Bearer "+o.key
			}
		}
		if !asked {
			t.Error("GET /api/models was not sent with the API key")
		}

		// The models we had no row for are recorded, unpriced, with their base.
		for id, base := range map[string]string{"helper": "gpt-4o", "my_pipe.gpt-4o": "", "llama3:latest": ""} {
			p, err := e.st.ModelPrice(ctx, id)
			if err != nil || p.Priced || p.BaseModelID != base {
				t.Errorf("%s recorded as %+v %v", id, p, err)
			}
		}
		if p, _ := e.st.ModelPrice(ctx, "helper"); p.Name != "Helper" {
			t.Errorf("helper recorded as %q", p.Name)
		}
		if p, _ := e.st.ModelPrice(ctx, "own"); !p.Priced || p.Input != amount(t, "7") {
			t.Errorf("a priced row was touched: %+v", p)
		}

		// A wrong key: OpenWebUI answers 401, we answer 502 with what we know.
		bad := e.withAPI(t, o.owui.URL(), "sk-wrong")
		status, r = bad.do(t, "GET", "/api/v1/models", "")
		if status != 502 || !strings.Contains(r.Get("error").Str, "OpenWebUI could not be reached") || !strings.Contains(r.Get("error").Str, "401") {
			t.Fatalf("wrong key %d %s", status, r.Raw)
		}
		if known := byID(t, r.Get("models")); len(known) != 3 || known["own"].Get("input_price").Raw != "7" || known["flat"].Get("per_msg_price").Raw != "0.02" || !known["gpt-4o"].Get("priced").Bool() {
			t.Fatalf("known models %s", r.Raw)
		}

		// No OpenWebUI configured.
		status, r = e.do(t, "GET", "/api/v1/models", "")
		if status != 502 || !strings.Contains(r.Get("error").Str, "configured") || r.Get("models.#").Int() != 3 {
			t.Fatalf("no OpenWebUI %d %s", status, r.Raw)
		}

		// OpenWebUI down.
		o.owui.Close()
		status, r = o.do(t, "GET", "/api/v1/models", "")
		if status != 502 || !strings.HasPrefix(r.Get("error").Str, "OpenWebUI could not be reached: ") || r.Get("models.#").Int() != 3 {
			t.Fatalf("OpenWebUI down %d %s", status, r.Raw)
		}
		if ids := byID(t, r.Get("models")); ids["gpt-4o"].Get("input_price").Raw != "2.5" {
			t.Fatalf("known models %s", r.Raw)
		}
	})
}

func TestModelsEmptyListIsAList(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		o := withOpenWebUI(t, e)
		status, r := o.do(t, "GET", "/api/v1/models", "")
		if status != 200 || r.Raw != "[]" {
			t.Fatalf("%d %s", status, r.Raw)
		}
	})
}

func TestModelsSyncPrice(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.price(t, "gpt-4o", "", "2.5", "10", "-1")
		e.price(t, "claude", "", "0", "0", "0.02")
		if err := e.st.RecordModel(ctx, "helper", "Helper", "gpt-4o"); err != nil {
			t.Fatal(err)
		}
		e.record(t, "pipe.claude", "")
		e.record(t, "orphan", "nobody")
		e.record(t, "plain", "")

		// The ledger has priced helper by inheritance; a base price changed
		// behind its back must reach it once synced.
		if p, _ := e.l.Price(ctx, "helper", ""); p.Input != amount(t, "2.5") {
			t.Fatalf("inherited %s", p.Input)
		}
		e.price(t, "gpt-4o", "", "3.123456789", "12", "-1")

		status, r, _ := e.call(t, "POST", "/api/v1/models/sync-price", `{"modelId": "helper"}`)
		if status != 200 || !r.Get("success").Bool() || r.Get("data.id").Str != "helper" || r.Get("data.name").Str != "Helper" ||
			r.Get("data.base_model_id").Str != "gpt-4o" || !r.Get("data.priced").Bool() {
			t.Fatalf("sync helper %d %s", status, r.Raw)
		}
		wantPrices(t, r.Get("data"), "3.123456789", "12", "-1", true)
		p, err := e.st.ModelPrice(ctx, "helper")
		if err != nil || !p.Priced || p.Input != amount(t, "3.123456789") || p.Output != amount(t, "12") || p.PerMessage != money.Units(-1) ||
			p.Name != "Helper" || p.BaseModelID != "gpt-4o" {
			t.Fatalf("stored %+v %v", p, err)
		}
		if p, _ := e.l.Price(ctx, "helper", ""); p.Input != amount(t, "3.123456789") {
			t.Fatalf("the ledger still prices helper at %s", p.Input)
		}

		for body, want := range map[string]string{
			`{"modelId": "ghost"}`:  "unknown",
			`{"modelId": "orphan"}`: "no priced base",
			`{"modelId": "plain"}`:  "no priced base",
		} {
			status, r, _ := e.call(t, "POST", "/api/v1/models/sync-price", body)
			if status != 404 || !strings.Contains(r.Get("error").Str, want) {
				t.Errorf("%s: %d %s", body, status, r.Raw)
			}
		}
		if p, _ := e.st.ModelPrice(ctx, "orphan"); p.Priced {
			t.Error("orphan got a price")
		}

		// Everything derived at once.
		e.price(t, "gpt-4o", "", "4", "16", "-1")
		status, r, _ = e.call(t, "POST", "/api/v1/models/sync-all-prices", ``)
		if status != 200 || !r.Get("success").Bool() || r.Get("syncedModels").Int() != 2 {
			t.Fatalf("sync all %d %s", status, r.Raw)
		}
		res := byID(t, r.Get("results"))
		if len(res) != 3 || !res["helper"].Get("success").Bool() || !res["pipe.claude"].Get("success").Bool() ||
			res["orphan"].Get("success").Bool() || !strings.Contains(res["orphan"].Get("error").Str, "nobody") {
			t.Fatalf("results %s", r.Raw)
		}
		for id, want := range map[string][3]string{"helper": {"4", "16", "-1"}, "pipe.claude": {"0", "0", "0.02"}} {
			p, err := e.st.ModelPrice(ctx, id)
			if err != nil || !p.Priced || p.Input != amount(t, want[0]) || p.Output != amount(t, want[1]) || p.PerMessage != amount(t, want[2]) {
				t.Errorf("%s: %+v %v", id, p, err)
			}
		}
		if p, _ := e.l.Price(ctx, "pipe.claude", ""); p.PerMessage != amount(t, "0.02") {
			t.Errorf("ledger prices pipe.claude at %+v", p)
		}
		for _, id := range []string{"plain", "orphan"} {
			if p, _ := e.st.ModelPrice(ctx, id); p.Priced {
				t.Errorf("%s got a price", id)
			}
		}
		if p, _ := e.st.ModelPrice(ctx, "gpt-4o"); p.Input != amount(t, "4") {
			t.Errorf("a base model changed: %+v", p)
		}
	})
}

func TestModelsValidation(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		for _, path := range []string{"/api/v1/models/sync-price", "/api/v1/models/test"} {
			for body, want := range map[string]struct {
				status int
				field  string
			}{
				`{}`:              {422, "modelId"},
				`{"modelId": ""}`: {422, "modelId"},
				`{"modelId": "` + strings.Repeat("m", 513) + `"}`: {422, "modelId"},
				`{"modelId": 5}`:      {400, "modelId"},
				`{"model": "gpt-4o"}`: {400, "model"},
				`not json`:            {400, "invalid JSON"},
			} {
				status, r, _ := e.call(t, "POST", path, body)
				if status != want.status || !strings.Contains(r.Get("error").Str, want.field) {
					t.Errorf("%s %.40s: %d %s", path, body, status, r.Raw)
				}
			}
		}
	})
}

func TestModelTest(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		o := withOpenWebUI(t, e)
		status, r, _ := o.call(t, "POST", "/api/v1/models/test", `{"modelId": "gpt-4o"}`)
		if status != 200 || !r.Get("success").Bool() || r.Get("response").Str != "Hello from the fake provider." || r.Get("message").Str == "" {
			t.Fatalf("test %d %s", status, r.Raw)
		}
		reqs := o.provider.Requests()
		if len(reqs) != 1 {
			t.Fatalf("provider saw %d requests", len(reqs))
		}
		sent := gjson.ParseBytes(reqs[0].Body)
		if sent.Get("model").Str != "gpt-4o" || sent.Get("stream").Type != gjson.False ||
			sent.Get("messages.0.role").Str != "user" || sent.Get("messages.0.content").Str != "Reply with the single word: ok" {
			t.Fatalf("sent %s", sent.Raw)
		}
		var auth string
		for _, req := range o.owui.Requests() {
			if req.Path == "/api/chat/completions" {
				auth = req.Header.Get("Authorization")
			}
		}
		if auth != "Bearer "+o.key {
			t.Fatalf("OpenWebUI saw Authorization %q", auth)
		}

		// The provider fails: 200 with success false, OpenWebUI's status and
		// detail (OpenWebUI answers a failed call outside a chat with 400).
		o.provider.SetReply(fakeowui.Reply{Status: 500, Message: "upstream exploded"})
		status, r, _ = o.call(t, "POST", "/api/v1/models/test", `{"modelId": "gpt-4o"}`)
		if status != 200 || r.Get("success").Bool() || r.Get("response").Str != "" || !r.Get("response").Exists() ||
			!strings.Contains(r.Get("message").Str, "400") || !strings.Contains(r.Get("message").Str, "upstream exploded") {
			t.Fatalf("failure %d %s", status, r.Raw)
		}

		// OpenWebUI refuses the key.
		bad := e.withAPI(t, o.owui.URL(), "sk-wrong")
		status, r, _ = bad.call(t, "POST", "/api/v1/models/test", `{"modelId": "gpt-4o"}`)
		if status != 200 || r.Get("success").Bool() || !strings.Contains(r.Get("message").Str, "401") ||
			!strings.Contains(r.Get("message").Str, fakeowui.DetailSessionExpired) {
			t.Fatalf("wrong key %d %s", status, r.Raw)
		}

		// No OpenWebUI configured, and OpenWebUI down.
		status, r, _ = e.call(t, "POST", "/api/v1/models/test", `{"modelId": "gpt-4o"}`)
		if status != 200 || r.Get("success").Bool() || !strings.Contains(r.Get("message").Str, "configured") {
			t.Fatalf("not configured %d %s", status, r.Raw)
		}
		o.owui.Close()
		status, r, _ = o.call(t, "POST", "/api/v1/models/test", `{"modelId": "gpt-4o"}`)
		if status != 200 || r.Get("success").Bool() || !strings.Contains(r.Get("message").Str, "could not be reached") {
			t.Fatalf("down %d %s", status, r.Raw)
		}
	})
}

// sevenModels is what a fresh OpenWebUI might serve: plain models, workspace
// models on a base, and a pipe model.
var sevenModels = []fakeowui.Model{
	{ID: "gpt-4o"}, {ID: "gpt-4o-mini"}, {ID: "claude-3"}, {ID: "llama3:latest"},
	{ID: "helper", Name: "Helper", BaseModelID: "gpt-4o"},
	{ID: "writer", Name: "Writer", BaseModelID: "claude-3", SystemPrompt: "Write well."},
	{ID: "my_pipe.claude-3", Name: "Pipe"},
}

func wantSource(t *testing.T, m gjson.Result, kind, from string) {
	t.Helper()
	if m.Get("price_source").Str != kind || m.Get("price_source_model").Str != from {
		t.Errorf("%s: source %q %q, want %q %q: %s", m.Get("id").Str, m.Get("price_source").Str, m.Get("price_source_model").Str, kind, from, m.Raw)
	}
}

// TestModelsFromOpenWebUIWithSources: a fresh install lists every model
// OpenWebUI serves, each with the price it is charged at and where that
// price comes from, as the ledger resolves it; syncs use OpenWebUI's
// base_model_id even when our row has none.
func TestModelsFromOpenWebUIWithSources(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		o := withOpenWebUI(t, e)
		o.owui.SetModels(sevenModels)

		// Fresh: nothing priced, every model at the default.
		status, r := o.do(t, "GET", "/api/v1/models", "")
		if status != 200 || r.Get("#").Int() != 7 {
			t.Fatalf("fresh list %d %s", status, r.Raw)
		}
		for _, m := range r.Array() {
			wantPrices(t, m, "1000000", "1000000", "-1", false)
			wantSource(t, m, "default", "")
			if !m.Get("listed").Bool() {
				t.Errorf("not listed: %s", m.Raw)
			}
		}

		// The listing recorded the models; the admin prices two base models.
		if p, err := e.st.ModelPrice(ctx, "helper"); err != nil || p.BaseModelID != "gpt-4o" || p.Priced {
			t.Fatalf("helper recorded as %+v %v", p, err)
		}
		e.price(t, "gpt-4o", "", "2.5", "10", "-1")
		e.price(t, "claude-3", "", "0", "0", "0.02")
		e.record(t, "seen-once", "")
		status, r = o.do(t, "GET", "/api/v1/models", "")
		if status != 200 || r.Get("#").Int() != 7 {
			t.Fatalf("list %d %s", status, r.Raw)
		}
		m := byID(t, r)
		wantSource(t, m["gpt-4o"], "own", "")
		wantSource(t, m["helper"], "base", "gpt-4o")
		wantPrices(t, m["helper"], "2.5", "10", "-1", false)
		wantSource(t, m["writer"], "base", "claude-3")
		wantPrices(t, m["writer"], "0", "0", "0.02", false)
		wantSource(t, m["my_pipe.claude-3"], "base", "claude-3")
		wantSource(t, m["llama3:latest"], "default", "")
		wantSource(t, m["gpt-4o-mini"], "default", "")
		// Each is what the ledger charges.
		for id, x := range m {
			p, src, err := e.l.PriceSource(ctx, id, x.Get("base_model_id").Str)
			if err != nil || string(src.Kind) != x.Get("price_source").Str || src.From != x.Get("price_source_model").Str ||
				p.Input.String() != x.Get("input_price").Raw {
				t.Errorf("%s: ledger says %+v %+v %v: %s", id, p, src, err, x.Raw)
			}
		}

		// Sync one from its base, then all: OpenWebUI's base_model_id is used.
		status, r, _ = o.call(t, "POST", "/api/v1/models/sync-price", `{"modelId": "writer"}`)
		if status != 200 || r.Get("data.base_model_id").Str != "claude-3" || r.Get("data.per_msg_price").Raw != "0.02" || !r.Get("data.priced").Bool() {
			t.Fatalf("sync writer %d %s", status, r.Raw)
		}
		if p, err := e.st.ModelPrice(ctx, "writer"); err != nil || !p.Priced || p.BaseModelID != "claude-3" || p.Name != "Writer" {
			t.Fatalf("writer stored %+v %v", p, err)
		}
		status, r, _ = o.call(t, "POST", "/api/v1/models/sync-all-prices", ``)
		if status != 200 || r.Get("syncedModels").Int() != 3 || r.Get("openwebui_error").Exists() {
			t.Fatalf("sync all %d %s", status, r.Raw)
		}
		res := byID(t, r.Get("results"))
		for _, id := range []string{"helper", "writer", "my_pipe.claude-3"} {
			if !res[id].Get("success").Bool() {
				t.Errorf("%s not synced: %s", id, r.Raw)
			}
		}
		if p, err := e.st.ModelPrice(ctx, "helper"); err != nil || !p.Priced || p.Input != amount(t, "2.5") || p.BaseModelID != "gpt-4o" {
			t.Fatalf("helper stored %+v %v", p, err)
		}
		status, r = o.do(t, "GET", "/api/v1/models", "")
		if m := byID(t, r); status != 200 || m["helper"].Get("price_source").Str != "own" || m["llama3:latest"].Get("price_source").Str != "default" {
			t.Fatalf("after sync %d %s", status, r.Raw)
		}
	})
}

// TestModelsSyncWithoutRow: a model OpenWebUI serves that we have no row
// for yet (or whose row has no base) syncs from OpenWebUI's base.
func TestModelsSyncWithoutRow(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		o := withOpenWebUI(t, e)
		e.price(t, "gpt-4o", "", "3", "6", "-1")
		e.record(t, "helper", "") // seen in traffic, no base known
		o.owui.SetModels([]fakeowui.Model{{ID: "gpt-4o"}, {ID: "helper", Name: "Helper", BaseModelID: "gpt-4o"}})
		status, r, _ := o.call(t, "POST", "/api/v1/models/sync-price", `{"modelId": "helper"}`)
		if status != 200 || r.Get("data.input_price").Raw != "3" || r.Get("data.base_model_id").Str != "gpt-4o" {
			t.Fatalf("sync %d %s", status, r.Raw)
		}
		if p, _ := e.l.Price(ctx, "helper", ""); p.Input != amount(t, "3") {
			t.Fatalf("ledger %+v", p)
		}
		// OpenWebUI down: our rows alone, and the answer says so.
		o.owui.Close()
		status, r, _ = o.call(t, "POST", "/api/v1/models/sync-all-prices", ``)
		if status != 200 || !strings.Contains(r.Get("openwebui_error").Str, "could not be reached") || r.Get("syncedModels").Int() != 1 {
			t.Fatalf("sync all, OpenWebUI down %d %s", status, r.Raw)
		}
	})
}

// TestModelsPageSources: the page lists OpenWebUI's models with the
// effective prices and their sources, and says in words when OpenWebUI is
// not configured or cannot be reached, listing what we know.
func TestModelsPageSources(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		p := fakeowui.NewProvider(t)
		o := fakeowui.NewOpenWebUI(t, p)
		_, key := o.AddUser("admin", "admin@example.com", "Admin", "admin")
		o.SetModels(sevenModels)
		e.price(t, "gpt-4o", "", "2.5", "10", "-1")
		e.record(t, "seen-once", "")
		srv := prefixed(t, e, "/monitor", Options{OpenWebUI: o.URL(), OpenWebUIAPIKey: key})
		b := newBrowser(t, srv.URL, "/monitor")
		b.login()
		page := b.get("/models")
		body := page.body
		if n := strings.Count(body, `data-testid="price-row"`); n != 7 || !strings.Contains(body, `data-state="listed"`) {
			t.Fatalf("models page (%d rows):\n%s", n, body)
		}
		for _, want := range []string{
			`data-model-id="gpt-4o" data-source="own"`, `data-model-id="helper" data-source="base"`,
			`data-model-id="llama3:latest" data-source="default"`, `data-model-id="my_pipe.claude-3" data-source="default"`,
			`inherited from <span class="model-id" data-testid="price-source-model">gpt-4o</span>`,
			`name="input_price" value="1000000"`, // the default, as charged, not 0
		} {
			if !strings.Contains(body, want) {
				t.Errorf("models page lacks %s", want)
			}
		}
		if strings.Contains(body, "seen-once") {
			t.Error("a model only seen in traffic is listed while OpenWebUI answers")
		}

		// Not configured.
		bare := prefixed(t, e, "/monitor", Options{})
		b2 := newBrowser(t, bare.URL, "/monitor")
		b2.login()
		body = b2.get("/models").body
		if !strings.Contains(body, `data-state="unconfigured"`) || !strings.Contains(body, "OpenWebUI is not configured") ||
			!strings.Contains(body, `data-model-id="seen-once"`) || !strings.Contains(body, `data-model-id="helper" data-source="base"`) {
			t.Fatalf("unconfigured page:\n%s", body)
		}

		// Down.
		o.Close()
		body = b.get("/models").body
		if !strings.Contains(body, `data-state="unreachable"`) || !strings.Contains(body, "OpenWebUI could not be reached") ||
			!strings.Contains(body, `data-testid="models-owui-error"`) || strings.Count(body, `data-testid="price-row"`) != 8 {
			t.Fatalf("unreachable page:\n%s", body)
		}
	})
}
