package storetest

// The records' user search (RecordQuery.UserSearch): the records of the
// users whose name or email holds the text, case-insensitively and with
// LIKE's wildcards taken literally, or whose id it is exactly.

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/store"
)

func testListRecordsUserSearch(t *testing.T, s store.Store) {
	ctx := t.Context()
	users := []store.UserInfo{
		{ID: "s1", Name: "Ann Lee", Email: "ann@example.com"},
		{ID: "s2", Name: "100% Real", Email: "real@example.com"},
		{ID: "s3", Name: "Bob", Email: "b_o_b@example.org"},
		{ID: "s4", Name: "Carl", Email: "bxoxb@example.org"},
		{ID: "s5", Name: "ANNA", Email: "x@EXAMPLE.NET"},
		{ID: "Lee", Name: "Dora", Email: "dora@example.com"}, // an id that is another's name
	}
	for _, u := range users {
		if _, err := s.UpsertUser(ctx, u, units(100)); err != nil {
			t.Fatal(err)
		}
	}
	// More users with one name than the store passes as ids (500), to
	// take its other way; three of them have records.
	for i := range 505 {
		id := fmt.Sprintf("many-%03d", i)
		if _, err := s.UpsertUser(ctx, store.UserInfo{ID: id, Name: fmt.Sprintf("Many %d", i), Email: id + "@many.test"}, units(100)); err != nil {
			t.Fatal(err)
		}
	}
	var recs []store.Record
	for i, sp := range []struct{ user, model string }{
		{"s1", "m1"}, {"s2", "m2"}, {"s3", "m1"}, {"s4", "m2"}, {"s5", "m1"}, {"Lee", "m2"},
		{"s1", "m2"}, {"s3", "m2"}, {"many-007", "m1"}, {"many-250", "m2"}, {"many-504", "m1"},
	} {
		res, err := s.Charge(ctx, store.Record{UserID: sp.user, Model: sp.model, Nickname: sp.user, Cost: units(1),
			InputTokens: int64(i), CreatedAt: recordsBase.Add(time.Duration(i) * time.Minute), Source: store.SourceFunction,
			Key: fmt.Sprintf("search-%d", i)})
		if err != nil {
			t.Fatalf("Charge %d: %v", i, err)
		}
		recs = append(recs, res.Record)
	}
	of := func(ids ...string) []string { return ids }
	for _, tc := range []struct {
		q     store.RecordQuery
		users []string // whose records match
	}{
		{store.RecordQuery{UserSearch: "ann"}, of("s1", "s5")},
		{store.RecordQuery{UserSearch: "ANN"}, of("s1", "s5")},
		{store.RecordQuery{UserSearch: "aNn lEe"}, of("s1")},
		{store.RecordQuery{UserSearch: "example.org"}, of("s3", "s4")},
		{store.RecordQuery{UserSearch: "EXAMPLE.net"}, of("s5")},
		{store.RecordQuery{UserSearch: "100%"}, of("s2")},
		{store.RecordQuery{UserSearch: "%"}, of("s2")},
		{store.RecordQuery{UserSearch: "b_o"}, of("s3")},
		{store.RecordQuery{UserSearch: "_"}, of("s3")},
		{store.RecordQuery{UserSearch: "s3"}, of("s3")},         // an id, exactly
		{store.RecordQuery{UserSearch: "S3"}, of()},             // ids are exact
		{store.RecordQuery{UserSearch: "Lee"}, of("s1", "Lee")}, // a name, and an id
		{store.RecordQuery{UserSearch: "nobody"}, of()},
		{store.RecordQuery{UserSearch: "ann", Users: []string{"s5", "s3"}}, of("s5")},
		{store.RecordQuery{UserSearch: "ann", Users: []string{"s3"}}, of()},
		{store.RecordQuery{UserSearch: "ann", Models: []string{"m2"}}, of("s1")},
		{store.RecordQuery{UserSearch: "example", From: recordsBase.Add(2 * time.Minute), To: recordsBase.Add(7 * time.Minute)}, of("s3", "s4", "s5", "Lee", "s1")},
		{store.RecordQuery{UserSearch: "many"}, of("many-007", "many-250", "many-504")},
		{store.RecordQuery{UserSearch: "MANY.test", Models: []string{"m1"}}, of("many-007", "many-504")},
		{store.RecordQuery{UserSearch: "many", Users: []string{"many-250", "s1"}}, of("many-250")},
	} {
		var want []store.Record
		for _, r := range filterRecords(recs, tc.q) {
			if slices.Contains(tc.users, r.UserID) {
				want = append(want, r)
			}
		}
		if want == nil {
			want = []store.Record{}
		}
		matched := map[string]bool{}
		for _, r := range want {
			matched[r.UserID] = true
		}
		if len(matched) != len(tc.users) {
			t.Fatalf("fixture: %+v should match records of %v, matches %v", tc.q, tc.users, matched)
		}
		what := fmt.Sprintf("search %q users %v models %v", tc.q.UserSearch, tc.q.Users, tc.q.Models)
		q := tc.q
		q.PageSize = maxPageSizeForTests
		got, total := listRecords(t, s, q)
		sameRecords(t, "ListRecords: "+what, got, sortedBy(want, recordOrder["created_at"], byRecordID, false))
		if total != int64(len(want)) {
			t.Fatalf("ListRecords: %s: total %d, want %d", what, total, len(want))
		}
		q.SortField, q.Descending = "cost", true
		sameRecords(t, "EachRecord: "+what, eachRecord(t, s, q), sortedBy(want, recordOrder["cost"], byRecordID, true))
		// A page past the first, with the total of all.
		q.PageSize, q.Page = 1, 2
		got, total = listRecords(t, s, q)
		if total != int64(len(want)) || len(got) != min(1, max(len(want)-1, 0)) {
			t.Fatalf("ListRecords page 2 of 1: %s: %d records, total %d, want total %d", what, len(got), total, len(want))
		}
	}
}
