package identity

import (
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// testClock is a settable time for a Throttle.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestThrottle(cfg ThrottleConfig) (*Throttle, *testClock) {
	c := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cfg.Now = c.now
	return NewThrottle(cfg), c
}

var testSecret = NewSecret("the-right-secret")

// TestThrottleGuessing: 300 wrong secrets then the right one from one
// client. Only the burst is answered; the rest, the right one included,
// are refused until the bucket refills, one failure every Refill.
func TestThrottleGuessing(t *testing.T) {
	th, c := newTestThrottle(ThrottleConfig{})
	const client = "192.0.2.7"
	wrong := 0
	for i := range 300 {
		res, wait := th.Check(client, testSecret, fmt.Sprintf("guess-%d", i))
		switch {
		case res == Wrong && i < DefaultThrottleBurst:
			wrong++
		case res == Throttled && i >= DefaultThrottleBurst:
			if wait <= 0 || wait > DefaultThrottleRefill {
				t.Fatalf("attempt %d: retry after %v", i, wait)
			}
		default:
			t.Fatalf("attempt %d: %v (retry after %v)", i, res, wait)
		}
	}
	if wrong != DefaultThrottleBurst {
		t.Fatalf("%d wrong secrets answered, want %d", wrong, DefaultThrottleBurst)
	}
	res, wait := th.Check(client, testSecret, "the-right-secret")
	if res != Throttled || wait != DefaultThrottleRefill {
		t.Fatalf("right secret while throttled: %v, retry after %v", res, wait)
	}
	if limited, w := th.Limited(client); !limited || w != wait {
		t.Fatalf("Limited: %v %v", limited, w)
	}
	// Other clients are not affected.
	if res, _ := th.Check("192.0.2.8", testSecret, "the-right-secret"); res != Right {
		t.Fatalf("another client: %v", res)
	}
	if res, _ := th.Check("192.0.2.8", testSecret, "guess"); res != Wrong {
		t.Fatalf("another client's guess: %v", res)
	}

	// Just before Retry-After, still refused; at it, the right secret passes
	// and costs nothing, so one wrong guess is answered, and the next is not.
	c.add(wait - time.Millisecond)
	if res, _ := th.Check(client, testSecret, "the-right-secret"); res != Throttled {
		t.Fatalf("before the refill: %v", res)
	}
	c.add(time.Millisecond)
	for range 3 {
		if res, _ := th.Check(client, testSecret, " the-right-secret "); res != Right {
			t.Fatalf("after the refill: %v", res)
		}
	}
	if res, _ := th.Check(client, testSecret, "guess"); res != Wrong {
		t.Fatalf("one guess after the refill: %v", res)
	}
	if res, wait := th.Check(client, testSecret, "guess"); res != Throttled || wait != DefaultThrottleRefill {
		t.Fatalf("second guess after the refill: %v %v", res, wait)
	}
	// A full refill gives the whole burst back: 10 per minute at most.
	c.add(time.Duration(DefaultThrottleBurst) * DefaultThrottleRefill)
	for i := range DefaultThrottleBurst {
		if res, _ := th.Check(client, testSecret, "guess"); res != Wrong {
			t.Fatalf("guess %d after a full refill: %v", i, res)
		}
	}
	if res, _ := th.Check(client, testSecret, "guess"); res != Throttled {
		t.Fatalf("past the burst again: %v", res)
	}
}

// TestThrottleRightSecretsNeverCount: a client that sends the right secret
// is never refused, however often, even after some wrong ones; no secret
// at all, or an unset one, counts nothing.
func TestThrottleRightSecretsNeverCount(t *testing.T) {
	th, _ := newTestThrottle(ThrottleConfig{})
	for i := range 1000 {
		if res, _ := th.Check("192.0.2.1", testSecret, "the-right-secret"); res != Right {
			t.Fatalf("call %d: %v", i, res)
		}
	}
	for range DefaultThrottleBurst - 1 {
		th.Check("192.0.2.1", testSecret, "typo")
	}
	for i := range 1000 {
		if res, _ := th.Check("192.0.2.1", testSecret, "the-right-secret"); res != Right {
			t.Fatalf("call %d after typos: %v", i, res)
		}
		if res, _ := th.Check("192.0.2.1", testSecret, ""); res != Missing {
			t.Fatalf("no secret: %v", res)
		}
		if res, _ := th.Check("192.0.2.1", Secret{}, "anything"); res != Missing {
			t.Fatalf("unset secret: %v", res)
		}
	}
	if res, _ := th.Check("192.0.2.1", testSecret, "typo"); res != Wrong {
		t.Fatalf("the last failure of the burst: %v", res)
	}
	if res, _ := th.Check("192.0.2.1", testSecret, "the-right-secret"); res != Throttled {
		t.Fatalf("right secret after the burst: %v", res)
	}
}

// TestThrottleParallel: guesses that arrive together are counted
// atomically, so no more than the burst are answered; right secrets that
// arrive together all pass.
func TestThrottleParallel(t *testing.T) {
	th, _ := newTestThrottle(ThrottleConfig{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[Result]int{}
	start := make(chan struct{})
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got := fmt.Sprintf("guess-%d", i)
			if i%2 == 0 {
				got = "the-right-secret"
			}
			res, _ := th.Check("192.0.2.9", testSecret, got)
			if i%2 == 0 {
				res += 10 // the right ones, counted apart
			}
			mu.Lock()
			counts[res]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if counts[Wrong] != DefaultThrottleBurst || counts[Throttled] != 200-DefaultThrottleBurst {
		t.Fatalf("wrong guesses: %d answered, %d throttled", counts[Wrong], counts[Throttled])
	}
	// The right ones that came after the bucket emptied are throttled too.
	if counts[10+Right]+counts[10+Throttled] != 200 {
		t.Fatalf("right secrets: %v", counts)
	}

	th2, _ := newTestThrottle(ThrottleConfig{})
	var refused sync.Map
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res, _ := th2.Check("192.0.2.10", testSecret, "the-right-secret"); res != Right {
				refused.Store(i, res)
			}
		}()
	}
	wg.Wait()
	refused.Range(func(k, v any) bool { t.Errorf("right secret %v: %v", k, v); return true })
}

// TestThrottleMemoryBounded: at most MaxClients are remembered; clients
// whose bucket is full again are forgotten first, then the quietest.
func TestThrottleMemoryBounded(t *testing.T) {
	th, c := newTestThrottle(ThrottleConfig{MaxClients: 100})
	for i := range 1000 {
		th.Check(fmt.Sprintf("10.0.%d.%d", i/256, i%256), testSecret, "guess")
		if n := len(th.clients); n > 100 || th.order.Len() != n {
			t.Fatalf("after %d clients: %d remembered, %d in order", i+1, n, th.order.Len())
		}
	}
	// The last 100 are remembered, the first ones forgotten.
	if _, ok := th.clients["10.0.3.231"]; !ok {
		t.Fatal("the latest client was forgotten")
	}
	if _, ok := th.clients["10.0.0.0"]; ok {
		t.Fatal("the oldest client is still remembered")
	}
	// Buckets that refilled are dropped when a new client comes.
	c.add(DefaultThrottleRefill)
	th.Check("10.9.9.9", testSecret, "guess")
	if n := len(th.clients); n != 1 {
		t.Fatalf("%d remembered after everyone refilled, want 1", n)
	}
	// A throttled client keeps its state while others come and go.
	for range DefaultThrottleBurst {
		th.Check("10.8.8.8", testSecret, "guess")
	}
	for i := range 50 {
		c.add(100 * time.Millisecond)
		th.Check(fmt.Sprintf("10.1.0.%d", i), testSecret, "guess")
	}
	if limited, _ := th.Limited("10.8.8.8"); !limited {
		t.Fatal("a throttled client was forgotten")
	}
}

// TestThrottleKeys: an IPv6 client is counted by its /64; IPv4-mapped
// addresses are their IPv4 address.
func TestThrottleKeys(t *testing.T) {
	th, _ := newTestThrottle(ThrottleConfig{Burst: 2})
	th.Check("2001:db8:1:2::1", testSecret, "guess")
	th.Check("2001:db8:1:2:ffff::9", testSecret, "guess")
	if res, _ := th.Check("2001:db8:1:2::77", testSecret, "the-right-secret"); res != Throttled {
		t.Fatalf("same /64: %v", res)
	}
	if res, _ := th.Check("2001:db8:1:3::1", testSecret, "the-right-secret"); res != Right {
		t.Fatalf("another /64: %v", res)
	}
	th.Check("198.51.100.1", testSecret, "guess")
	th.Check("::ffff:198.51.100.1", testSecret, "guess")
	if limited, _ := th.Limited("198.51.100.1"); !limited {
		t.Fatal("IPv4-mapped address counted apart")
	}
	if limited, _ := th.Limited("198.51.100.2"); limited {
		t.Fatal("a neighbouring IPv4 address is limited")
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int64{
		time.Nanosecond: 1, time.Second: 1, time.Second + 1: 2, 6 * time.Second: 6, 0: 1, -time.Second: 1,
	} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("%v: %d, want %d", d, got, want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1:5555": "192.0.2.1", "[2001:db8::1]:443": "2001:db8::1", "@": "@",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		if got := ClientAddr(r); got != want {
			t.Errorf("%q: %q, want %q", addr, got, want)
		}
	}
}
