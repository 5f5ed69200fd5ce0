package admin

// The query parameters of the lists, read in one place for the JSON API and
// the pages alike, so that a filter means the same on both. The API's names
// are the old monitor's and keep working; where the pages spell the same
// thing otherwise, both spellings are read here, the API's first. A bad
// value is an error that starts with the parameter's name; both sides
// answer it with a 400.

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/store"
)

const (
	recordsAPIPageSize  = 10 // the old monitor's
	recordsPagePageSize = 50
	usersPageSize       = 20 // the API's and the users page's
)

// param returns the first of names given a value in q, and that value; no
// value: names[0] and "".
func param(q url.Values, names ...string) (name, value string) {
	for _, n := range names {
		if v := q.Get(n); v != "" {
			return n, v
		}
	}
	return names[0], ""
}

// paging reads page and pageSize; a bad value is an error.
func paging(q url.Values, defSize int) (page, size int, err error) {
	page, size = 1, defSize
	if v := q.Get("page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 1 {
			return 0, 0, fmt.Errorf("page: %q is not a page number", v)
		}
	}
	if v := q.Get("pageSize"); v != "" {
		if size, err = strconv.Atoi(v); err != nil || size < 1 || size > 500 {
			return 0, 0, fmt.Errorf("pageSize: %q is not between 1 and 500", v)
		}
	}
	return page, size, nil
}

// sorting reads the sort field (sortField, or the pages' sort) through
// fields, which maps the names accepted to the store's, and the order
// (sortOrder, or the pages' order): "ascend"/"asc" or "descend"/"desc". No
// field: the store's default, newest first, whatever the order (as the old
// monitor did); a field without an order: ascending.
func sorting(q url.Values, fields map[string]string, names string) (field string, descending bool, err error) {
	fname, f := param(q, "sortField", "sort")
	if f != "" {
		var ok bool
		if field, ok = fields[f]; !ok {
			return "", false, fmt.Errorf("%s: %s is not one of %s", fname, quote(f), names)
		}
	}
	oname, o := param(q, "sortOrder", "order")
	switch strings.ToLower(o) {
	case "", "ascend", "asc":
	case "descend", "desc":
		descending = true
	default:
		return "", false, fmt.Errorf("%s: %q is neither ascend nor descend", oname, o)
	}
	return field, descending || f == "", nil
}

// recordSort maps the sort fields the old dashboard sent to ours.
var recordSort = map[string]string{
	"use_time": "created_at", "created_at": "created_at",
	"model_name": "model", "model": "model",
	"cost": "cost", "input_tokens": "input_tokens", "output_tokens": "output_tokens",
	"nickname": "nickname", "user_id": "user_id", "balance_after": "balance_after",
}

// maxUserSearch is the longest user search a records filter takes.
const maxUserSearch = 200

// recordQuery reads a records filter: the API's list and export
// (?page&pageSize&sortField&sortOrder&users&models&userSearch&startDate&endDate)
// and the records page, which sends from and to, inclusive dates, for
// startDate and endDate, and user for userSearch: a user's name or email
// (any part of it, in any case) or id. models takes model ids or the
// names the prices give them (resolveModels). defSize is the page size
// when none is asked for.
func recordQuery(q url.Values, defSize int) (store.RecordQuery, error) {
	var rq store.RecordQuery
	var err error
	if rq.Page, rq.PageSize, err = paging(q, defSize); err != nil {
		return rq, err
	}
	if rq.SortField, rq.Descending, err = sorting(q, recordSort,
		"use_time, model_name, cost, input_tokens, output_tokens, nickname, user_id, balance_after"); err != nil {
		return rq, err
	}
	rq.Users = list(q.Get("users"))
	rq.Models = list(q.Get("models"))
	name, search := param(q, "userSearch", "user")
	if rq.UserSearch = strings.TrimSpace(search); len([]rune(rq.UserSearch)) > maxUserSearch {
		return rq, fmt.Errorf("%s: longer than %d characters", name, maxUserSearch)
	}
	rq.From, rq.To, err = bounds(q, "startDate", "endDate")
	return rq, err
}

// recordSortName is the name the API and the records page use for the
// store's sort field sf.
func recordSortName(sf string) string {
	switch sf {
	case "", "created_at":
		return "use_time"
	case "model":
		return "model_name"
	}
	return sf
}

func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

var userSort = func() map[string]string {
	m := map[string]string{}
	for _, f := range store.UserSortFields {
		m[f] = f
	}
	return m
}()

// userQuery reads a users filter: the API's
// ?page&pageSize&sortField&sortOrder&search&deleted and the users page's
// spellings, sort, order and status (active or blocked) for deleted.
func userQuery(q url.Values) (store.UserQuery, error) {
	uq := store.UserQuery{Search: strings.TrimSpace(q.Get("search"))}
	var err error
	if uq.Page, uq.PageSize, err = paging(q, usersPageSize); err != nil {
		return uq, err
	}
	if uq.SortField, uq.Descending, err = sorting(q, userSort, strings.Join(store.UserSortFields, ", ")); err != nil {
		return uq, err
	}
	blocked := func(b bool) *bool { return &b }
	if d := q.Get("deleted"); d != "" {
		switch d {
		case "true", "false":
			uq.Blocked = blocked(d == "true")
		default:
			return uq, fmt.Errorf("deleted: %s is neither true nor false", quote(d))
		}
	} else {
		switch s := q.Get("status"); s {
		case "":
		case "active", "blocked":
			uq.Blocked = blocked(s == "blocked")
		default:
			return uq, fmt.Errorf("status: %s is neither active nor blocked", quote(s))
		}
	}
	return uq, nil
}

// presets are the usage ranges by name; custom is from and to.
var presets = []string{"today", "7d", "month", "30d", "all", "custom"}

// usageRange is a range of usage: [From, To), zero ends unbounded, and the
// preset it came from.
type usageRange struct {
	Preset   string
	From, To time.Time
}

// usageQuery reads a usage range: the API's ?startTime&endTime, and the
// overview's range (a preset) with, for custom, from and to (inclusive
// dates). A range given by its ends alone is custom; nothing at all is
// preset def ("all" for the API, "7d" for the overview).
func usageQuery(q url.Values, now time.Time, def string) (usageRange, error) {
	now = now.UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	r := usageRange{Preset: q.Get("range")}
	if r.Preset == "" {
		r.Preset = def
		for _, k := range []string{"startTime", "endTime", "from", "to"} {
			if q.Get(k) != "" {
				r.Preset = "custom"
			}
		}
	}
	var err error
	switch r.Preset {
	case "today":
		r.From = today
	case "7d":
		r.From = today.AddDate(0, 0, -6)
	case "month":
		r.From = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	case "30d":
		r.From = today.AddDate(0, 0, -29)
	case "all":
	case "custom":
		r.From, r.To, err = bounds(q, "startTime", "endTime")
	default:
		return r, fmt.Errorf("range: %s is not one of %s", quote(r.Preset), strings.Join(presets, ", "))
	}
	return r, err
}

// overviewMetric reads the overview's metric: cost (the default) or calls.
func overviewMetric(q url.Values) string {
	if q.Get("metric") == "calls" {
		return "calls"
	}
	return "cost"
}

// bounds reads a time range [from, to): the start from the API's start (or
// the pages' from), the end from the API's end, exclusive, or the pages'
// to, an inclusive date.
func bounds(q url.Values, start, end string) (from, to time.Time, err error) {
	if from, err = parseTime(param(q, start, "from")); err != nil {
		return from, to, err
	}
	if v := q.Get(end); v != "" || q.Get("to") == "" {
		to, err = parseTime(end, v)
		return from, to, err
	}
	v := q.Get("to")
	if to, err = time.Parse("2006-01-02", v); err != nil {
		return from, time.Time{}, fmt.Errorf("to: %q is not a date (YYYY-MM-DD)", v)
	}
	if to = to.AddDate(0, 0, 1); to.Year() > 9999 {
		return from, time.Time{}, fmt.Errorf("to: %q is out of range (years 1 to 9999)", v)
	}
	return from, to, nil
}

// parseTime reads an RFC 3339 time, a date (YYYY-MM-DD, UTC) or unix
// milliseconds.
func parseTime(name, v string) (time.Time, error) {
	t, err := parseAnyTime(name, v)
	if y := t.UTC().Year(); err == nil && !t.IsZero() && (y < 1 || y > 9999) {
		return time.Time{}, fmt.Errorf("%s: %q is out of range (years 1 to 9999)", name, v)
	}
	return t, err
}

func parseAnyTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, nil
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%s: %q is not a time (RFC 3339, YYYY-MM-DD or unix milliseconds)", name, v)
}
