package identity

import (
	"container/list"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Defaults of ThrottleConfig.
const (
	DefaultThrottleBurst      = 10              // wrong secrets a client may send in a row
	DefaultThrottleRefill     = 6 * time.Second // then one more every 6 s (10 a minute)
	DefaultThrottleMaxClients = 10_000          // clients remembered at once
)

// ThrottleConfig sets a Throttle's limits; zero values take the defaults.
type ThrottleConfig struct {
	Burst      int           // failed checks a client may make at once
	Refill     time.Duration // one more failed check allowed every Refill
	MaxClients int           // clients remembered; beyond, the longest quiet is forgotten
	Now        func() time.Time
}

// Throttle slows down the guessing of a secret: it counts the failed
// checks of each client address in a token bucket (Burst failures, one
// more every Refill) and refuses every check, right or wrong, of a client
// whose bucket is empty until it refills. A right secret costs nothing, so
// a client that only ever sends the right one is never refused. A check
// with no secret at all costs nothing either.
//
// The bucket is charged in the same critical section that decides whether
// the answer may be given, so parallel requests cannot all get their
// guesses answered: at most Burst wrong guesses are answered at once,
// however many arrive together. The comparison itself happens before, and
// may happen for requests that are then refused; a refused request learns
// nothing about its guess.
//
// Memory is bounded: a client whose bucket is full again is forgotten, and
// at MaxClients the one that failed longest ago is. IPv6 clients are
// counted by their /64, which one host can fill with addresses. Nothing is
// written to a database; a restart forgets everything. A Throttle is safe
// for concurrent use.
type Throttle struct {
	burst, max int
	refill     time.Duration
	now        func() time.Time

	mu      sync.Mutex
	clients map[string]*list.Element // client → its *bucket in order
	order   *list.List               // buckets, least recently charged first
}

// bucket is one client's state, kept as the time at which its bucket is
// full again: each failure moves it Refill later, and the bucket is empty
// while it lies more than (Burst-1)×Refill ahead.
type bucket struct {
	client string
	full   time.Time
}

// NewThrottle returns a throttle with cfg's limits.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultThrottleBurst
	}
	if cfg.Refill <= 0 {
		cfg.Refill = DefaultThrottleRefill
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultThrottleMaxClients
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Throttle{burst: cfg.Burst, refill: cfg.Refill, max: cfg.MaxClients, now: cfg.Now,
		clients: map[string]*list.Element{}, order: list.New()}
}

// Result is the outcome of a throttled check.
type Result int

const (
	Missing   Result = iota // no secret presented, or none configured: nothing counted
	Wrong                   // a wrong secret, counted
	Right                   // the secret
	Throttled               // refused: the client's bucket is empty; says nothing of the secret
)

// Check compares got with s for the client (see ClientAddr). When it
// returns Throttled, retryAfter says when the client may try again. An
// unset secret matches nothing and counts nothing: there is nothing to
// guess.
func (t *Throttle) Check(client string, s Secret, got string) (res Result, retryAfter time.Duration) {
	right := s.Matches(got)
	if !right && (!s.Set() || strings.TrimSpace(got) == "") {
		return Missing, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.record(throttleKey(client), right)
}

// record answers a check of the client key, with t.mu held: throttled
// (counting nothing), right (counting nothing) or wrong (counted).
func (t *Throttle) record(key string, right bool) (Result, time.Duration) {
	now := t.now()
	e := t.clients[key]
	if wait := t.wait(e, now); wait > 0 {
		return Throttled, wait
	}
	if right {
		return Right, 0
	}
	if e == nil {
		t.forget(now)
		e = t.order.PushBack(&bucket{client: key, full: now})
		t.clients[key] = e
	} else {
		t.order.MoveToBack(e)
	}
	b := e.Value.(*bucket)
	if b.full.Before(now) {
		b.full = now
	}
	b.full = b.full.Add(t.refill)
	return Wrong, 0
}

// Limited reports whether the client's bucket is empty, and when it will
// hold one failure again. It counts nothing; use it to refuse a throttled
// client before reading a request's body, and Check to decide.
func (t *Throttle) Limited(client string) (limited bool, retryAfter time.Duration) {
	key := throttleKey(client)
	t.mu.Lock()
	defer t.mu.Unlock()
	wait := t.wait(t.clients[key], t.now())
	return wait > 0, wait
}

// wait is how long the bucket stays empty; t.mu is held.
func (t *Throttle) wait(e *list.Element, now time.Time) time.Duration {
	if e == nil {
		return 0
	}
	ahead := e.Value.(*bucket).full.Sub(now)
	return ahead - time.Duration(t.burst-1)*t.refill
}

// forget drops the buckets that are full again (they are no different
// from none) and, at MaxClients, the ones charged longest ago, to make
// room for one more; t.mu is held.
func (t *Throttle) forget(now time.Time) {
	// The least recently charged come first, and are most often full again.
	for e := t.order.Front(); e != nil && !e.Value.(*bucket).full.After(now); e = t.order.Front() {
		t.drop(e)
	}
	if t.order.Len() < t.max {
		return
	}
	for e := t.order.Front(); e != nil; {
		next := e.Next()
		if !e.Value.(*bucket).full.After(now) {
			t.drop(e)
		}
		e = next
	}
	for t.order.Len() >= t.max {
		t.drop(t.order.Front())
	}
}

func (t *Throttle) drop(e *list.Element) {
	t.order.Remove(e)
	delete(t.clients, e.Value.(*bucket).client)
}

// RetryAfterSeconds is d in whole seconds, rounded up, at least 1: the
// value of a Retry-After header.
func RetryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// serverClientIP, when set, returns the client address the server already
// determined for a request ("" when it has none); see SetClientIP.
var serverClientIP func(*http.Request) string

// SetClientIP tells ClientAddr how the server names a request's client.
// The Caddy adapter sets Caddy's client_ip, which follows the server's
// trusted_proxies: behind a load balancer every client is then counted on
// its own, not all as the balancer. Call it once, at start.
func SetClientIP(f func(*http.Request) string) { serverClientIP = f }

// ClientAddr is the client a Throttle counts, and the one logs name: the
// server's client address when it has one (SetClientIP), else the address
// the request's connection comes from.
func ClientAddr(r *http.Request) string {
	if serverClientIP != nil {
		if ip := serverClientIP(r); ip != "" {
			return ip
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// throttleKey counts an IPv6 client by its /64, anything else as it is.
func throttleKey(client string) string {
	a, err := netip.ParseAddr(client)
	if err != nil {
		return client
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}
