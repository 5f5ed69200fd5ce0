package admin

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/store"
)

// The API's and the pages' spellings of a filter give the same store query.
func TestQueryParsersSpellings(t *testing.T) {
	day := func(s string) time.Time { t, _ := time.Parse("2006-01-02", s); return t }
	yes, no := true, false
	now := time.Date(2025, 3, 15, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		api, page string
	}{
		{"records filter", "users=u1,u2&models=gpt-4o&startDate=2025-01-01&endDate=2025-01-31",
			"users=u1,u2&models=gpt-4o&from=2025-01-01&to=2025-01-30"},
		{"records sort", "sortField=cost&sortOrder=descend", "sort=cost&order=desc"},
		{"records model sort", "sortField=model_name&sortOrder=ascend", "sortField=model&sortOrder=asc"},
		{"records page", "page=2&pageSize=50", "page=2"},
		{"records user search", "userSearch=Bob%20Lee&models=gpt-4o", "user=+Bob+Lee+&models=gpt-4o"},
		{"records user search and ids", "userSearch=bob&users=u1", "user=bob&users=u1"},
		{"users status", "deleted=true&sortField=balance&sortOrder=ascend", "status=blocked&sort=balance&order=asc"},
		{"users active", "deleted=false&search=bob", "status=active&search=+bob+"},
		{"usage custom", "startTime=2025-01-01&endTime=2025-02-01", "range=custom&from=2025-01-01&to=2025-01-31"},
		{"usage ends alone", "startTime=2025-01-01", "from=2025-01-01"},
	}
	for _, c := range cases {
		api, _ := url.ParseQuery(c.api)
		page, _ := url.ParseQuery(c.page)
		var a, p any
		var aerr, perr error
		switch {
		case strings.HasPrefix(c.name, "records"):
			a, aerr = recordQuery(api, recordsPagePageSize)
			p, perr = recordQuery(page, recordsPagePageSize)
		case strings.HasPrefix(c.name, "users"):
			a, aerr = userQuery(api)
			p, perr = userQuery(page)
		default:
			a, aerr = usageQuery(api, now, "all")
			p, perr = usageQuery(page, now, "7d")
		}
		if aerr != nil || perr != nil || !reflect.DeepEqual(a, p) {
			t.Errorf("%s: API %+v (%v), page %+v (%v)", c.name, a, aerr, p, perr)
		}
	}
	// And what they give.
	rq, _ := recordQuery(url.Values{"users": {"u1,u2"}, "from": {"2025-01-01"}, "to": {"2025-01-30"}, "sortField": {"cost"}, "sortOrder": {"descend"}}, 10)
	if want := (store.RecordQuery{Page: 1, PageSize: 10, SortField: "cost", Descending: true, Users: []string{"u1", "u2"},
		From: day("2025-01-01"), To: day("2025-01-31")}); !reflect.DeepEqual(rq, want) {
		t.Errorf("records: %+v", rq)
	}
	rq, _ = recordQuery(url.Values{"user": {" ann@example.com "}, "models": {"gpt-4o, Llama 3"}}, 10)
	if want := (store.RecordQuery{Page: 1, PageSize: 10, Descending: true, UserSearch: "ann@example.com",
		Models: []string{"gpt-4o", "Llama 3"}}); !reflect.DeepEqual(rq, want) {
		t.Errorf("records user search: %+v", rq)
	}
	uq, _ := userQuery(url.Values{"status": {"active"}})
	if want := (store.UserQuery{Page: 1, PageSize: 20, Descending: true, Blocked: &no}); !reflect.DeepEqual(uq, want) {
		t.Errorf("users: %+v", uq)
	}
	uq, _ = userQuery(url.Values{"deleted": {"true"}})
	if !reflect.DeepEqual(uq.Blocked, &yes) {
		t.Errorf("users deleted: %+v", uq)
	}
	for q, want := range map[string]usageRange{
		"":              {Preset: "all"},
		"range=7d":      {Preset: "7d", From: day("2025-03-09")},
		"range=all":     {Preset: "all"},
		"to=2025-03-01": {Preset: "custom", To: day("2025-03-02")},
	} {
		v, _ := url.ParseQuery(q)
		if got, err := usageQuery(v, now, "all"); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("usage %q: %+v %v", q, got, err)
		}
	}
}

// A bad value is an error naming the parameter, in either spelling, and a
// 400 from the API and from the page alike.
func TestQueryParsersBadValues(t *testing.T) {
	now := time.Now()
	records := func(q url.Values) error { _, err := recordQuery(q, 10); return err }
	users := func(q url.Values) error { _, err := userQuery(q); return err }
	usage := func(q url.Values) error { _, err := usageQuery(q, now, "all"); return err }
	cases := []struct {
		parse      func(url.Values) error
		query      string
		param      string
		api, pageP string // the API's path and the page's, to check the 400
	}{
		{records, "page=0", "page", "/api/v1/panel/records", "/records"},
		{records, "page=x", "page", "/api/v1/panel/records", "/records"},
		{records, "pageSize=501", "pageSize", "/api/v1/panel/records", "/records"},
		{records, "sortField=password", "sortField", "/api/v1/panel/records/export", "/records"},
		{records, "sort=password", "sort", "/api/v1/panel/records", "/records"},
		{records, "sortOrder=sideways", "sortOrder", "/api/v1/panel/records", "/records"},
		{records, "order=sideways", "order", "/api/v1/panel/records", "/records"},
		{records, "startDate=yesterday", "startDate", "/api/v1/panel/records", "/records"},
		{records, "from=yesterday", "from", "/api/v1/panel/records", "/records"},
		{records, "endDate=yesterday", "endDate", "/api/v1/panel/records", "/records"},
		{records, "to=yesterday", "to", "/api/v1/panel/records", "/records"},
		{records, "to=9999-12-31", "to", "/api/v1/panel/records", "/records"},
		{records, "userSearch=" + strings.Repeat("x", 201), "userSearch", "/api/v1/panel/records", "/records"},
		{records, "user=" + url.QueryEscape(strings.Repeat("é", 201)), "user", "/api/v1/panel/records/export", "/records"},
		{users, "sortField=password", "sortField", "/api/v1/users", "/users"},
		{users, "sort=password", "sort", "/api/v1/users", "/users"},
		{users, "order=up", "order", "/api/v1/users", "/users"},
		{users, "deleted=maybe", "deleted", "/api/v1/users", "/users"},
		{users, "status=maybe", "status", "/api/v1/users", "/users"},
		{users, "page=-1", "page", "/api/v1/users", "/users"},
		{usage, "startTime=soon", "startTime", "/api/v1/panel/usage", "/"},
		{usage, "endTime=soon", "endTime", "/api/v1/panel/usage", "/"},
		{usage, "range=custom&from=soon", "from", "/api/v1/panel/usage", "/"},
		{usage, "to=soon", "to", "/api/v1/panel/usage", "/"},
		{usage, "range=decade", "range", "/api/v1/panel/usage", "/"},
	}
	for _, c := range cases {
		q, _ := url.ParseQuery(c.query)
		if err := c.parse(q); err == nil || !strings.HasPrefix(err.Error(), c.param+": ") {
			t.Errorf("%s: %v", c.query, err)
		}
	}
	eachBackend(t, func(t *testing.T, e *env) {
		srv := prefixed(t, e, "/monitor", Options{})
		b := newBrowser(t, srv.URL, "/monitor")
		b.login()
		for _, c := range cases {
			if status, r, _ := e.call(t, "GET", c.api+"?"+c.query, ""); status != http.StatusBadRequest ||
				!strings.HasPrefix(r.Get("error").Str, c.param+": ") {
				t.Errorf("API %s?%s: %d %s", c.api, c.query, status, r.Raw)
			}
			if p := b.get(c.pageP + "?" + c.query); p.resp.StatusCode != http.StatusBadRequest ||
				!strings.Contains(p.body, c.param+": ") {
				t.Errorf("page %s?%s: %d", c.pageP, c.query, p.resp.StatusCode)
			}
		}
	})
}
