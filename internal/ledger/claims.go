package ledger

import (
	"context"
	"sync"
	"time"
)

// Claims are the chat messages the provider meter charges in this process.
// When the provider meter is deployed it is the one path that charges a
// message: the others look here (and in the store) before charging, and
// wait for the message's provider calls under way to be settled, so they
// answer with final figures.
type Claims struct {
	mu     sync.Mutex
	m      map[string]*claim
	begins int
}

type claim struct {
	inflight int           // provider calls of the message not settled yet
	idle     chan struct{} // closed while inflight is 0
	touched  time.Time
}

// NewClaims returns an empty table. Share one between ledgers over the
// same store (across config reloads).
func NewClaims() *Claims { return &Claims{m: make(map[string]*claim)} }

// claimTTL is how long a settled claim is remembered; the store answers
// for older messages.
const claimTTL = time.Hour

// begin notes a provider call of the message.
func (c *Claims) begin(key string) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.begins++
	if c.begins%1024 == 0 {
		for k, cl := range c.m {
			if cl.inflight == 0 && now.Sub(cl.touched) > claimTTL {
				delete(c.m, k)
			}
		}
	}
	cl := c.m[key]
	if cl == nil {
		cl = &claim{}
		c.m[key] = cl
	}
	if cl.inflight == 0 {
		cl.idle = make(chan struct{})
	}
	cl.inflight++
	cl.touched = now
}

// end notes that a provider call of the message was settled.
func (c *Claims) end(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.m[key]
	if cl == nil || cl.inflight == 0 {
		return
	}
	cl.inflight--
	cl.touched = time.Now()
	if cl.inflight == 0 {
		close(cl.idle)
	}
}

// wait reports whether the message is claimed, once its provider calls
// under way are settled (or after limit, or when ctx ends).
func (c *Claims) wait(ctx context.Context, key string, limit time.Duration) bool {
	c.mu.Lock()
	cl := c.m[key]
	var idle chan struct{}
	if cl != nil {
		idle = cl.idle
	}
	c.mu.Unlock()
	if cl == nil {
		return false
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}
