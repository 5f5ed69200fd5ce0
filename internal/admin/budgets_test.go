package admin

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
)

// lockedBuffer is a log sink the handlers may write while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// budgetEnv is the API over a SQLite store and a ledger with budgets whose
// clock stands at now (a Wednesday, 10:00 UTC) and whose limits are read
// again only when invalidated (Refresh: an hour), and its log.
type budgetEnv struct {
	*env
	b   *ledger.Budgets
	log *lockedBuffer
	now time.Time
}

var budgetNow = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func newBudgetEnv(t *testing.T, opts Options) *budgetEnv {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &budgetEnv{log: &lockedBuffer{}, now: budgetNow}
	e.b = &ledger.Budgets{Location: time.UTC, Now: func() time.Time { return e.now }, Refresh: time.Hour}
	l := ledger.New(st, ledger.Config{Budgets: e.b, DefaultPrice: pricing.Price{PerMessage: money.Units(2)}})
	opts.AccessToken, opts.MaxBodyBytes = token, 1<<20
	opts.Log = slog.New(slog.NewTextHandler(e.log, nil))
	srv := httptest.NewServer(New(l, opts))
	t.Cleanup(srv.Close)
	e.env = &env{st: st, l: l, srv: srv}
	return e
}

func (e *budgetEnv) limits(t *testing.T) []budget.Limit {
	t.Helper()
	ls, err := e.st.Limits(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func (e *budgetEnv) grants(t *testing.T) []budget.Grant {
	t.Helper()
	gs, err := e.st.Grants(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

func (e *budgetEnv) groups(t *testing.T, groups ...budget.Group) {
	t.Helper()
	if err := e.st.SetGroups(context.Background(), groups); err != nil {
		t.Fatal(err)
	}
}

func (e *budgetEnv) roleUser(t *testing.T, id, role string, balance int64) {
	t.Helper()
	if _, err := e.st.UpsertUser(context.Background(), store.UserInfo{ID: id, Name: id, Email: id + "@example.com", Role: role}, money.Units(balance)); err != nil {
		t.Fatal(err)
	}
}

// TestLimitsAPI: limits are created (cost as an exact decimal, string or
// number; counts as integers), listed, replaced and deleted; each change
// reaches the ledger at once and is logged with its old and new value.
func TestLimitsAPI(t *testing.T) {
	e := newBudgetEnv(t, Options{})
	e.roleUser(t, "u1", "user", 50)
	// The ledger reads the (empty) limits and keeps them for an hour…
	if _, r, _ := e.call(t, "GET", "/api/v1/users/u1/limits", ""); r.Get("limits.#").Int() != 0 || !r.Get("limits").IsArray() {
		t.Fatalf("no limits yet: %s", r.Raw)
	}

	status, r, body := e.call(t, "POST", "/api/v1/limits", `{"scope":"user:u1","measure":"cost","amount":"12.5","window":"day"}`)
	if status != 201 || !r.Get("success").Bool() || r.Get("limit.amount").Raw != `"12.5"` || r.Get("limit.scope").Str != "user:u1" ||
		r.Get("limit.window").Str != "day" || !r.Get("limit.models").IsArray() || r.Get("limit.shared").Bool() {
		t.Fatalf("create: %d %s", status, body)
	}
	costID := r.Get("limit.id").Int()
	// …but a change is seen at once.
	if _, r, _ := e.call(t, "GET", "/api/v1/users/u1/limits", ""); r.Get("limits.#").Int() != 1 || r.Get("limits.0.id").Int() != costID {
		t.Fatalf("the new limit is not in effect at once: %s", r.Raw)
	}
	status, r, body = e.call(t, "POST", "/api/v1/limits", `{"scope":"group:staff","measure":"tokens","amount":100000,"window":"5h","models":["gpt-4*"," claude-? "],"shared":true}`)
	if status != 201 || r.Get("limit.amount").Raw != "100000" || r.Get("limit.window").Str != "5h" || !r.Get("limit.rolling").Bool() ||
		r.Get("limit.models").Raw != `["gpt-4*","claude-?"]` || !r.Get("limit.shared").Bool() {
		t.Fatalf("create tokens: %d %s", status, body)
	}
	tokID := r.Get("limit.id").Int()
	// A JSON number for a cost is read exactly too.
	status, r, body = e.call(t, "POST", "/api/v1/limits", `{"scope":"all","measure":"cost","amount":0.1,"window":"month"}`)
	if status != 201 || r.Get("limit.amount").Raw != `"0.1"` {
		t.Fatalf("create from a number: %d %s", status, body)
	}
	allID := r.Get("limit.id").Int()

	stored := e.limits(t)
	if len(stored) != 3 || stored[0].Amount != 12_500_000_000 || stored[1].Amount != 100000 || stored[2].Amount != 100_000_000 ||
		stored[1].Window.Rolling != 5*time.Hour || stored[2].Scope.Kind != "all" {
		t.Fatalf("stored %+v", stored)
	}
	_, r, _ = e.call(t, "GET", "/api/v1/limits", "")
	if r.Get("limits.#").Int() != 3 || r.Get("limits.0.amount").Str != "12.5" || r.Get("limits.1.amount").Int() != 100000 ||
		r.Get("limits.1.measure").Str != "tokens" || r.Get("limits.2.scope").Str != "all" || r.Get("limits.0.description").Str == "" {
		t.Fatalf("list %s", r.Raw)
	}

	// Replace: the whole limit, as POST takes it.
	path := "/api/v1/limits/" + strconv.FormatInt(costID, 10)
	status, r, body = e.call(t, "PUT", path, `{"scope":"user:u1","measure":"messages","amount":"40","window":"week"}`)
	if status != 200 || r.Get("limit.id").Int() != costID || r.Get("limit.measure").Str != "messages" || r.Get("limit.amount").Raw != "40" {
		t.Fatalf("update: %d %s", status, body)
	}
	if _, r, _ := e.call(t, "GET", "/api/v1/users/u1/limits", ""); !strings.Contains(r.Raw, `"measure":"messages"`) || strings.Contains(r.Raw, `"12.5"`) {
		t.Fatalf("the change is not in effect at once: %s", r.Raw)
	}
	for _, p := range []string{"/api/v1/limits/999", "/api/v1/limits/x", "/api/v1/limits/-1"} {
		if status, _, body := e.call(t, "PUT", p, `{"scope":"all","measure":"messages","amount":1,"window":"day"}`); status != 404 {
			t.Fatalf("PUT %s: %d %s", p, status, body)
		}
		if status, _, body := e.call(t, "DELETE", p, ""); status != 404 {
			t.Fatalf("DELETE %s: %d %s", p, status, body)
		}
	}
	if len(e.limits(t)) != 3 {
		t.Fatal("a missing limit's PUT wrote something")
	}

	// Delete.
	if status, _, body := e.call(t, "DELETE", "/api/v1/limits/"+strconv.FormatInt(tokID, 10), ""); status != 200 {
		t.Fatalf("delete: %d %s", status, body)
	}
	if status, _, _ := e.call(t, "DELETE", "/api/v1/limits/"+strconv.FormatInt(tokID, 10), ""); status != 404 {
		t.Fatalf("second delete: %d", status)
	}
	if ls := e.limits(t); len(ls) != 2 || ls[0].ID != costID || ls[1].ID != allID {
		t.Fatalf("after delete %+v", ls)
	}
	if _, r, _ := e.call(t, "DELETE", "/api/v1/limits/"+strconv.FormatInt(costID, 10), ""); !r.Get("success").Bool() {
		t.Fatal(r.Raw)
	}
	if _, r, _ := e.call(t, "GET", "/api/v1/users/u1/limits", ""); r.Get("limits.#").Int() != 1 || r.Get("limits.0.scope").Str != "all" {
		t.Fatalf("the delete is not in effect at once: %s", r.Raw)
	}

	// Every change is logged: who, what, old and new.
	log := e.log.String()
	for _, want := range []string{
		`msg="admin added a budget limit" actor=admin limit=` + strconv.FormatInt(costID, 10) + ` old=none new="12.5 cost per day (user:u1)"`,
		`new="100000 tokens per 5h (rolling) on gpt-4*, claude-? (group:staff, shared)"`,
		`msg="admin changed a budget limit" actor=admin limit=` + strconv.FormatInt(costID, 10) + ` old="12.5 cost per day (user:u1)" new="40 messages per week (user:u1)"`,
		`msg="admin deleted a budget limit" actor=admin limit=` + strconv.FormatInt(tokID, 10) + ` old="100000 tokens per 5h (rolling) on gpt-4*, claude-? (group:staff, shared)" new=none`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %s:\n%s", want, log)
		}
	}
}

// TestLimitValidationNamesTheField: a wrong limit is a 4xx whose error
// starts with the field at fault, and nothing is written, by POST or PUT.
func TestLimitValidationNamesTheField(t *testing.T) {
	e := newBudgetEnv(t, Options{})
	status, r, _ := e.call(t, "POST", "/api/v1/limits", `{"scope":"role:user","measure":"cost","amount":"3","window":"day"}`)
	if status != 201 {
		t.Fatal(r.Raw)
	}
	put := "/api/v1/limits/" + strconv.FormatInt(r.Get("limit.id").Int(), 10)
	before := e.limits(t)
	for _, c := range []struct {
		body, field string
		status      int
	}{
		{`{"measure":"cost","amount":"1","window":"day"}`, "scope", 422},
		{`{"scope":"team:x","measure":"cost","amount":"1","window":"day"}`, "scope", 422},
		{`{"scope":"role:boss","measure":"cost","amount":"1","window":"day"}`, "scope", 422},
		{`{"scope":"user:","measure":"cost","amount":"1","window":"day"}`, "scope", 422},
		{`{"scope":"all","measure":"dollars","amount":"1","window":"day"}`, "measure", 422},
		{`{"scope":"all","window":"day","measure":"cost"}`, "amount", 422},
		{`{"scope":"all","measure":"cost","amount":"abc","window":"day"}`, "amount", 422},
		{`{"scope":"all","measure":"cost","amount":null,"window":"day"}`, "amount", 422},
		{`{"scope":"all","measure":"cost","amount":"-1","window":"day"}`, "amount", 422},
		{`{"scope":"all","measure":"cost","amount":"0.0000000001","window":"day"}`, "amount", 422},
		{`{"scope":"all","measure":"cost","amount":"9223372037","window":"day"}`, "amount", 422},
		{`{"scope":"all","measure":"tokens","amount":"1.5","window":"day"}`, "amount", 422},
		{`{"scope":"all","measure":"tokens","amount":1e3,"window":"day"}`, "amount", 422},
		{`{"scope":"all","measure":"messages","amount":-2,"window":"day"}`, "amount", 422},
		{`{"scope":"all","measure":"tokens","amount":99999999999999999999,"window":"day"}`, "amount", 422},
		{`{"scope":"all","measure":"tokens","amount":true,"window":"day"}`, "amount", 422},
		{`{"scope":"all","measure":"cost","amount":"1"}`, "window", 422},
		{`{"scope":"all","measure":"cost","amount":"1","window":"fortnight"}`, "window", 422},
		{`{"scope":"all","measure":"cost","amount":"1","window":"30s"}`, "window", 422},
		{`{"scope":"all","measure":"cost","amount":"1","window":"400d"}`, "window", 422},
		{`{"scope":"all","measure":"cost","amount":"1","window":"day","models":["gpt[4]"]}`, "models", 422},
		{`{"scope":"all","measure":"cost","amount":"1","window":"day","models":[""]}`, "models", 422},
		{`{"scope":"user:u1","measure":"cost","amount":"1","window":"day","shared":true}`, "shared", 422},
		{`{"scope":"all","measure":"cost","amount":"1","window":"day","models":"gpt-4o"}`, "models", 400},
		{`{"scope":"all","measure":"cost","amount":"1","window":"day","shared":"yes"}`, "shared", 400},
		{`{"scope":7,"measure":"cost","amount":"1","window":"day"}`, "scope", 400},
		{`{"scope":"all","measure":"cost","amount":"1","window":"day","color":"red"}`, "", 400},
		{`{"scope":"all"`, "", 400},
	} {
		for _, m := range []string{"POST /api/v1/limits", "PUT " + put} {
			method, path, _ := strings.Cut(m, " ")
			status, r, body := e.call(t, method, path, c.body)
			msg := r.Get("error").Str
			if status != c.status || (c.field != "" && !strings.HasPrefix(msg, c.field+": ")) {
				t.Errorf("%s %s: %d %s, want %d naming %s", m, c.body, status, body, c.status, c.field)
			}
			if c.status == 422 && r.Get("errors."+c.field).Str == "" {
				t.Errorf("%s %s: no errors.%s in %s", m, c.body, c.field, body)
			}
		}
	}
	after := e.limits(t)
	if len(after) != 1 || after[0].Amount != before[0].Amount || after[0].Scope != before[0].Scope || after[0].Measure != before[0].Measure {
		t.Fatalf("refused changes wrote something: %+v", after)
	}
	if strings.Contains(e.log.String(), "admin changed a budget limit") {
		t.Fatal("a refused change was logged as made")
	}
}

// TestGrantsAPI: a grant is stored and applied at once to its scope's
// users (recorded as grant:<id>), listed with its last window, refused
// with the field named when wrong (nothing written), and deleted.
func TestGrantsAPI(t *testing.T) {
	e := newBudgetEnv(t, Options{})
	ctx := context.Background()
	e.roleUser(t, "u1", "user", 1)
	e.roleUser(t, "u2", "user", 30)
	e.roleUser(t, "boss", "admin", 9)
	e.groups(t, budget.Group{ID: "staff", Name: "Staff", Members: []string{"u1", "u2"}})

	status, r, body := e.call(t, "POST", "/api/v1/grants", `{"scope":"group:staff","mode":"reset","amount":"7.5","window":"month"}`)
	if status != 201 || r.Get("grant.amount").Raw != `"7.5"` || r.Get("grant.cap").Type != gjson.Null || r.Get("grant.mode").Str != "reset" ||
		r.Get("grant.last_window").Str != "2026-12-01T00:00:00Z" || r.Get("applied.#").Int() != 2 {
		t.Fatalf("create: %d %s", status, body)
	}
	id := r.Get("grant.id").Int()
	actor := "grant:" + strconv.FormatInt(id, 10)
	for _, u := range []string{"u1", "u2"} {
		if b := e.balanceOf(t, u); b != 7_500_000_000 {
			t.Fatalf("%s's balance after the reset grant: %s", u, b)
		}
		cs, _ := e.st.BalanceChanges(ctx, u, 10)
		if len(cs) != 1 || cs[0].Actor != actor {
			t.Fatalf("%s's history %+v", u, cs)
		}
	}
	if b := e.balanceOf(t, "boss"); b != money.Units(9) {
		t.Fatalf("a user outside the scope got %s", b)
	}
	// An add grant with a cap; a number or a string alike.
	status, r, body = e.call(t, "POST", "/api/v1/grants", `{"scope":"role:admin","mode":"add","amount":5,"cap":"12","window":"day"}`)
	if status != 201 || r.Get("grant.cap").Raw != `"12"` || r.Get("grant.amount").Raw != `"5"` || r.Get("applied.0.new_balance").Str != "12" {
		t.Fatalf("create add: %d %s", status, body)
	}
	addID := r.Get("grant.id").Int()
	if b := e.balanceOf(t, "boss"); b != money.Units(12) {
		t.Fatalf("boss after the add grant: %s", b)
	}
	if b := e.balanceOf(t, "u1"); b != 7_500_000_000 {
		t.Fatalf("the reset grant was applied twice in one window: %s", b)
	}
	_, r, _ = e.call(t, "GET", "/api/v1/grants", "")
	if r.Get("grants.#").Int() != 2 || r.Get("grants.0.scope").Str != "group:staff" || r.Get("grants.1.window").Str != "day" ||
		r.Get("grants.1.last_window").Str != "2026-12-02T00:00:00Z" {
		t.Fatalf("list %s", r.Raw)
	}
	if log := e.log.String(); !strings.Contains(log, `msg="admin added a budget grant" actor=admin grant=`+strconv.FormatInt(id, 10)+` old=none new="reset 7.5 every month (group:staff)"`) ||
		!strings.Contains(log, `msg="grant applied" actor=`+actor+` user=u1 old_balance=1 new_balance=7.5`) {
		t.Fatalf("log:\n%s", log)
	}

	// Wrong grants name the field and write nothing.
	balances := map[string]money.Amount{}
	for _, u := range []string{"u1", "u2", "boss"} {
		balances[u] = e.balanceOf(t, u)
	}
	for _, c := range []struct{ body, field string }{
		{`{"mode":"reset","amount":"1","window":"day"}`, "scope"},
		{`{"scope":"staff","mode":"reset","amount":"1","window":"day"}`, "scope"},
		{`{"scope":"all","mode":"double","amount":"1","window":"day"}`, "mode"},
		{`{"scope":"all","amount":"1","window":"day"}`, "mode"},
		{`{"scope":"all","mode":"reset","window":"day"}`, "amount"},
		{`{"scope":"all","mode":"reset","amount":"-1","window":"day"}`, "amount"},
		{`{"scope":"all","mode":"reset","amount":"1","window":"5h"}`, "window"},
		{`{"scope":"all","mode":"reset","amount":"1","window":"year"}`, "window"},
		{`{"scope":"all","mode":"reset","amount":"1"}`, "window"},
		{`{"scope":"all","mode":"add","amount":"1","window":"day"}`, "cap"},
		{`{"scope":"all","mode":"add","amount":"5","cap":"4","window":"day"}`, "cap"},
		{`{"scope":"all","mode":"add","amount":"5","cap":"lots","window":"day"}`, "cap"},
		{`{"scope":"all","mode":"reset","amount":"5","cap":"9","window":"day"}`, "cap"},
	} {
		status, r, body := e.call(t, "POST", "/api/v1/grants", c.body)
		if status != 422 || !strings.HasPrefix(r.Get("error").Str, c.field+": ") {
			t.Errorf("%s: %d %s, want 422 naming %s", c.body, status, body, c.field)
		}
	}
	if status, r, _ := e.call(t, "POST", "/api/v1/grants", `{"scope":"all","mode":"reset","amount":"x1","window":"day"}`); status != 400 ||
		!strings.HasPrefix(r.Get("error").Str, "amount: ") {
		t.Errorf("a malformed amount: %d %s", status, r.Raw)
	}
	if gs := e.grants(t); len(gs) != 2 {
		t.Fatalf("refused grants were stored: %+v", gs)
	}
	for u, b := range balances {
		if e.balanceOf(t, u) != b {
			t.Fatalf("a refused grant changed %s's balance", u)
		}
	}

	// Delete: the balances it set stay.
	if status, _, body := e.call(t, "DELETE", "/api/v1/grants/"+strconv.FormatInt(addID, 10), ""); status != 200 {
		t.Fatalf("delete: %d %s", status, body)
	}
	for _, p := range []string{strconv.FormatInt(addID, 10), "0", "abc"} {
		if status, _, _ := e.call(t, "DELETE", "/api/v1/grants/"+p, ""); status != 404 {
			t.Fatalf("delete %s: %d", p, status)
		}
	}
	if gs := e.grants(t); len(gs) != 1 || gs[0].ID != id {
		t.Fatalf("after delete %+v", gs)
	}
	if b := e.balanceOf(t, "boss"); b != money.Units(12) {
		t.Fatalf("deleting a grant changed a balance: %s", b)
	}
	if !strings.Contains(e.log.String(), `msg="admin deleted a budget grant" actor=admin grant=`+strconv.FormatInt(addID, 10)+` old="add 5 up to 12 every day (role:admin)" new=none`) {
		t.Fatalf("log:\n%s", e.log.String())
	}
}

// TestUserLimitsAfterACharge: a user's effective limits show what a charge
// used in each window, what remains and when each resets.
func TestUserLimitsAfterACharge(t *testing.T) {
	e := newBudgetEnv(t, Options{})
	ctx := context.Background()
	e.roleUser(t, "u1", "user", 100)
	e.roleUser(t, "u2", "user", 100)
	e.groups(t, budget.Group{ID: "staff", Name: "Staff", Members: []string{"u1"}})
	for _, b := range []string{
		`{"scope":"user:u1","measure":"cost","amount":"10","window":"day"}`,
		`{"scope":"all","measure":"messages","amount":5,"window":"week"}`,
		`{"scope":"group:staff","measure":"tokens","amount":1000,"window":"5h"}`,
		`{"scope":"all","measure":"cost","amount":"1","window":"day","models":["claude-*"]}`,
	} {
		if status, _, body := e.call(t, "POST", "/api/v1/limits", b); status != 201 {
			t.Fatalf("%s: %d %s", b, status, body)
		}
	}
	if _, err := e.l.Charge(ctx, ledger.Answer{User: store.UserInfo{ID: "u1", Name: "u1", Role: "user"}, Model: "gpt-4o",
		InputTokens: 120, OutputTokens: 30, MessageID: "m1"}); err != nil {
		t.Fatal(err)
	}
	status, r, body := e.call(t, "GET", "/api/v1/users/u1/limits", "")
	if status != 200 || r.Get("user_id").Str != "u1" || r.Get("limits.#").Int() != 4 {
		t.Fatalf("%d %s", status, body)
	}
	byMeasure := map[string]gjson.Result{}
	for _, l := range r.Get("limits").Array() {
		byMeasure[l.Get("measure").Str+"/"+l.Get("scope").Str] = l
	}
	for key, want := range map[string][4]string{
		// used, remaining, starts_at, resets_at
		"cost/user:u1":       {`"2"`, `"8"`, "2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z"},
		"messages/all":       {`1`, `4`, "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"},
		"tokens/group:staff": {`150`, `850`, "2026-12-02T05:00:00Z", "2026-12-02T15:00:00Z"},
		"cost/all":           {`"0"`, `"1"`, "2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z"}, // claude only
	} {
		l, ok := byMeasure[key]
		if !ok {
			t.Fatalf("no %s in %s", key, body)
		}
		if got := [4]string{l.Get("used").Raw, l.Get("remaining").Raw, l.Get("starts_at").Str, l.Get("resets_at").Str}; got != want {
			t.Errorf("%s: %v, want %v", key, got, want)
		}
	}
	// u2 is in no group and has no limit of their own.
	_, r, _ = e.call(t, "GET", "/api/v1/users/u2/limits", "")
	if r.Get("limits.#").Int() != 2 || r.Get("limits.0.used").Raw != "0" {
		t.Fatalf("u2: %s", r.Raw)
	}
	if status, _, _ := e.call(t, "GET", "/api/v1/users/nobody/limits", ""); status != 404 {
		t.Fatalf("unknown user: %d", status)
	}
}

// TestGroupsAPI: the synced groups with their members and the limits on
// each; a sync goes through the configured syncer (409 without one, 502
// when it fails) and the ledger sees the new members at once.
func TestGroupsAPI(t *testing.T) {
	var syncErr error
	var e *budgetEnv
	e = newBudgetEnv(t, Options{SyncGroups: func(ctx context.Context) (int, error) {
		if syncErr != nil {
			return 0, syncErr
		}
		groups := []budget.Group{{ID: "g1", Name: "Staff", Members: []string{"u1", "u2"}}, {ID: "g2", Name: "Guests"}}
		return len(groups), e.st.SetGroups(ctx, groups)
	}})
	e.roleUser(t, "u1", "user", 5)
	e.roleUser(t, "u2", "user", 5)
	e.groups(t, budget.Group{ID: "g1", Name: "Staff", Members: []string{"u1"}}, budget.Group{ID: "g2", Name: "Guests"})
	for _, b := range []string{
		`{"scope":"group:g1","measure":"cost","amount":"3","window":"day"}`,
		`{"scope":"group:g1","measure":"messages","amount":10,"window":"week","shared":true}`,
		`{"scope":"role:user","measure":"cost","amount":"1","window":"day"}`,
	} {
		if status, _, body := e.call(t, "POST", "/api/v1/limits", b); status != 201 {
			t.Fatalf("%s: %d %s", b, status, body)
		}
	}
	_, r, body := e.call(t, "GET", "/api/v1/groups", "")
	if r.Get("groups.#").Int() != 2 || !r.Get("sync").Bool() {
		t.Fatalf("groups %s", body)
	}
	// Ordered by name: Guests, Staff.
	guests, staff := r.Get("groups.0"), r.Get("groups.1")
	if guests.Get("id").Str != "g2" || guests.Get("members").Raw != "[]" || guests.Get("limits").Raw != "[]" {
		t.Fatalf("guests %s", guests.Raw)
	}
	if staff.Get("name").Str != "Staff" || staff.Get("members").Raw != `["u1"]` || staff.Get("limits.#").Int() != 2 ||
		staff.Get("limits.0.amount").Str != "3" || !staff.Get("limits.1.shared").Bool() {
		t.Fatalf("staff %s", staff.Raw)
	}
	// u2 is not in g1 yet: the role's limit decides their cost.
	if _, r, _ := e.call(t, "GET", "/api/v1/users/u2/limits", ""); !strings.Contains(r.Raw, `"scope":"role:user"`) {
		t.Fatalf("u2 before the sync: %s", r.Raw)
	}

	status, r, body := e.call(t, "POST", "/api/v1/groups/sync", "")
	if status != 200 || r.Get("groups").Int() != 2 {
		t.Fatalf("sync: %d %s", status, body)
	}
	if _, r, _ := e.call(t, "GET", "/api/v1/users/u2/limits", ""); !strings.Contains(r.Raw, `"scope":"group:g1"`) || strings.Contains(r.Raw, `"scope":"role:user"`) {
		t.Fatalf("u2 after the sync, at once: %s", r.Raw)
	}
	if _, r, _ := e.call(t, "GET", "/api/v1/groups", ""); r.Get("groups.1.members").Raw != `["u1","u2"]` {
		t.Fatalf("after sync %s", r.Raw)
	}
	if !strings.Contains(e.log.String(), `msg="admin synced OpenWebUI's groups" actor=admin groups=2`) {
		t.Fatalf("log:\n%s", e.log.String())
	}
	syncErr = errors.New("OpenWebUI answered 401")
	if status, body := e.raw(t, "POST", "/api/v1/groups/sync", ""); status != 502 || !strings.Contains(gjson.Get(body, "error").Str, "401") {
		t.Fatalf("failed sync: %d %s", status, body)
	}

	// Without a syncer: 409, and it says why.
	off := newBudgetEnv(t, Options{})
	status, r, _ = off.call(t, "POST", "/api/v1/groups/sync", "")
	if status != 409 || !strings.Contains(r.Get("error").Str, "not configured") {
		t.Fatalf("sync without a syncer: %d %s", status, r.Raw)
	}
	if _, r, _ := off.call(t, "GET", "/api/v1/groups", ""); r.Get("sync").Bool() || r.Get("groups").Raw != "[]" {
		t.Fatalf("no groups: %s", r.Raw)
	}
}

// TestBudgetsPage: the page lists limits, grants and groups (names
// escaped), offers the synced groups in its scope choosers, and is in the
// navigation.
func TestBudgetsPage(t *testing.T) {
	e := newBudgetEnv(t, Options{})
	e.roleUser(t, "u1", "user", 5)
	e.groups(t, budget.Group{ID: "g1", Name: xss, Members: []string{"u1"}}, budget.Group{ID: "g2", Name: "Guests"})
	for _, b := range []string{
		`{"scope":"group:g1","measure":"cost","amount":"3.25","window":"day"}`,
		`{"scope":"all","measure":"tokens","amount":50000,"window":"7d","models":["gpt-4*"],"shared":true}`,
	} {
		if status, _, body := e.call(t, "POST", "/api/v1/limits", b); status != 201 {
			t.Fatalf("%s: %d %s", b, status, body)
		}
	}
	if status, _, body := e.call(t, "POST", "/api/v1/grants", `{"scope":"role:user","mode":"add","amount":"2","cap":"20","window":"week"}`); status != 201 {
		t.Fatalf("grant: %d %s", status, body)
	}
	srv := prefixed(t, e.env, "/monitor", Options{})
	b := newBrowser(t, srv.URL, "/monitor")
	if p := b.get("/budgets"); p.resp.StatusCode != 303 {
		t.Fatalf("without a session: %d", p.resp.StatusCode)
	}
	b.login()
	p := b.get("/budgets")
	if p.resp.StatusCode != 200 {
		t.Fatalf("%d %s", p.resp.StatusCode, p.body)
	}
	for _, want := range []string{
		`data-testid="nav-budgets" class="current"`, `data-testid="limits-table"`, `data-limit-id="1" data-scope="group:g1"`,
		`$3.25`, `50,000 tokens`, `7d (rolling)`, `gpt-4*`, `one shared pool`, `data-grant-id="1" data-scope="role:user"`,
		`Add the amount`, `$20.00`, `<option value="g2">Guests (0)</option>`, `Group &lt;script&gt;`, `data-testid="groups-sync-off"`,
		`static/budgets.js?v=`, `static/budgets.css?v=`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(p.body, xss) {
		t.Error("a group's name is not escaped")
	}
	b.header.Set("Accept-Language", "zh")
	if p := b.get("/budgets"); !strings.Contains(p.body, "<h1>预算</h1>") || !strings.Contains(p.body, "成员共用一个额度") {
		t.Errorf("zh page: %.300s", p.body)
	}
}
