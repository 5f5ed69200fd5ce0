package groupsync

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
)

type env struct {
	owui     *fakeowui.OpenWebUI
	adminKey string
	userKey  string
	loneKey  string // u4's, in no group
	st       *sqlite.Store
	synced   atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{owui: fakeowui.NewOpenWebUI(t, nil)}
	_, e.adminKey = e.owui.AddUser("admin", "admin@example.com", "Admin", "admin")
	_, e.userKey = e.owui.AddUser("u1", "u1@example.com", "U1", "user")
	e.owui.AddUser("u2", "u2@example.com", "U2", "user")
	e.owui.AddUser("u3", "u3@example.com", "U3", "user")
	_, e.loneKey = e.owui.AddUser("u4", "u4@example.com", "U4", "user")
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "groups.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	return e
}

func (e *env) syncer(base, key string, max int64) *Syncer {
	return New(Config{OpenWebUI: base, APIKey: key, Store: e.st, MaxResponseBytes: max,
		Client: &http.Client{Timeout: 2 * time.Second}, Synced: func() { e.synced.Add(1) }})
}

// stored is the store's groups as "id:name=m1,m2" strings, sorted.
func (e *env) stored(t *testing.T) []string {
	t.Helper()
	gs, err := e.st.Groups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range gs {
		m := slices.Clone(g.Members)
		slices.Sort(m)
		out = append(out, g.ID+":"+g.Name+"="+strings.Join(m, ","))
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// TestSyncReadsGroupsAndMembers: against the fake OpenWebUI over
// loopback HTTP, a sync stores every group (get_groups as an admin) with
// its members (export_group_by_id), asks no export for an empty group,
// sends the key as a bearer token; a user who joins a group in OpenWebUI
// (add_user_to_group) is in it after the next sync, one removed
// (remove_users_from_group) is not.
func TestSyncReadsGroupsAndMembers(t *testing.T) {
	e := newEnv(t)
	staff := e.owui.CreateGroup("staff")
	e.owui.AddToGroup(staff, "u1", "u2")
	empty := e.owui.CreateGroup("empty")
	s := e.syncer(e.owui.URL()+"/", e.adminKey, 0)

	r, err := s.SyncResult(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Groups != 2 || r.Members != 2 || e.synced.Load() != 1 {
		t.Errorf("result %+v, synced %d", r, e.synced.Load())
	}
	want := sorted(staff+":staff=u1,u2", empty+":empty=")
	if got := e.stored(t); !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
	if g, _ := e.st.UserGroups(context.Background(), "u1"); !slices.Equal(g, []string{staff}) {
		t.Errorf("u1's groups %v", g)
	}
	for _, req := range e.owui.Requests() {
		if req.Header.Get("Authorization") != "Bearer "+e.adminKey {
			t.Errorf("%s %s without the key as bearer", req.Method, req.Path)
		}
		if strings.Contains(req.Path, empty) {
			t.Errorf("asked %s for an empty group", req.Path)
		}
		if req.Method != http.MethodGet {
			t.Errorf("%s %s: a sync only reads", req.Method, req.Path)
		}
	}

	// u3 joins staff through OpenWebUI's own route; u1 leaves.
	for _, c := range []struct{ path, ids string }{{"add", `["u3"]`}, {"remove", `["u1"]`}} {
		req, _ := http.NewRequest(http.MethodPost, e.owui.URL()+"/api/v1/groups/id/"+staff+"/users/"+c.path,
			strings.NewReader(`{"user_ids":`+c.ids+`}`))
		req.Header.Set("Authorization", "Bearer "+e.adminKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("users/%s: %d", c.path, resp.StatusCode)
		}
	}
	if n, err := s.Sync(context.Background()); err != nil || n != 2 {
		t.Fatalf("re-sync: %d %v", n, err)
	}
	want = sorted(staff+":staff=u2,u3", empty+":empty=")
	if got := e.stored(t); !slices.Equal(got, want) {
		t.Errorf("after re-sync %v, want %v", got, want)
	}
	if g, _ := e.st.UserGroups(context.Background(), "u3"); !slices.Equal(g, []string{staff}) {
		t.Errorf("u3's groups %v", g)
	}
	if g, _ := e.st.UserGroups(context.Background(), "u1"); len(g) != 0 {
		t.Errorf("u1's groups %v", g)
	}
}

// TestSyncOlderOpenWebUI: up to 0.6.x, get_groups' GroupResponse carries
// the members as user_ids (models/groups.py GroupModel.user_ids, a JSON
// column) and has no member_count; the sync takes them from the list and
// asks nothing more.
func TestSyncOlderOpenWebUI(t *testing.T) {
	e := newEnv(t)
	var paths []string
	var mu sync.Mutex
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.URL.Path == "/api/v1/auths/" && r.Header.Get("Authorization") == "Bearer "+e.adminKey {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"id":"admin","email":"admin@example.com","name":"Admin","role":"admin","token":"x","token_type":"Bearer"}`))
			return
		}
		if r.URL.Path != "/api/v1/groups/" || r.Header.Get("Authorization") != "Bearer "+e.adminKey {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"detail":"Not Found"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`[{"id":"g1","user_id":"admin","name":"staff","description":"","permissions":null,"data":null,"meta":null,` +
			`"user_ids":["u1","u2","u1"],"created_at":1,"updated_at":2},` +
			`{"id":"g2","user_id":"admin","name":"none","description":"","permissions":null,"data":null,"meta":null,` +
			`"user_ids":[],"created_at":1,"updated_at":1}]`))
	}))
	defer old.Close()
	r, err := e.syncer(old.URL, e.adminKey, 0).SyncResult(context.Background())
	if err != nil || r.Groups != 2 || r.Members != 2 {
		t.Fatalf("%+v %v", r, err)
	}
	if got, want := e.stored(t), sorted("g1:staff=u1,u2", "g2:none="); !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
	if !slices.Equal(paths, []string{"GET /api/v1/auths/", "GET /api/v1/groups/"}) {
		t.Errorf("asked %v", paths)
	}
}

// TestSyncFailureChangesNothing: whatever fails (OpenWebUI's 500 on the
// list or on a member export, an answer that is not JSON, a non-admin
// key's 401 from get_admin_user, an answer over the size bound, a hang
// past the client's timeout, a refused connection), the sync returns an
// error naming the route, the status and OpenWebUI's detail, never the
// key, and the stored groups stay as the last good sync left them.
func TestSyncFailureChangesNothing(t *testing.T) {
	e := newEnv(t)
	staff := e.owui.CreateGroup("staff")
	e.owui.AddToGroup(staff, "u1")
	if _, err := e.syncer(e.owui.URL(), e.adminKey, 0).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := e.stored(t)
	// OpenWebUI changes; the failing syncs below must not store it.
	e.owui.AddToGroup(staff, "u2")
	for i := range 12 {
		e.owui.CreateGroup("team " + string(rune('a'+i)))
	}
	e.owui.AddToGroup(e.owui.CreateGroup("z"), "u3")

	var fault atomic.Value // func(w, r) bool: true when it answered
	fault.Store(func(http.ResponseWriter, *http.Request) bool { return false })
	target, _ := url.Parse(e.owui.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fault.Load().(func(http.ResponseWriter, *http.Request) bool)(w, r) {
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	answer := func(match string, status int, ct, body string) func(http.ResponseWriter, *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.Contains(r.URL.Path, match) {
				return false
			}
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(status)
			w.Write([]byte(body))
			return true
		}
	}
	hang := func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return true
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	cases := []struct {
		name  string
		base  string
		key   string
		max   int64
		fault func(http.ResponseWriter, *http.Request) bool
		want  []string
	}{
		{name: "list 500", fault: answer("/api/v1/groups/", 500, "application/json", `{"detail":"database is locked"}`),
			want: []string{"listing OpenWebUI's groups", "GET /api/v1/groups/", "500", "database is locked"}},
		{name: "export 500", fault: answer("/export", 500, "text/plain", "Internal Server Error"),
			want: []string{"members of OpenWebUI group", "/export", "500", "Internal Server Error"}},
		{name: "not JSON", fault: answer("/api/v1/groups/", 200, "text/html", "<!doctype html><title>Open WebUI</title>"),
			want: []string{"GET /api/v1/groups/", "not the JSON expected", "text/html"}},
		{name: "wrong JSON", fault: answer("/api/v1/groups/", 200, "application/json", `{"groups":[]}`),
			want: []string{"GET /api/v1/groups/", "not the JSON expected"}},
		{name: "non-admin key", key: e.userKey,
			want: []string{"openwebui_api_key", `"u1"`, `"user"`, "must be an admin's"}},
		{name: "non-admin key in no group", key: e.loneKey,
			want: []string{"openwebui_api_key", `"u4"`, "must be an admin's"}},
		{name: "admin-only route refused", fault: answer("/export", 401, "application/json", `{"detail":"`+fakeowui.DetailAccessProhibited+`"}`),
			want: []string{"/export", "401", fakeowui.DetailAccessProhibited, "admin"}},
		{name: "unknown key", key: "sk-not-a-key",
			want: []string{"GET /api/v1/auths/", "401", fakeowui.DetailSessionExpired}},
		{name: "huge", max: 2048, want: []string{"GET /api/v1/groups/", "larger than 2048 bytes"}},
		{name: "hang", fault: hang, want: []string{"GET /api/v1/auths/", "Client.Timeout"}},
		{name: "down", base: closed.URL, want: []string{"GET /api/v1/auths/", "refused"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.fault != nil {
				fault.Store(c.fault)
			} else {
				fault.Store(func(http.ResponseWriter, *http.Request) bool { return false })
			}
			base, key := cmpOr(c.base, front.URL), cmpOr(c.key, e.adminKey)
			s := e.syncer(base, key, c.max)
			s.cfg.Client.Timeout = 300 * time.Millisecond
			synced := e.synced.Load()
			n, err := s.Sync(context.Background())
			if err == nil {
				t.Fatalf("no error (%d groups)", n)
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("error %q shows the key", err)
			}
			if got := e.stored(t); !slices.Equal(got, before) {
				t.Errorf("stored %v, want %v as before", got, before)
			}
			if e.synced.Load() != synced {
				t.Error("Synced called after a failed sync")
			}
		})
	}
	// And with OpenWebUI well again, the changes arrive.
	fault.Store(func(http.ResponseWriter, *http.Request) bool { return false })
	if n, err := e.syncer(front.URL, e.adminKey, 0).Sync(context.Background()); err != nil || n != 14 {
		t.Fatalf("%d %v", n, err)
	}
	if g, _ := e.st.UserGroups(context.Background(), "u2"); !slices.Equal(g, []string{staff}) {
		t.Errorf("u2's groups %v", g)
	}
}

// TestSyncDetail: FastAPI's detail, a validation list, or the body's start.
func TestSyncDetail(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`{"detail":"Not Found"}`, "Not Found"},
		{`{"detail":[{"type":"missing","loc":["body"]}]}`, `[{"type":"missing","loc":["body"]}]`},
		{"Internal\n  Server Error", "Internal Server Error"},
		{strings.Repeat("x", 400), strings.Repeat("x", 300) + "…"},
		{"", ""},
	} {
		if got := detail([]byte(c.body)); got != c.want {
			t.Errorf("detail(%q) = %q, want %q", c.body, got, c.want)
		}
	}
}

// TestSyncStoreFailure: a store that refuses the groups fails the sync
// and Synced is not called.
func TestSyncStoreFailure(t *testing.T) {
	e := newEnv(t)
	e.owui.CreateGroup("staff")
	called := false
	s := New(Config{OpenWebUI: e.owui.URL(), APIKey: e.adminKey, Store: failingStore{}, Synced: func() { called = true }})
	if _, err := s.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "storing OpenWebUI's groups") || called {
		t.Errorf("%v, synced %v", err, called)
	}
}

type failingStore struct{}

func (failingStore) SetGroups(context.Context, []budget.Group) error {
	return context.DeadlineExceeded
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
