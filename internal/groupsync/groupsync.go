// Package groupsync copies OpenWebUI's user groups and their members into
// the store, where group budget limits (scope group:<id>) find them.
//
// What it asks OpenWebUI (backend/open_webui/routers/groups.py), as an
// admin (get_admin_user; the key of an OpenWebUI admin, sent as
// Authorization: Bearer):
//
//  0. GET /api/v1/auths/ (routers/auths.py get_session_user): the key must
//     be an admin's. get_groups answers other users too, with only the
//     groups they are in, which would replace every group stored.
//  1. GET /api/v1/groups/ (get_groups): every group for an admin. Up to
//     OpenWebUI 0.6.x each item is a GroupResponse that carries the
//     members itself, "user_ids" (models/groups.py GroupModel, the
//     group.user_ids JSON column); nothing else is asked then.
//  2. Current OpenWebUI keeps members in the group_member table, and
//     GroupResponse has only "member_count" (models/groups.py get_groups).
//     For each group with members, GET /api/v1/groups/id/{id}/export
//     (export_group_by_id, GroupExportResponse: the group with user_ids,
//     Groups.get_group_user_ids_by_id). Of the two member routes it is the
//     lighter one: POST /api/v1/groups/id/{id}/users (get_users_in_group)
//     answers whole user records (UserInfoResponse) to a POST that
//     changes nothing. Groups with member_count 0 are not exported: some
//     versions' get_group_user_ids_by_id returns None for them, which
//     GroupExportResponse refuses (an error 500).
//
// Every read must succeed before anything is stored: SetGroups then
// replaces all groups in one transaction, so a failed sync leaves the
// groups of the last good one.
package groupsync

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
)

// Store is where groups go (store.Store has it).
type Store interface {
	SetGroups(ctx context.Context, groups []budget.Group) error
}

// Config configures a Syncer.
type Config struct {
	// OpenWebUI is OpenWebUI's base URL (openwebui), e.g.
	// http://open-webui:8080.
	OpenWebUI string
	// APIKey is an OpenWebUI admin's API key or token
	// (openwebui_api_key).
	APIKey string
	// Client makes the calls; default: one with a 30s timeout per call.
	Client *http.Client
	// MaxResponseBytes bounds each answer read; default 16 MiB. A longer
	// one fails the sync.
	MaxResponseBytes int64
	Store            Store
	// Synced, when set, is called after each sync that stored groups
	// (to make the ledger read them again: Budgets().Invalidate).
	Synced func()
}

// Result is what a sync stored.
type Result struct {
	Groups  int // groups
	Members int // memberships, over all groups
}

// Syncer reads OpenWebUI's groups into the store. Syncs run one at a
// time, so an older read never overwrites a newer one.
type Syncer struct {
	cfg  Config
	base string
	mu   sync.Mutex
}

// DefaultMaxResponseBytes is the default of Config.MaxResponseBytes.
const DefaultMaxResponseBytes = 16 << 20

// New returns a Syncer.
func New(cfg Config) *Syncer {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	cfg.MaxResponseBytes = cmp.Or(cfg.MaxResponseBytes, DefaultMaxResponseBytes)
	return &Syncer{cfg: cfg, base: strings.TrimRight(cfg.OpenWebUI, "/")}
}

// Sync reads every group and its members and stores them; it returns how
// many groups there are.
func (s *Syncer) Sync(ctx context.Context) (int, error) {
	r, err := s.SyncResult(ctx)
	return r.Groups, err
}

// SyncResult is Sync, with the number of memberships too.
func (s *Syncer) SyncResult(ctx context.Context) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	groups, err := s.read(ctx)
	if err != nil {
		return Result{}, s.scrub(err)
	}
	if err := s.cfg.Store.SetGroups(ctx, groups); err != nil {
		return Result{}, fmt.Errorf("storing OpenWebUI's groups: %w", err)
	}
	if s.cfg.Synced != nil {
		s.cfg.Synced()
	}
	r := Result{Groups: len(groups)}
	for _, g := range groups {
		r.Members += len(g.Members)
	}
	return r, nil
}

// scrub keeps the key out of an error, should anything ever echo it.
func (s *Syncer) scrub(err error) error {
	if s.cfg.APIKey == "" || !strings.Contains(err.Error(), s.cfg.APIKey) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), s.cfg.APIKey, "[key]"))
}

// listed is an item of get_groups' answer: current versions' member_count,
// older ones' user_ids.
type listed struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	UserIDs     *[]string `json:"user_ids"`
	MemberCount *int64    `json:"member_count"`
}

func (s *Syncer) read(ctx context.Context) ([]budget.Group, error) {
	if s.base == "" {
		return nil, errors.New("no OpenWebUI URL (openwebui) is set")
	}
	// get_groups answers a non-admin too, with their own groups only:
	// stored, that would drop every other group. routers/auths.py
	// get_session_user says whose key it is.
	var me struct {
		ID   string `json:"id"`
		Role string `json:"role"`
	}
	if err := s.call(ctx, http.MethodGet, "/api/v1/auths/", &me); err != nil {
		return nil, fmt.Errorf("checking openwebui_api_key: %w", err)
	}
	if me.Role != "admin" {
		return nil, fmt.Errorf("openwebui_api_key belongs to OpenWebUI user %q, whose role is %q: it must be an admin's, who sees every group", me.ID, me.Role)
	}
	var list []listed
	if err := s.call(ctx, http.MethodGet, "/api/v1/groups/", &list); err != nil {
		return nil, fmt.Errorf("listing OpenWebUI's groups: %w", err)
	}
	groups := make([]budget.Group, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, l := range list {
		if l.ID == "" {
			return nil, errors.New("listing OpenWebUI's groups: a group without an id")
		}
		if seen[l.ID] {
			return nil, fmt.Errorf("listing OpenWebUI's groups: group %q is listed twice", l.ID)
		}
		seen[l.ID] = true
		g := budget.Group{ID: l.ID, Name: l.Name}
		switch {
		case l.UserIDs != nil: // up to 0.6.x: the members are in the list
			g.Members = *l.UserIDs
		case l.MemberCount != nil && *l.MemberCount == 0:
		default:
			var export struct {
				UserIDs *[]string `json:"user_ids"`
			}
			path := "/api/v1/groups/id/" + url.PathEscape(l.ID) + "/export"
			if err := s.call(ctx, http.MethodGet, path, &export); err != nil {
				return nil, fmt.Errorf("reading the members of OpenWebUI group %q (%s): %w", l.Name, l.ID, err)
			}
			if export.UserIDs == nil {
				return nil, fmt.Errorf("reading the members of OpenWebUI group %q (%s): GET %s answered no user_ids", l.Name, l.ID, path)
			}
			g.Members = *export.UserIDs
		}
		g.Members = members(g.Members)
		groups = append(groups, g)
	}
	return groups, nil
}

// members drops empty and repeated user ids.
func members(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// call asks OpenWebUI and decodes its JSON answer into v. Errors name the
// route, the status and OpenWebUI's detail.
func (s *Syncer) call(ctx context.Context, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.APIKey)
	req.Header.Set("Accept", "application/json")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, unwrapURL(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if int64(len(body)) > s.cfg.MaxResponseBytes {
		return fmt.Errorf("%s %s: the answer is larger than %d bytes", method, path, s.cfg.MaxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("%s %s: OpenWebUI answered %d", method, path, resp.StatusCode)
		if d := detail(body); d != "" {
			msg += ": " + d
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			msg += " (openwebui_api_key must be the API key of an OpenWebUI admin)"
		}
		return errors.New(msg)
	}
	if err := json.Unmarshal(body, v); err != nil {
		ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		return fmt.Errorf("%s %s: the answer is not the JSON expected (%s, %s): is openwebui OpenWebUI's URL?",
			method, path, cmp.Or(ct, "no content type"), err)
	}
	return nil
}

// unwrapURL drops url.Error's "Get \"<url>\":" prefix: the method and
// path are said already.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// detail is FastAPI's {"detail": ...} of an error answer: the text, or a
// validation error list as JSON; else the start of the body.
func detail(body []byte) string {
	var e struct {
		Detail json.RawMessage `json:"detail"`
	}
	var d string
	if json.Unmarshal(body, &e) == nil && len(e.Detail) > 0 {
		if json.Unmarshal(e.Detail, &d) != nil {
			var b bytes.Buffer
			if json.Compact(&b, e.Detail) == nil {
				d = b.String()
			}
		}
	} else {
		d = strings.TrimSpace(string(body))
	}
	d = strings.Join(strings.Fields(d), " ")
	if r := []rune(d); len(r) > 300 {
		d = string(r[:300]) + "…"
	}
	return d
}
