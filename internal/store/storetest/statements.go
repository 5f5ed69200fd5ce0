package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlstore"
)

// StatementsPerHold checks that budget limits add no statement to a hold
// they admit (issue 17: no round trip beyond the hold's own): a Reserve
// under four limits — the user's own, a shared group pool (locked in
// PostgreSQL), one for everyone on a rolling window, one on a model
// pattern — runs as many statements in its transaction as one under none.
// Each backend passes the sqlstore.Store it runs on.
func StatementsPerHold(t *testing.T, s sqlstore.Store) {
	ctx := t.Context()
	if err := s.SetGroups(ctx, []budget.Group{{ID: "team", Members: []string{"free", "limited"}}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	checks := []store.LimitCheck{
		{Measure: "cost", Amount: int64(units(100)), From: now.Add(-24 * time.Hour)},
		{Measure: "tokens", Amount: 1 << 40, From: now.AddDate(0, -1, 0), Pool: store.Pool{Kind: "group", ID: "team"}},
		{Measure: "messages", Amount: 1000, From: now.Add(-5 * time.Hour), Pool: store.Pool{Kind: "all"}},
		{Measure: "cost", Amount: int64(units(100)), From: now.Add(-7 * 24 * time.Hour), Models: []string{"gpt-4*"}},
	}
	var n int
	counted := sqlstore.Store{D: s.D, B: countingBackend{s.B, &n}}
	hold := func(user string, i int, checks []store.LimitCheck) int {
		t.Helper()
		n = 0
		res, err := counted.Reserve(ctx, store.Reservation{Rule: store.ReserveCoveredOrRest, Limits: checks,
			HeldTokens: 100, Record: store.Record{UserID: user, Key: fmt.Sprint(user, i), Model: "gpt-4o", Cost: units(1)}})
		if err != nil || !res.Placed {
			t.Fatalf("Reserve(%s): %+v, %v", user, res, err)
		}
		return n
	}
	for _, u := range []string{"free", "limited"} {
		if _, err := s.UpsertUser(ctx, store.UserInfo{ID: u}, units(100)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		free, limited := hold("free", i, nil), hold("limited", i, checks)
		if limited != free {
			t.Fatalf("hold %d: %d statements under limits, %d under none", i, limited, free)
		}
	}
}

// countingBackend counts the statements its transactions run.
type countingBackend struct {
	sqlstore.Backend
	n *int
}

func (b countingBackend) Tx(ctx context.Context, fn func(ctx context.Context, q sqlstore.Querier) error) error {
	return b.Backend.Tx(ctx, func(ctx context.Context, q sqlstore.Querier) error {
		return fn(ctx, countingQuerier{q, b.n})
	})
}

type countingQuerier struct {
	q sqlstore.Querier
	n *int
}

func (c countingQuerier) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	*c.n++
	return c.q.QueryRow(ctx, query, args...)
}

func (c countingQuerier) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	*c.n++
	return c.q.Query(ctx, query, args...)
}

func (c countingQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	*c.n++
	return c.q.Exec(ctx, query, args...)
}

// BenchHolds measures holds (Reserve, then Release) per second from 64
// callers spread over 16 users, under the limits of StatementsPerHold but
// none shared, and under those with one pool that all 16 users share: a
// pool serialises its members' holds (lockPools), so its figure is what
// one pool admits here.
func BenchHolds(b *testing.B, s sqlstore.Store) {
	ctx := b.Context()
	var users []string
	for i := range 16 {
		users = append(users, fmt.Sprint("b", i))
		if _, err := s.UpsertUser(ctx, store.UserInfo{ID: users[i]}, units(1_000_000)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.SetGroups(ctx, []budget.Group{{ID: "team", Members: users}}); err != nil {
		b.Fatal(err)
	}
	for _, pool := range []bool{false, true} {
		b.Run(fmt.Sprint("pool=", pool), func(b *testing.B) {
			now := time.Now()
			checks := []store.LimitCheck{
				{Measure: "cost", Amount: 1 << 60, From: now.Add(-24 * time.Hour)},
				{Measure: "tokens", Amount: 1 << 60, From: now.AddDate(0, -1, 0)},
				{Measure: "messages", Amount: 1 << 60, From: now.Add(-5 * time.Hour)},
			}
			if pool {
				checks[1].Pool = store.Pool{Kind: "group", ID: "team"}
			}
			var next atomic.Int64
			b.SetParallelism(32) // 64 callers on 2 cores
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					rec := store.Record{UserID: users[i%16], Key: fmt.Sprint("bench-", pool, i), Model: "gpt-4o", Cost: 1}
					res, err := s.Reserve(ctx, store.Reservation{Rule: store.ReserveIfCovered, Limits: checks, HeldTokens: 10, Record: rec})
					if err != nil || !res.Placed {
						b.Fatalf("Reserve: %+v, %v", res, err)
					}
					if _, err := s.ReleaseHold(ctx, rec.Key); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "holds/s")
		})
	}
}
