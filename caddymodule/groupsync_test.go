package caddymodule

// Group budget limits with OpenWebUI's groups synced (issue 17): owmon
// reads the groups at start, every group_sync and on demand (the admin
// API's POST /api/v1/groups/sync), and a group:<id> limit applies to the
// members of the last sync.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// startGroupEdge is startEdge (with balance to spare) with an OpenWebUI admin whose key is
// openwebui_api_key (so groups are synced) and the dashboard's admin API
// behind access_token; the group "staff" exists before owmon starts.
func startGroupEdge(t *testing.T, accessToken string, options ...string) (e *edgeEnv, staff string) {
	t.Helper()
	e = &edgeEnv{provider: fakeowui.NewProvider(t), database: sqliteDB(t)}
	e.owui = fakeowui.NewOpenWebUI(t, e.provider)
	e.jwt, e.key = e.owui.AddUser("alice", "alice@example.com", "Alice", "user")
	_, adminKey := e.owui.AddUser("root", "root@example.com", "Root", "admin")
	staff = e.owui.CreateGroup("staff")
	port := freePort(t)
	run(t, fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		output discard
	}
	openwebui_monitor {
		database %s
		openwebui %s
		openwebui_api_key %s
		webui_secret_key %s
		api_key %s
		access_token %s
		init_balance 100000
		hold_output_tokens 16
		%s
	}
}

:%d {
	openwebui_monitor
	reverse_proxy %s
}
`, e.database, e.owui.URL(), adminKey, e.owui.Secret(), testAPIKey, accessToken, strings.Join(options, "\n\t\t"), port, e.owui.URL()))
	e.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	e.st = activeStore(t)
	if _, err := e.st.PutModelPrice(context.Background(), store.ModelPrice{ID: "gpt-4o", Input: money.Units(1_000_000), Output: money.Units(2_000_000), PerMessage: -1}); err != nil {
		t.Fatal(err)
	}
	return e, staff
}

// TestGroupLimitAppliesAfterSync: a group limit of one message a day
// applies to nobody while the group is empty in OpenWebUI, nor to a user
// who joined it there but was not synced yet; once the admin API's sync
// has read the group, a member's second chat completion through the gate
// is refused with 429 naming the limit.
func TestGroupLimitAppliesAfterSync(t *testing.T) {
	const token = "group-admin-token"
	e, staff := startGroupEdge(t, token)
	ctx := context.Background()

	// The sync at start stores the group (and nobody in it).
	waitCond(t, "the sync at start", func() bool {
		gs, err := e.st.Groups(ctx)
		return err == nil && len(gs) == 1 && gs[0].ID == staff && gs[0].Name == "staff" && len(gs[0].Members) == 0
	})
	day, _ := budget.ParseWindow("day")
	if _, err := e.st.PutLimit(ctx, budget.Limit{Scope: budget.Scope{Kind: "group", ID: staff},
		Measure: budget.Messages, Amount: 1, Window: day}); err != nil {
		t.Fatal(err)
	}
	_, bobKey := e.owui.AddUser("bob", "bob@example.com", "Bob", "user")
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	send := func(who, key string) (int, string) {
		t.Helper()
		status, body := e.call(t, "/api/chat/completions", chat, "Authorization", "Bearer "+key)
		waitSettled(t, e.st, who)
		return status, string(body)
	}
	sync := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.url+"/monitor/api/v1/groups/sync", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b [4096]byte
		n, _ := resp.Body.Read(b[:])
		if j := gjson.ParseBytes(b[:n]); resp.StatusCode != 200 || j.Get("groups").Int() != 1 {
			t.Fatalf("sync: %d %s", resp.StatusCode, b[:n])
		}
	}

	// Alice is in no group: the limit is not hers.
	sync()
	for i := range 2 {
		if status, body := send("alice", e.key); status != 200 {
			t.Fatalf("alice's call %d before joining: %d %s", i+1, status, body)
		}
	}
	// Alice and Bob join staff in OpenWebUI; until a sync, owmon does not know.
	if !e.owui.AddToGroup(staff, "alice", "bob") {
		t.Fatal("no group")
	}
	if status, body := send("alice", e.key); status != 200 {
		t.Fatalf("alice's call after joining, before the sync: %d %s", status, body)
	}
	sync()
	if g, _ := e.st.UserGroups(ctx, "bob"); !slices.Equal(g, []string{staff}) {
		t.Fatalf("bob's groups after the sync: %v", g)
	}
	// Bob's first message of the day passes, his second is refused.
	if status, body := send("bob", bobKey); status != 200 {
		t.Fatalf("bob's first call: %d %s", status, body)
	}
	status, body := send("bob", bobKey)
	if status != http.StatusTooManyRequests || !strings.Contains(gjson.Get(body, "error.message").Str, "Budget limit reached") {
		t.Fatalf("bob's second call: %d %s", status, body)
	}
	// Alice has used three messages today: over the limit at once.
	if status, body := send("alice", e.key); status != http.StatusTooManyRequests {
		t.Fatalf("alice's call after the sync: %d %s", status, body)
	}
	// Leaving the group in OpenWebUI lifts it after the next sync.
	e.owui.RemoveFromGroup(staff, "bob")
	sync()
	if status, body := send("bob", bobKey); status != 200 {
		t.Fatalf("bob's call after leaving: %d %s", status, body)
	}
}

// TestGroupSyncOnSchedule: with group_sync at its shortest (10s), a user
// who joins a group in OpenWebUI after owmon started is under its limit
// after the next scheduled sync, with no sync asked for.
func TestGroupSyncOnSchedule(t *testing.T) {
	e, staff := startGroupEdge(t, "group-admin-token", "group_sync 10s")
	ctx := context.Background()
	waitCond(t, "the sync at start", func() bool {
		gs, err := e.st.Groups(ctx)
		return err == nil && len(gs) == 1 && gs[0].ID == staff
	})
	day, _ := budget.ParseWindow("day")
	if _, err := e.st.PutLimit(ctx, budget.Limit{Scope: budget.Scope{Kind: "group", ID: staff},
		Measure: budget.Messages, Amount: 1, Window: day}); err != nil {
		t.Fatal(err)
	}
	joined := time.Now()
	if !e.owui.AddToGroup(staff, "alice") {
		t.Fatal("no group")
	}
	for {
		if g, _ := e.st.UserGroups(ctx, "alice"); slices.Equal(g, []string{staff}) {
			break
		}
		if time.Since(joined) > 25*time.Second {
			t.Fatal("alice's joining was not synced within 25s of group_sync 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	for i, want := range []int{http.StatusOK, http.StatusTooManyRequests} {
		status, body := e.call(t, "/api/chat/completions", chat, "Authorization", "Bearer "+e.key)
		waitSettled(t, e.st, "alice")
		if status != want {
			t.Fatalf("alice's call %d after the scheduled sync: %d %s, want %d", i+1, status, body, want)
		}
	}
}
