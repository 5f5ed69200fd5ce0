package storetest

import (
	"context"
	"testing"

	"github.com/openwebui-monitor/owmon/internal/store"
)

// Open opens a store with open, failing the test on an error, and closes
// it when the test ends.
func Open[S store.Store](t testing.TB, open func(ctx context.Context) (S, error)) S {
	t.Helper()
	s, err := open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}
