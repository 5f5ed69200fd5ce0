package postgres_test

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/postgres"
	"github.com/openwebui-monitor/owmon/internal/store/storetest"
	"github.com/openwebui-monitor/owmon/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Run(m)) }

func open(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	return storetest.Open(t, func(ctx context.Context) (*postgres.Store, error) { return postgres.Open(ctx, dsn) })
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, testpg.DSN(t)) })
}

// TestConcurrentOpen starts several instances on one empty database at
// once: the advisory lock makes them migrate one after the other.
func TestConcurrentOpen(t *testing.T) {
	dsn := testpg.DSN(t)
	const n = 4
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(t.Context(), dsn) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	// They share the data.
	if _, err := stores[0].UpsertUser(t.Context(), store.UserInfo{ID: "u1"}, money.Units(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := stores[1].Charge(t.Context(), store.Record{UserID: "u1", Key: "k", Cost: 5}); err != nil {
		t.Fatal(err)
	}
	u, err := stores[n-1].User(t.Context(), "u1")
	if err != nil || u.Balance != money.Units(1)-5 {
		t.Fatalf("%+v, %v", u, err)
	}
	var app string
	if err := stores[0].Pool().QueryRow(t.Context(), "SHOW application_name").Scan(&app); err != nil || app != "owmon" {
		t.Fatalf("application_name = %q, %v", app, err)
	}
	if got := stores[0].Pool().Config().MaxConns; got < 8 {
		t.Fatalf("MaxConns = %d, want at least 8", got)
	}
}

// TestAdoptTwoInstances races adoptions and charges from two stores (two
// pools, as two owmon processes) on one database.
func TestAdoptTwoInstances(t *testing.T) {
	dsn := testpg.DSN(t)
	storetest.RaceAdoption(t, open(t, dsn), open(t, dsn))
}

func TestLimitsAddNoStatement(t *testing.T) {
	storetest.StatementsPerHold(t, open(t, testpg.DSN(t)).Store)
}

// BenchmarkHolds: go test -run '^$' -bench BenchmarkHolds ./internal/store/postgres
func BenchmarkHolds(b *testing.B) {
	storetest.BenchHolds(b, open(b, testpg.DSN(b)).Store)
}
