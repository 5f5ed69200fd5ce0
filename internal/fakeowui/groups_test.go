package fakeowui

import (
	"testing"

	"github.com/tidwall/gjson"
)

// TestOpenWebUIGroupsAdminOnly: the admin routes answer a non-admin 401
// ERROR_MESSAGES.ACCESS_PROHIBITED (utils/auth.py get_admin_user), no
// credential 401 "Not authenticated" (get_current_user); the list
// (get_groups, get_verified_user) answers a user, but only their groups.
func TestOpenWebUIGroupsAdminOnly(t *testing.T) {
	o := NewOpenWebUI(t, nil)
	_, userKey := o.AddUser("u1", "u1@example.com", "U1", "user")
	_, pendingKey := o.AddUser("p1", "p1@example.com", "P1", "pending")
	gid := o.CreateGroup("staff")
	other := o.CreateGroup("others")
	o.AddToGroup(gid, "u1")

	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/groups/create"},
		{"GET", "/api/v1/groups/id/" + gid + "/export"},
		{"POST", "/api/v1/groups/id/" + gid + "/users"},
		{"POST", "/api/v1/groups/id/" + gid + "/users/add"},
		{"POST", "/api/v1/groups/id/" + gid + "/users/remove"},
	} {
		for _, key := range []string{userKey, pendingKey} {
			var body string
			if c.method == "POST" {
				body = readAll(t, post(t, o.URL()+c.path, `{"name":"x","description":"","user_ids":["u1"]}`, "Authorization", "Bearer "+key))
			} else {
				body = readAll(t, get(t, o.URL()+c.path, "Authorization", "Bearer "+key))
			}
			if gjson.Get(body, "detail").Str != DetailAccessProhibited {
				t.Errorf("%s %s as non-admin: %s", c.method, c.path, body)
			}
		}
	}
	if resp := get(t, o.URL()+"/api/v1/groups/id/"+gid+"/export"); resp.StatusCode != 401 ||
		gjson.Get(readAll(t, resp), "detail").Str != DetailNotAuthenticated {
		t.Errorf("export without a credential: %d", resp.StatusCode)
	}
	resp := get(t, o.URL()+"/api/v1/groups/id/"+gid+"/export", "Authorization", "Bearer "+userKey)
	if resp.StatusCode != 401 {
		t.Errorf("export as user: %d, want 401 (get_admin_user)", resp.StatusCode)
	}
	// get_groups: a user sees only the groups they belong to.
	resp = get(t, o.URL()+"/api/v1/groups/", "Authorization", "Bearer "+userKey)
	j := gjson.Parse(readAll(t, resp))
	if resp.StatusCode != 200 || j.Get("#").Int() != 1 || j.Get("0.id").Str != gid || j.Get("0.member_count").Int() != 1 {
		t.Errorf("user's list: %d %s", resp.StatusCode, j.Raw)
	}
	// get_groups' share filter: "members" groups the user belongs to.
	resp = get(t, o.URL()+"/api/v1/groups/?share=true", "Authorization", "Bearer "+userKey)
	if j := gjson.Parse(readAll(t, resp)); j.Get("#").Int() != 1 || j.Get("0.id").Str != gid {
		t.Errorf("share=true: %s (other %s)", j.Raw, other)
	}
	resp = get(t, o.URL()+"/api/v1/groups/", "Authorization", "Bearer "+pendingKey)
	if resp.StatusCode != 401 || gjson.Get(readAll(t, resp), "detail").Str != DetailAccessProhibited {
		t.Errorf("pending user's list: %d (get_verified_user)", resp.StatusCode)
	}
}

// TestOpenWebUIGroupsLifecycle: create_new_group, add_user_to_group,
// export_group_by_id, get_users_in_group, remove_users_from_group and
// get_groups as an admin sees them.
func TestOpenWebUIGroupsLifecycle(t *testing.T) {
	o := NewOpenWebUI(t, nil)
	_, key := o.AddUser("admin", "admin@example.com", "Admin", "admin")
	o.AddUser("u1", "u1@example.com", "U1", "user")
	o.AddUser("u2", "u2@example.com", "U2", "user")
	auth := []string{"Authorization", "Bearer " + key}

	// create_new_group: GroupForm needs name and description (422).
	resp := post(t, o.URL()+"/api/v1/groups/create", `{"name":"staff"}`, auth...)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 422 || j.Get("detail.0.loc.1").Str != "description" {
		t.Errorf("create without description: %d %s", resp.StatusCode, j.Raw)
	}
	resp = post(t, o.URL()+"/api/v1/groups/create", `{"name":"staff","description":"the staff"}`, auth...)
	g := gjson.Parse(readAll(t, resp))
	gid := g.Get("id").Str
	if resp.StatusCode != 200 || len(gid) != 36 || g.Get("name").Str != "staff" || g.Get("user_id").Str != "admin" ||
		g.Get("member_count").Int() != 0 || g.Get("data.config.share").Str != "members" || g.Get("user_ids").Exists() {
		t.Fatalf("create: %d %s", resp.StatusCode, g.Raw)
	}

	// add_user_to_group: unknown users dropped (get_valid_user_ids),
	// duplicates kept once.
	resp = post(t, o.URL()+"/api/v1/groups/id/"+gid+"/users/add", `{"user_ids":["u1","ghost","u1"]}`, auth...)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 200 || j.Get("member_count").Int() != 1 {
		t.Errorf("add: %d %s", resp.StatusCode, j.Raw)
	}
	post(t, o.URL()+"/api/v1/groups/id/"+gid+"/users/add", `{"user_ids":["u2"]}`, auth...)
	resp = post(t, o.URL()+"/api/v1/groups/id/nope/users/add", `{"user_ids":["u2"]}`, auth...)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 400 || j.Get("detail").Str != "[ERROR: Error adding users to group]" {
		t.Errorf("add to unknown group: %d %s", resp.StatusCode, j.Raw)
	}

	// export_group_by_id: user_ids; unknown group 401 NOT_FOUND.
	resp = get(t, o.URL()+"/api/v1/groups/id/"+gid+"/export", auth...)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 200 || j.Get("user_ids").Raw != `["u1","u2"]` || j.Get("member_count").Int() != 2 {
		t.Errorf("export: %d %s", resp.StatusCode, j.Raw)
	}
	resp = get(t, o.URL()+"/api/v1/groups/id/nope/export", auth...)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 401 || j.Get("detail").Str != DetailNotFound {
		t.Errorf("export unknown: %d %s", resp.StatusCode, j.Raw)
	}

	// get_users_in_group: user infos; unknown group [].
	resp = post(t, o.URL()+"/api/v1/groups/id/"+gid+"/users", "", auth...)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 200 || j.Get("#.id").Raw != `["u1","u2"]` || j.Get("0.email").Str != "u1@example.com" {
		t.Errorf("users: %d %s", resp.StatusCode, j.Raw)
	}
	resp = post(t, o.URL()+"/api/v1/groups/id/nope/users", "", auth...)
	if body := readAll(t, resp); resp.StatusCode != 200 || body != "[]" {
		t.Errorf("users of unknown group: %d %s", resp.StatusCode, body)
	}

	// remove_users_from_group.
	resp = post(t, o.URL()+"/api/v1/groups/id/"+gid+"/users/remove", `{"user_ids":["u1"]}`, auth...)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 200 || j.Get("member_count").Int() != 1 {
		t.Errorf("remove: %d %s", resp.StatusCode, j.Raw)
	}
	resp = post(t, o.URL()+"/api/v1/groups/id/nope/users/remove", `{"user_ids":["u1"]}`, auth...)
	if j := gjson.Parse(readAll(t, resp)); resp.StatusCode != 400 || j.Get("detail").Str != "[ERROR: Error removing users from group]" {
		t.Errorf("remove from unknown group: %d %s", resp.StatusCode, j.Raw)
	}

	// get_groups: an admin sees every group, member or not, most recently
	// updated first, with member_count and without user_ids.
	empty := o.CreateGroup("empty")
	resp = get(t, o.URL()+"/api/v1/groups/", auth...)
	j := gjson.Parse(readAll(t, resp))
	if resp.StatusCode != 200 || j.Get("#").Int() != 2 || j.Get("0.id").Str != empty || j.Get("1.id").Str != gid ||
		j.Get("1.member_count").Int() != 1 || j.Get("0.member_count").Int() != 0 || j.Get("1.user_ids").Exists() {
		t.Errorf("admin's list: %d %s", resp.StatusCode, j.Raw)
	}
	if o.AddToGroup("nope", "u1") || o.RemoveFromGroup("nope", "u1") {
		t.Error("helpers found an unknown group")
	}
}
