package testpg

import (
	"path/filepath"
	"testing"
	"time"
)

// Private is a PostgreSQL cluster of one test's own, which the test may stop
// and start again (to simulate a database outage) without disturbing the
// shared cluster other tests use. It runs like the one behind DSN (fsync
// off), on a loopback port that stays the same across Stop and Start, so
// clients reconnect to the same URL.
//
//	pg := testpg.NewPrivate(t)
//	dsn := pg.DSN(t)
//	…
//	pg.Stop(t)  // pg_ctl stop -m fast: sessions are ended, connections refused
//	pg.Start(t) // the same data, the same port
//
// The cluster is stopped and removed when the test ends (and by the
// watchdog should the test binary die first).
type Private struct {
	c *cluster
}

// NewPrivate starts a private cluster, or fails the test (never skips it)
// when PostgreSQL's server binaries are missing.
func NewPrivate(tb testing.TB) *Private {
	tb.Helper()
	signalOnce.Do(watchSignals)
	c := &cluster{}
	c.once.Do(func() {
		c.err = c.start()
	})
	tb.Cleanup(c.stop)
	if c.err != nil {
		tb.Fatalf("testpg: cannot start a private PostgreSQL cluster: %v\n%s", c.err, installHint)
	}
	return &Private{c: c}
}

// DSN returns the URL of a new, empty database on the cluster. Call it
// while the cluster runs.
func (p *Private) DSN(tb testing.TB) string {
	tb.Helper()
	return p.c.newDatabase(tb)
}

// Stop shuts the server down in "fast" mode (pg_ctl stop -m fast -w): open
// transactions are rolled back, sessions ended, and new connections refused
// until Start.
func (p *Private) Stop(tb testing.TB) {
	tb.Helper()
	p.c.mu.Lock()
	if p.c.admin != nil {
		_ = p.c.admin.Close(tb.Context())
		p.c.admin = nil
	}
	p.c.mu.Unlock()
	out, err := p.c.run(time.Minute, filepath.Join(p.c.binDir, "pg_ctl"), "-D", filepath.Join(p.c.dir, "data"),
		"stop", "-m", "fast", "-w")
	if err != nil {
		tb.Fatalf("testpg: pg_ctl stop: %v\n%s", err, out)
	}
}

// Start starts the stopped server again on the same port and waits until it
// accepts connections.
func (p *Private) Start(tb testing.TB) {
	tb.Helper()
	if err := p.c.pgCtlStart(); err != nil {
		tb.Fatalf("testpg: restart the private cluster: %v", err)
	}
}
