package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
	"github.com/openwebui-monitor/owmon/internal/store/storetest"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	return storetest.Open(t, func(ctx context.Context) (*sqlite.Store, error) { return sqlite.Open(ctx, path) })
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "monitor.db"))
	})
}

func TestContractMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, ":memory:") })
}

// TestReopen checks that the data and the schema survive a restart, that
// migrating twice is harmless and that parent directories are created.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "monitor.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpsertUser(t.Context(), store.UserInfo{ID: "u1"}, money.Units(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Charge(t.Context(), store.Record{UserID: "u1", Key: "k", Cost: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, path)
	u, err := s2.User(t.Context(), "u1")
	if err != nil || u.Balance != money.Units(3)-1 {
		t.Fatalf("after reopen: %+v, %v", u, err)
	}
	if r, err := s2.RecordByKey(t.Context(), "k"); err != nil || r.Cost != 1 {
		t.Fatalf("after reopen: %+v, %v", r, err)
	}
	var mode string
	if err := s2.DB().QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	// The read pool refuses writes.
	if _, err := s2.DB().ExecContext(t.Context(), "DELETE FROM users"); err == nil {
		t.Fatal("the read-only pool accepted a write")
	}
}

// TestAdoptTwoInstances races adoptions and charges from two stores (as two
// owmon processes) on one database file.
func TestAdoptTwoInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "monitor.db")
	storetest.RaceAdoption(t, open(t, path), open(t, path))
}

func TestLimitsAddNoStatement(t *testing.T) {
	storetest.StatementsPerHold(t, open(t, filepath.Join(t.TempDir(), "monitor.db")).Store)
}

// BenchmarkHolds: go test -run '^$' -bench BenchmarkHolds ./internal/store/sqlite
func BenchmarkHolds(b *testing.B) {
	storetest.BenchHolds(b, open(b, filepath.Join(b.TempDir(), "monitor.db")).Store)
}
