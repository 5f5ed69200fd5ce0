package identity

import (
	"errors"
	"testing"
)

// TestThrottleFail: failures counted with Fail take from the same bucket
// as Check's: Burst of them are answered, then the client is Throttled
// (Limited says so before any check) until one more refills; a Throttled
// Fail counts nothing more.
func TestThrottleFail(t *testing.T) {
	th, c := newTestThrottle(ThrottleConfig{})
	const client = "192.0.2.9"
	for i := range DefaultThrottleBurst {
		if res, _ := th.Fail(client); res != Wrong {
			t.Fatalf("failure %d: %v", i, res)
		}
	}
	if limited, wait := th.Limited(client); !limited || wait != DefaultThrottleRefill {
		t.Fatalf("after the burst: limited %v, retry after %v", limited, wait)
	}
	if res, wait := th.Fail(client); res != Throttled || wait != DefaultThrottleRefill {
		t.Fatalf("past the burst: %v, retry after %v", res, wait)
	}
	if res, _ := th.Check(client, testSecret, "the-right-secret"); res != Throttled {
		t.Fatalf("a right secret while throttled: %v", res)
	}
	c.add(DefaultThrottleRefill)
	if res, _ := th.Fail(client); res != Wrong {
		t.Fatalf("after a refill: %v", res)
	}
	if limited, _ := th.Limited(client); !limited {
		t.Fatal("the refilled failure was not counted")
	}
	if limited, _ := th.Limited("192.0.2.10"); limited {
		t.Fatal("another client is limited")
	}
	if !errors.Is(ErrNoCredential, ErrUnauthenticated) {
		t.Fatal("ErrNoCredential does not match ErrUnauthenticated")
	}
}
