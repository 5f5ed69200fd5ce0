package ledger

import "github.com/openwebui-monitor/owmon/internal/store"

// The ledger's vocabulary: the statuses and sources of records. These are
// the names every caller outside the store uses. Package store keeps the
// same strings as their storage encoding (its SQL needs them), and the
// names below are defined as equal to them; Status and Source are aliases
// of string, so a record's fields take them as they are.

// Status is the status of a record. A pending record holds money taken
// before the answer (an inlet pre-charge or a hold); a charge turns it into
// a final one.
type Status = string

// Record statuses.
const (
	StatusPending   Status = store.StatusPending
	StatusCompleted Status = store.StatusCompleted
	StatusCancelled Status = store.StatusCancelled
	StatusFailed    Status = store.StatusFailed
	StatusExpired   Status = store.StatusExpired // a hold nobody settled in time, released
)

// Source is the path that metered an answer.
type Source = string

// Record sources.
const (
	SourceFunction  Source = store.SourceFunction
	SourceEdge      Source = store.SourceEdge
	SourceWebsocket Source = store.SourceWebsocket
	SourceProvider  Source = store.SourceProvider
)

// ChargeResult says what a charge did: the record as stored, whether the
// key was charged already (Duplicate) or is the provider meter's
// (Covered), what a hold had taken, and the balance after.
type ChargeResult = store.ChargeResult
