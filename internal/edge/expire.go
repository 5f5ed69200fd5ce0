package edge

import (
	"context"
	"time"
)

// Start begins releasing holds nobody settled in time (every quarter of
// the hold TTL, at most a minute apart), and ending web-UI answers the
// websocket tap lost sight of. stop ends both; it may be called once.
func (g *Gate) Start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	stopSweep := g.tracker.Start(5 * time.Second)
	every := max(min(g.cfg.HoldTTL/4, time.Minute), 100*time.Millisecond) // a ticker refuses 0
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if n, err := g.ledger.ExpireHolds(ctx, now); err != nil {
					g.log.Error("releasing expired holds", "error", err)
				} else if n > 0 {
					g.log.Info("released expired holds", "count", n)
				}
			}
		}
	}()
	return func() { cancel(); stopSweep() }
}
