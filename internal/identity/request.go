package identity

import (
	"fmt"
	"time"
)

// ErrNoCredential means a request carries no credential at all (Credential
// found none, or an empty "token" cookie). It matches ErrUnauthenticated
// too; unlike a refused credential it is no guess, and costs nothing at a
// Throttle.
var ErrNoCredential = fmt.Errorf("%w: no credential", ErrUnauthenticated)

// Fail counts a failed check the Throttle could not make itself: a
// credential someone else judged (OpenWebUI refused the token). It returns
// Throttled, with when the client may try again, when the client's bucket
// was empty already, and then counts nothing; else Wrong. Call Limited
// before the check, to refuse an exhausted client without making it, and
// Fail after a failed one: a Throttled answer then withholds the check's
// outcome, so at most Burst failures are answered at once, as with Check.
func (t *Throttle) Fail(client string) (res Result, retryAfter time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.record(throttleKey(client), false)
}
