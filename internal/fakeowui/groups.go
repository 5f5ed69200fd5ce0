package fakeowui

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// OpenWebUI's user groups (backend/open_webui/routers/groups.py over
// models/groups.py, the group and group_member tables of current
// OpenWebUI). Reads and changes are admin-only (get_admin_user) but for
// the list, GET /api/v1/groups/ (get_groups, get_verified_user), which
// gives admins every group and others only theirs:
//
//   - GET /api/v1/groups/: get_groups;
//   - POST /api/v1/groups/create: create_new_group;
//   - GET /api/v1/groups/id/{id}/export: export_group_by_id (with user_ids);
//   - POST /api/v1/groups/id/{id}/users: get_users_in_group;
//   - POST /api/v1/groups/id/{id}/users/add: add_user_to_group;
//   - POST /api/v1/groups/id/{id}/users/remove: remove_users_from_group.
//
// Tests may also use CreateGroup, AddToGroup and RemoveFromGroup, which
// change the same tables without HTTP.

// DetailNotFound is ERROR_MESSAGES.NOT_FOUND (constants.py), which the
// group routes answer with 401 for an unknown group.
const DetailNotFound = "We could not find what you're looking for :/"

// fakeGroup is one row of the group table with its group_member rows.
type fakeGroup struct {
	id, userID, name, description string
	data, meta, permissions       json.RawMessage // null when unset
	createdAt, updatedAt          int64           // epoch seconds
	seq                           int64           // orders groups of one updated_at second
	members                       []string        // user ids, in insertion order
}

// groupSeq makes updated_at ties sort as the last change last.
var groupSeq atomic.Int64

func (o *OpenWebUI) mountGroupRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/groups/{$}", o.verified(o.getGroups))
	mux.HandleFunc("POST /api/v1/groups/create", o.admin(o.createGroup))
	mux.HandleFunc("GET /api/v1/groups/id/{id}/export", o.admin(o.exportGroup))
	mux.HandleFunc("POST /api/v1/groups/id/{id}/users", o.admin(o.usersInGroup))
	mux.HandleFunc("POST /api/v1/groups/id/{id}/users/add", o.admin(o.addUsersToGroup))
	mux.HandleFunc("POST /api/v1/groups/id/{id}/users/remove", o.admin(o.removeUsersFromGroup))
}

// admin is utils/auth.py get_admin_user: get_current_user, then a role
// other than "admin" gets 401 ERROR_MESSAGES.ACCESS_PROHIBITED (401, not
// 403, as get_verified_user).
func (o *OpenWebUI) admin(h func(http.ResponseWriter, *http.Request, fakeUser)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, status, fail := o.authenticate(r)
		if fail != "" {
			detail(w, status, fail)
			return
		}
		if s.user.role != "admin" {
			detail(w, http.StatusUnauthorized, DetailAccessProhibited)
			return
		}
		h(w, r, s.user)
	}
}

// CreateGroup adds a group as create_new_group does (by the first admin,
// or "" without one) and returns its id.
func (o *OpenWebUI) CreateGroup(name string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	owner := ""
	for _, u := range o.users {
		if u.role == "admin" && (owner == "" || u.id < owner) {
			owner = u.id
		}
	}
	return o.insertGroupLocked(owner, name, "", nil, nil).id
}

// AddToGroup adds users to a group as add_user_to_group does: unknown
// user ids are dropped (Users.get_valid_user_ids), members already in
// are kept once; false when there is no such group.
func (o *OpenWebUI) AddToGroup(groupID string, userIDs ...string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.addToGroupLocked(groupID, userIDs) != nil
}

// RemoveFromGroup removes users from a group as remove_users_from_group
// does; false when there is no such group.
func (o *OpenWebUI) RemoveFromGroup(groupID string, userIDs ...string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.removeFromGroupLocked(groupID, userIDs) != nil
}

// insertGroupLocked is models/groups.py insert_new_group: a uuid4 id, and
// data.config.share defaulting to DEFAULT_GROUP_SHARE_PERMISSION
// ("members", env.py) (_ensure_default_share_config).
func (o *OpenWebUI) insertGroupLocked(owner, name, description string, permissions, data json.RawMessage) *fakeGroup {
	var d map[string]any
	if json.Unmarshal(data, &d) != nil || d == nil {
		d = map[string]any{}
	}
	cfg, _ := d["config"].(map[string]any)
	if cfg == nil {
		cfg = map[string]any{}
	}
	if _, ok := cfg["share"]; !ok {
		cfg["share"] = "members"
	}
	d["config"] = cfg
	if len(permissions) == 0 {
		permissions = json.RawMessage("null")
	}
	now := time.Now().Unix()
	g := &fakeGroup{
		id: newUUID(), userID: owner, name: name, description: description,
		data: mustJSON(d), meta: json.RawMessage("null"), permissions: permissions,
		createdAt: now, updatedAt: now, seq: groupSeq.Add(1),
	}
	o.groups = append(o.groups, g)
	return g
}

func (o *OpenWebUI) groupLocked(id string) *fakeGroup {
	for _, g := range o.groups {
		if g.id == id {
			return g
		}
	}
	return nil
}

func (g *fakeGroup) touch() {
	g.updatedAt, g.seq = time.Now().Unix(), groupSeq.Add(1)
}

// addToGroupLocked is add_user_to_group: get_valid_user_ids, then
// models/groups.py add_users_to_group (a duplicate member is ignored;
// updated_at is set even when nobody was added); nil without the group.
func (o *OpenWebUI) addToGroupLocked(id string, userIDs []string) *fakeGroup {
	g := o.groupLocked(id)
	if g == nil {
		return nil
	}
	for _, u := range userIDs {
		if o.users[u] != nil && !slices.Contains(g.members, u) {
			g.members = append(g.members, u)
		}
	}
	g.touch()
	return g
}

// removeFromGroupLocked is models/groups.py remove_users_from_group: with
// no user ids the group is returned untouched.
func (o *OpenWebUI) removeFromGroupLocked(id string, userIDs []string) *fakeGroup {
	g := o.groupLocked(id)
	if g == nil || len(userIDs) == 0 {
		return g
	}
	g.members = slices.DeleteFunc(g.members, func(u string) bool { return slices.Contains(userIDs, u) })
	g.touch()
	return g
}

// response is GroupResponse: GroupModel and member_count.
func (g *fakeGroup) response() map[string]any {
	return map[string]any{
		"id": g.id, "user_id": g.userID, "name": g.name, "description": g.description,
		"data": g.data, "meta": g.meta, "permissions": g.permissions,
		"created_at": g.createdAt, "updated_at": g.updatedAt, "member_count": len(g.members),
	}
}

// sortedGroupsLocked is the groups as models/groups.py get_groups orders
// them: updated_at descending.
func (o *OpenWebUI) sortedGroupsLocked() []*fakeGroup {
	gs := slices.Clone(o.groups)
	sort.SliceStable(gs, func(i, j int) bool {
		if gs[i].updatedAt != gs[j].updatedAt {
			return gs[i].updatedAt > gs[j].updatedAt
		}
		return gs[i].seq > gs[j].seq
	})
	return gs
}

// getGroups is GET /api/v1/groups/ (get_groups, get_verified_user): an
// admin gets every group; anyone else the groups they are a member of,
// or, with ?share=, the groups they may share to (models/groups.py
// get_groups' share filter: share=true gives the groups whose
// data.config.share is unset or true, and those set to "members" that
// they belong to; share=false those set to false). A share value
// FastAPI cannot read as a bool is 422.
func (o *OpenWebUI) getGroups(w http.ResponseWriter, r *http.Request, u fakeUser) {
	var share *bool
	if q := r.URL.Query(); q.Has("share") {
		b, ok := queryBool(q.Get("share"))
		if !ok {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
				"type": "bool_parsing", "loc": []any{"query", "share"},
				"msg": "Input should be a valid boolean, unable to interpret input", "input": q.Get("share")}}})
			return
		}
		share = &b
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	out := []map[string]any{}
	for _, g := range o.sortedGroupsLocked() {
		member := slices.Contains(g.members, u.id)
		if u.role != "admin" {
			switch {
			case share == nil && !member:
				continue
			case share != nil && !g.shareable(*share, member):
				continue
			}
		}
		out = append(out, g.response())
	}
	writeJSON(w, http.StatusOK, out)
}

// shareable is get_groups' share filter for one group.
func (g *fakeGroup) shareable(share, member bool) bool {
	var d struct {
		Config struct {
			Share json.RawMessage `json:"share"`
		} `json:"config"`
	}
	json.Unmarshal(g.data, &d)
	v := strings.ToLower(strings.Trim(string(d.Config.Share), `"`))
	if share {
		return v == "" || v == "null" || v == "true" || v == "1" || (v == "members" && member)
	}
	return v == "false"
}

// queryBool reads a query value as pydantic's bool: true, 1, yes, on, y, t
// and their opposites, case-insensitively.
func queryBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "1", "true", "t", "yes", "y", "on":
		return true, true
	case "0", "false", "f", "no", "n", "off":
		return false, true
	}
	return false, false
}

// missingField is FastAPI's 422 for a required body field absent.
func missingField(w http.ResponseWriter, field string, body pyBody) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
		"type": "missing", "loc": []any{"body", field}, "msg": "Field required", "input": body}}})
}

// stringField reads a GroupForm string field: 422 when missing or not a
// string.
func stringField(w http.ResponseWriter, body pyBody, field string) (string, bool) {
	raw, ok := body[field]
	if !ok {
		missingField(w, field, body)
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
			"type": "string_type", "loc": []any{"body", field}, "msg": "Input should be a valid string", "input": raw}}})
		return "", false
	}
	return s, true
}

// createGroup is POST /api/v1/groups/create (create_new_group, admin):
// GroupForm {name, description, permissions?, data?}; the new group as a
// GroupResponse with member_count 0.
func (o *OpenWebUI) createGroup(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	body, ok := parseBody(w, r, raw)
	if !ok {
		return
	}
	name, ok := stringField(w, body, "name")
	if !ok {
		return
	}
	description, ok := stringField(w, body, "description")
	if !ok {
		return
	}
	o.mu.Lock()
	g := o.insertGroupLocked(u.id, name, description, body["permissions"], body["data"])
	resp := g.response()
	o.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// exportGroup is GET /api/v1/groups/id/{id}/export (export_group_by_id,
// admin): GroupExportResponse, a GroupResponse with user_ids; an unknown
// group is 401 ERROR_MESSAGES.NOT_FOUND.
func (o *OpenWebUI) exportGroup(w http.ResponseWriter, r *http.Request, u fakeUser) {
	o.mu.Lock()
	g := o.groupLocked(r.PathValue("id"))
	var resp map[string]any
	if g != nil {
		resp = g.response()
		resp["user_ids"] = append([]string{}, g.members...)
	}
	o.mu.Unlock()
	if g == nil {
		detail(w, http.StatusUnauthorized, DetailNotFound)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// usersInGroup is POST /api/v1/groups/id/{id}/users (get_users_in_group,
// admin): Users.get_users_by_group_id, the users joined to the group's
// members, as UserInfoResponse (id, name, email, role); an unknown group
// has none ([]).
func (o *OpenWebUI) usersInGroup(w http.ResponseWriter, r *http.Request, u fakeUser) {
	o.mu.Lock()
	out := []map[string]any{}
	if g := o.groupLocked(r.PathValue("id")); g != nil {
		for _, id := range g.members {
			if m := o.users[id]; m != nil {
				out = append(out, map[string]any{"id": m.id, "name": m.name, "email": m.email, "role": m.role})
			}
		}
	}
	o.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// userIDsForm reads UserIdsForm {user_ids: list[str] | None}.
func userIDsForm(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	raw, _ := io.ReadAll(r.Body)
	body, ok := parseBody(w, r, raw)
	if !ok {
		return nil, false
	}
	var ids []string
	if v, ok := body["user_ids"]; ok && string(v) != "null" {
		if json.Unmarshal(v, &ids) != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
				"type": "list_type", "loc": []any{"body", "user_ids"}, "msg": "Input should be a valid list", "input": v}}})
			return nil, false
		}
	}
	return ids, true
}

// addUsersToGroup is POST /api/v1/groups/id/{id}/users/add
// (add_user_to_group, admin): the group as a GroupResponse; an unknown
// group is 400 ERROR_MESSAGES.DEFAULT("Error adding users to group").
func (o *OpenWebUI) addUsersToGroup(w http.ResponseWriter, r *http.Request, u fakeUser) {
	ids, ok := userIDsForm(w, r)
	if !ok {
		return
	}
	o.mu.Lock()
	g := o.addToGroupLocked(r.PathValue("id"), ids)
	var resp map[string]any
	if g != nil {
		resp = g.response()
	}
	o.mu.Unlock()
	if g == nil {
		detail(w, http.StatusBadRequest, "[ERROR: Error adding users to group]")
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// removeUsersFromGroup is POST /api/v1/groups/id/{id}/users/remove
// (remove_users_from_group, admin): the group as a GroupResponse; an
// unknown group is 400 ERROR_MESSAGES.DEFAULT("Error removing users from
// group").
func (o *OpenWebUI) removeUsersFromGroup(w http.ResponseWriter, r *http.Request, u fakeUser) {
	ids, ok := userIDsForm(w, r)
	if !ok {
		return
	}
	o.mu.Lock()
	g := o.removeFromGroupLocked(r.PathValue("id"), ids)
	var resp map[string]any
	if g != nil {
		resp = g.response()
	}
	o.mu.Unlock()
	if g == nil {
		detail(w, http.StatusBadRequest, "[ERROR: Error removing users from group]")
		return
	}
	writeJSON(w, http.StatusOK, resp)
}
