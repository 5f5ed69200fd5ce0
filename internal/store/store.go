// Package store keeps users, prices and the ledger of charges. It defines one
// interface with two implementations that pass the same contract tests:
// store/sqlite (embedded default) and store/postgres (production, several
// instances). Money columns are BIGINT nano-units (see internal/money).
package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/money"
)

// ProviderCovers reports whether old, the existing record with a charge's
// key, covers the charge r: the provider meter owns old (it adopted the
// hold) and r comes from another path, so Charge changes nothing. A charge
// without a source (the settlement of an expired hold) is not covered,
// and neither is any charge of an expired record.
func ProviderCovers(old, r Record) bool {
	return old.Source == SourceProvider && old.Status != StatusExpired &&
		r.Source != "" && r.Source != SourceProvider
}

// ErrNotFound reports a user, record or price that does not exist.
var ErrNotFound = errors.New("not found")

// ErrOutOfRange reports a write whose arithmetic would leave the range of
// an int64: a balance minus a cost, a balance plus an adjustment, a daily
// rollup plus a record. Nothing is written. Callers answer it as the
// client's error (422), never as a storage failure.
var ErrOutOfRange = errors.New("out of range")

// BalanceRangeError is the ErrOutOfRange of taking delta (negative: giving
// it back) from balance.
func BalanceRangeError(balance, delta money.Amount) error {
	if delta >= 0 {
		return fmt.Errorf("taking %s from the balance %s would go below the smallest amount (%s): %w",
			delta, balance, money.Min, ErrOutOfRange)
	}
	return fmt.Errorf("adding %s to the balance %s would go above the largest amount (%s): %w",
		-delta, balance, money.Max, ErrOutOfRange)
}

// SubRange is the range of values v for which v - d fits in an int64.
func SubRange(d int64) (lo, hi int64) {
	if d >= 0 {
		return math.MinInt64 + d, math.MaxInt64
	}
	return math.MinInt64, math.MaxInt64 + d
}

// AddRange is the range of values v for which v + d fits in an int64.
func AddRange(d int64) (lo, hi int64) {
	if d >= 0 {
		return math.MinInt64, math.MaxInt64 - d
	}
	return math.MinInt64 - d, math.MaxInt64
}

// Allows reports whether the rule lets a reservation of cost take money
// from balance (the stores' SQL conditions, in Go).
func (r ReserveRule) Allows(balance, cost money.Amount) bool {
	switch r {
	case ReserveIfPositive:
		return balance > 0
	case ReserveIfCovered:
		return balance >= cost
	case ReserveCoveredOrRest:
		return balance > 0
	}
	return true
}

// SatAdd returns a+b, saturating at the ends of an int64 instead of
// wrapping around. Usage totals add up with it.
func SatAdd(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}

// JoinSum puts together a sum taken in two parts, hi·2^32 + lo, the way
// the SQLite store sums int64 columns so that no SUM overflows, and
// saturates the result at the ends of an int64.
func JoinSum(hi, lo int64) int64 {
	v := new(big.Int).Lsh(big.NewInt(hi), 32)
	v.Add(v, big.NewInt(lo))
	return Saturate(v)
}

// Saturate returns v, or the end of the int64 range it lies beyond.
func Saturate(v *big.Int) int64 {
	switch {
	case v.IsInt64():
		return v.Int64()
	case v.Sign() > 0:
		return math.MaxInt64
	}
	return math.MinInt64
}

// Record statuses, as stored. A pending record holds money taken before
// the answer (an inlet pre-charge or a hold); Charge turns it into a final
// one. These are the storage encoding of the ledger's vocabulary: callers
// outside the store use ledger.Status* and ledger.Source*, equal to them.
const (
	StatusPending   = "pending"
	StatusCompleted = "completed"
	StatusCancelled = "cancelled"
	StatusFailed    = "failed"
	StatusExpired   = "expired" // a hold nobody settled in time, released
)

// Record sources: the path that metered an answer.
const (
	SourceFunction  = "function"
	SourceEdge      = "edge"
	SourceWebsocket = "websocket"
	SourceProvider  = "provider"
)

// NewChatID is the chat id of a hold placed for the first turn of a new
// chat, before OpenWebUI has told us the chat's id. A provider-meter call
// with a chat id that has no hold of its own adopts the oldest such hold of
// its user (AdoptHold), and RekeyHold gives one its real chat id once
// OpenWebUI's answer names it; either way its key becomes chatID + "/" +
// message id.
const NewChatID = "new:"

// Adoption selects the pending hold a provider-meter call takes over.
// OpenWebUI forwards the user and (for chats) the chat id to providers, not
// the message id, so the provider meter finds the front's hold by those.
type Adoption struct {
	UserID  string // required
	ChatID  string // the provider call's X-OpenWebUI-Chat-Id; "" for none
	Key     string // set when the provider call knows its message: adopt exactly this key (and only for UserID)
	Purpose string // written onto the adopted record when not empty
}

// UserInfo is what OpenWebUI tells us about a user.
type UserInfo struct {
	ID    string
	Email string
	Name  string
	Role  string
}

// User is a metered OpenWebUI user.
type User struct {
	UserInfo
	Balance        money.Amount
	InitialBalance money.Amount // balance given at creation; the ledger starts here
	Blocked        bool         // an admin blocked the user (the old monitor's "deleted")
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Record is one metered answer: a row of the usage ledger.
type Record struct {
	ID              int64
	UserID          string
	Nickname        string // the user's name when the record was written
	Model           string
	InputTokens     int64
	OutputTokens    int64
	CachedTokens    int64 // input tokens the provider served from cache, when reported
	ReasoningTokens int64 // output tokens spent on reasoning, when reported
	Cost            money.Amount
	BalanceAfter    money.Amount // set by the store
	Source          string       // Source* constant
	Status          string       // Status* constant
	Estimated       bool         // tokens were counted by us, not reported by the provider
	Purpose         string       // what OpenWebUI used the call for (chat, title, …), when known
	ChatID          string
	MessageID       string
	Key             string // idempotency key; "" means none
	DurationMS      int64
	CreatedAt       time.Time  // set by the store when zero
	ExpiresAt       *time.Time // pending records only: when an unsettled hold lapses
}

// ReserveRule says when Reserve may take money.
type ReserveRule int

const (
	// ReserveIfPositive takes the amount when the balance is above zero,
	// even if it then goes below zero (the inlet pre-charge).
	ReserveIfPositive ReserveRule = iota
	// ReserveIfCovered takes the amount only when the balance covers it (a hold).
	ReserveIfCovered
	// ReserveAlways takes the amount whatever the balance (monitor-only mode).
	ReserveAlways
	// ReserveCoveredOrRest takes the amount when the balance covers it,
	// else whatever is left of a balance above zero: the record's cost is
	// then that rest, and the balance zero. So at most one call runs on
	// less than its full hold (a hold in enforce mode).
	ReserveCoveredOrRest
)

// Reservation asks to take Record.Cost from a user before an answer exists.
type Reservation struct {
	Record Record // Status is forced to pending; Key should be set
	Rule   ReserveRule
	// Limits the hold must respect: it is refused (ReserveResult.OverLimit)
	// when any of them has nothing left, counting the final records and
	// the holds in flight in its window, as of Record.CreatedAt.
	Limits []LimitCheck
	// HeldTokens is what the hold counts against token limits until its
	// charge: the prompt and the most output the call may produce.
	HeldTokens int64
}

// LimitCheck is one limit as the store counts it (see budget.Limit):
// the usage of Measure ("cost", "tokens" or "messages") since From, of
// the reserving user or of a pool, on the models matching Models (every
// model when empty), must stay below Amount for a hold to be placed.
type LimitCheck struct {
	Measure string
	Amount  int64
	From    time.Time
	Pool    Pool
	Models  []string // patterns: * any text, ? one character
}

// Pool is whose usage a limit counts: the reserving user's own (Kind
// ""), or together that of a group's members ("group"), of a role's users
// ("role") or everyone's ("all").
type Pool struct{ Kind, ID string }

// ReserveResult says what Reserve did.
type ReserveResult struct {
	Placed   bool // a pending record was written and its cost taken
	Existing bool // a record with the key already existed; Record is that record
	Blocked  bool // the user is blocked: nothing taken
	// OverLimit is 1 + the index of the first of Reservation.Limits with
	// nothing left (nothing taken), Used its usage; 0 when none is.
	OverLimit int
	Used      int64
	Record    Record // the placed or existing record
	Balance   money.Amount
}

// ChargeResult says what Charge did.
type ChargeResult struct {
	Record    Record       // the record as stored; on a duplicate, the first charge's
	Duplicate bool         // the key was already charged: nothing changed
	Held      money.Amount // what a pending record with the key had taken, now netted
	Balance   money.Amount // the user's balance after the charge
	// Covered: the provider meter owns the key's record (it adopted the
	// hold or charged the message), so this charge from another path
	// changed nothing. A store sets it with Record the provider's record
	// and Balance the user's; the ledger also sets it, with Record summing
	// the provider meter's records of the message.
	Covered bool
	// Deferred: the store could not take the charge; the ledger keeps it
	// in its journal and writes it once the store answers again. Record
	// is the charge as priced now; Balance is the last one known.
	Deferred bool
}

// MessageUsage sums the records one path wrote for one chat message.
type MessageUsage struct {
	Records         int64 // how many (0: the path has not metered the message)
	Model           string
	InputTokens     int64
	OutputTokens    int64
	CachedTokens    int64
	ReasoningTokens int64
	Cost            money.Amount
}

// BalanceChange is an audited admin change of a balance.
type BalanceChange struct {
	ID         int64
	UserID     string
	Actor      string
	Reason     string
	OldBalance money.Amount
	NewBalance money.Amount
	CreatedAt  time.Time
}

// ModelPrice is a model's price. Input and Output are per 1M tokens; a
// PerMessage of zero or more bills each answer at that flat price instead.
type ModelPrice struct {
	ID          string
	Name        string
	BaseModelID string // the OpenWebUI base model a derived model wraps, if any
	Input       money.Amount
	Output      money.Amount
	PerMessage  money.Amount // < 0: bill by tokens
	Priced      bool         // false: recorded automatically, the defaults apply
	UpdatedAt   time.Time
}

// Ledger is the sums behind one user's balance. For every user at every
// moment: Initial + Adjustments − Charges = Balance, as long as the sums
// fit in an int64; sums beyond it saturate at its ends rather than fail.
type Ledger struct {
	Initial     money.Amount
	Adjustments money.Amount // sum of new − old over the user's balance changes
	Charges     money.Amount // sum of the cost of the user's records
	Balance     money.Amount
	Records     int64
}

// UserSortFields are the fields users can be sorted by; anything else is
// refused (ErrInvalidQuery), so no caller-chosen text reaches SQL.
var UserSortFields = []string{"created_at", "balance", "name", "email", "role"}

// RecordSortFields are the fields records can be sorted by.
var RecordSortFields = []string{"created_at", "cost", "input_tokens", "output_tokens", "model", "user_id", "nickname", "balance_after"}

// ErrInvalidQuery reports a query the store refuses (a sort field not in
// the fixed list, a page size out of range).
var ErrInvalidQuery = errors.New("invalid query")

// Page sizes of the list queries.
const (
	DefaultPageSize = 20
	MaxPageSize     = 500
)

// LimitOffset checks a page (1-based; 0 means 1) and a page size (0 means
// DefaultPageSize) and returns the SQL LIMIT and OFFSET.
func LimitOffset(page, size int) (limit, offset int64, err error) {
	if size == 0 {
		size = DefaultPageSize
	}
	if size < 1 || size > MaxPageSize {
		return 0, 0, fmt.Errorf("%w: page size %d is not within 1..%d", ErrInvalidQuery, size, MaxPageSize)
	}
	if page < 0 {
		return 0, 0, fmt.Errorf("%w: page %d is negative", ErrInvalidQuery, page)
	}
	if page == 0 {
		page = 1
	}
	if int64(page-1) > math.MaxInt64/int64(size) {
		return 0, 0, fmt.Errorf("%w: page %d is too far", ErrInvalidQuery, page)
	}
	return int64(size), int64(page-1) * int64(size), nil
}

// UserQuery selects a page of users for the admin.
type UserQuery struct {
	Page       int    // 1-based; 0 means 1
	PageSize   int    // 1..500; 0 means 20
	SortField  string // one of UserSortFields; "" means created_at
	Descending bool
	Search     string // case-insensitive substring of the name or the email
	Blocked    *bool  // nil: everyone
}

// RecordQuery selects usage records.
type RecordQuery struct {
	Page       int    // 1-based; 0 means 1
	PageSize   int    // 1..500; 0 means 20
	SortField  string // one of RecordSortFields; "" means created_at
	Descending bool
	Users      []string  // user ids; empty: all
	Models     []string  // empty: all
	From, To   time.Time // created_at in [From, To); zero: unbounded
	// UserSearch, when not empty, keeps the records of the users whose
	// name or email holds it (a case-insensitive substring, wildcards
	// taken literally) or whose id it is; with Users, of those users too.
	UserSearch string
}

// UsageTotals sums final records (pending holds are not usage yet). Sums
// beyond an int64 saturate at its ends rather than fail.
type UsageTotals struct {
	Cost         money.Amount
	Calls        int64
	InputTokens  int64
	OutputTokens int64
}

// Add adds o to t, saturating (SatAdd).
func (t *UsageTotals) Add(o UsageTotals) {
	t.Cost = money.Amount(SatAdd(int64(t.Cost), int64(o.Cost)))
	t.Calls = SatAdd(t.Calls, o.Calls)
	t.InputTokens = SatAdd(t.InputTokens, o.InputTokens)
	t.OutputTokens = SatAdd(t.OutputTokens, o.OutputTokens)
}

// ModelUsage is one model's share of usage.
type ModelUsage struct {
	Model string
	UsageTotals
}

// UserUsage is one user's share of usage, with the user's current name.
type UserUsage struct {
	UserID string
	Name   string
	UsageTotals
}

// DayUsage is one UTC day's usage.
type DayUsage struct {
	Day time.Time // UTC midnight
	UsageTotals
}

// Usage summarises final records in a time range.
type Usage struct {
	Total       UsageTotals
	ActiveUsers int64
	Models      int64
	ByModel     []ModelUsage // most cost first
	ByUser      []UserUsage  // most cost first
	ByDay       []DayUsage   // oldest first, days without usage left out
	// What only the monitor knows (the breakdown rollups): the usage by
	// purpose and by path (Source), most cost first, and the cached and
	// reasoning tokens within Total's input and output tokens.
	ByPurpose       []KindUsage
	BySource        []KindUsage
	CachedTokens    int64
	ReasoningTokens int64
}

// KindUsage is one purpose's or one path's share of usage, with the cached
// and reasoning tokens among its input and output tokens.
type KindUsage struct {
	Key string // the purpose ("" when unknown) or the Source
	UsageTotals
	CachedTokens    int64
	ReasoningTokens int64
}

// Backup is every row the store keeps.
type Backup struct {
	Users          []User
	ModelPrices    []ModelPrice
	Records        []Record
	BalanceChanges []BalanceChange
}

// Store is the storage of users, prices and the usage ledger.
type Store interface {
	// Kind names the backend: "sqlite" or "postgres".
	Kind() string

	// UpsertUser creates the user with balance initial, or refreshes the
	// email, name and role of an existing one (its balance is untouched).
	UpsertUser(ctx context.Context, u UserInfo, initial money.Amount) (User, error)
	// User returns one user, or ErrNotFound.
	User(ctx context.Context, id string) (User, error)

	// Reserve writes a pending record and takes its cost from the user's
	// balance in one transaction, when the rule allows and the user is not
	// blocked. A record with the same key makes it do nothing and return
	// that record. The user must exist (ErrNotFound otherwise).
	Reserve(ctx context.Context, r Reservation) (ReserveResult, error)

	// Charge writes a final record and takes its cost from the balance in one
	// transaction. With a key: a pending record with that key is completed in
	// place and only the difference to what it held moves (an expired hold
	// held nothing, so a late report still charges in full); any other
	// final record with that key means a duplicate, and nothing changes. The user must
	// exist (ErrNotFound otherwise); blocked users are still charged.
	// A record with the key whose source is SourceProvider and whose status
	// is not expired covers a charge from another path (r.Source neither
	// empty nor SourceProvider): nothing changes and the result is Covered.
	// (An empty r.Source keeps the record's source, as the settlement of an
	// expired hold does, and is not covered.)
	Charge(ctx context.Context, r Record) (ChargeResult, error)
	// AdoptHold makes a pending hold of a.UserID that another path placed
	// (source not SourceProvider) the provider meter's own, in one
	// transaction: with a.Key, the pending record with that key; else, with
	// a.ChatID, the oldest one of that chat, or failing that the oldest of
	// NewChatID, which is re-keyed to a.ChatID (as RekeyHold); else the
	// oldest one without a chat. Its source becomes SourceProvider (and its
	// purpose a.Purpose when set); its cost, expiry and the balance stay.
	// It returns the adopted record and true, or false when none matches.
	// Concurrent calls, from other processes too, never adopt one hold twice.
	AdoptHold(ctx context.Context, a Adoption) (Record, bool, error)
	// LimitUsage sums, for each check, what userID (or the check's pool)
	// used in its window up to now: final records and holds in flight.
	LimitUsage(ctx context.Context, userID string, checks []LimitCheck, now time.Time) ([]int64, error)
	// Limits returns every budget limit; PutLimit inserts one (ID 0) or
	// replaces one; DeleteLimit removes one (ErrNotFound if none).
	Limits(ctx context.Context) ([]budget.Limit, error)
	PutLimit(ctx context.Context, l budget.Limit) (budget.Limit, error)
	DeleteLimit(ctx context.Context, id int64) error
	// Grants returns every grant; AddGrant stores one; DeleteGrant removes one.
	Grants(ctx context.Context) ([]budget.Grant, error)
	AddGrant(ctx context.Context, g budget.Grant) (budget.Grant, error)
	DeleteGrant(ctx context.Context, id int64) error
	// ApplyGrant applies a grant for the window starting at window to the
	// users of its scope, once across calls and instances (a window not
	// after the last one applied changes nothing), in one transaction;
	// each change is recorded with the actor "grant:<id>".
	ApplyGrant(ctx context.Context, id int64, window time.Time) ([]BalanceChange, error)
	// Groups returns OpenWebUI's groups as last synced; SetGroups replaces
	// them; UserGroups lists the ids of one user's groups.
	Groups(ctx context.Context) ([]budget.Group, error)
	SetGroups(ctx context.Context, groups []budget.Group) error
	UserGroups(ctx context.Context, userID string) ([]string, error)

	// RekeyHold gives the pending record with oldKey the chat id chatID and
	// the key chatID + "/" + its message id, whatever its source. It reports
	// false, and changes nothing, when no pending record with a message id
	// has oldKey.
	RekeyHold(ctx context.Context, oldKey, chatID string) (Record, bool, error)

	// SetBalance sets a balance and records the change with its actor.
	SetBalance(ctx context.Context, userID string, balance money.Amount, actor, reason string) (BalanceChange, error)
	// AdjustBalance adds delta (which may be negative) and records the change.
	AdjustBalance(ctx context.Context, userID string, delta money.Amount, actor, reason string) (BalanceChange, error)
	// SetBlocked blocks or unblocks a user.
	SetBlocked(ctx context.Context, userID string, blocked bool) error

	// ModelPrice returns a model's price row, or ErrNotFound.
	ModelPrice(ctx context.Context, id string) (ModelPrice, error)
	// PutModelPrice stores an admin's price (Priced is set true).
	PutModelPrice(ctx context.Context, p ModelPrice) (ModelPrice, error)
	// RecordModel notes a model seen in traffic with no price row yet, so an
	// admin can price it. An existing row is left as it is, except that an
	// unpriced row that names no base model takes baseModelID (OpenWebUI
	// named it later): its charges then inherit the base's price.
	RecordModel(ctx context.Context, id, name, baseModelID string) error

	// Ledger sums one user's ledger (for audits and tests).
	Ledger(ctx context.Context, userID string) (Ledger, error)
	// RecordByKey returns the record with an idempotency key, or ErrNotFound.
	RecordByKey(ctx context.Context, key string) (Record, error)
	// MessageUsage sums the records with the source, chat id and message id
	// (pending ones included, failed and expired ones not). messageID must
	// not be empty.
	MessageUsage(ctx context.Context, source, chatID, messageID string) (MessageUsage, error)
	// ReleaseHold removes the pending record with the key and gives its cost
	// back, in one transaction. It reports false, and changes nothing, when
	// no pending record has the key.
	ReleaseHold(ctx context.Context, key string) (bool, error)
	// ExpiredHolds lists pending records whose ExpiresAt is not after now,
	// oldest first, at most limit. Settling them is the caller's (Charge).
	ExpiredHolds(ctx context.Context, now time.Time, limit int) ([]Record, error)

	// ListUsers returns a page of users and how many match in all.
	ListUsers(ctx context.Context, q UserQuery) ([]User, int64, error)
	// DeleteUser removes a user with their records and balance changes.
	DeleteUser(ctx context.Context, id string) error
	// BalanceChanges returns a user's latest balance changes, newest first.
	BalanceChanges(ctx context.Context, userID string, limit int) ([]BalanceChange, error)
	// ListRecords returns a page of records and how many match in all.
	ListRecords(ctx context.Context, q RecordQuery) ([]Record, int64, error)
	// EachRecord calls fn for every matching record in order, ignoring
	// paging, without loading them all at once (CSV export).
	EachRecord(ctx context.Context, q RecordQuery, fn func(Record) error) error
	// UsageBetween summarises the final records created in [from, to)
	// (zero times: unbounded).
	UsageBetween(ctx context.Context, from, to time.Time) (Usage, error)
	// UserUsageBetween summarises one user's final records created in
	// [from, to) (zero times: unbounded): Total, ByDay (the days with
	// usage), ByModel, ByPurpose, BySource and the token kinds; ByUser is
	// empty.
	UserUsageBetween(ctx context.Context, userID string, from, to time.Time) (Usage, error)
	// ListModelPrices returns every price row, by id.
	ListModelPrices(ctx context.Context) ([]ModelPrice, error)
	// Export returns every row.
	Export(ctx context.Context) (Backup, error)
	// Import replaces every row with the backup's, in one transaction: all
	// or nothing. keep, when not nil, is called first inside that
	// transaction, with no other write in between, with every row the
	// import replaces (as Export returns them); an error from keep undoes
	// the import and is returned (wrapped).
	Import(ctx context.Context, b Backup, keep func(replaced Backup) error) error

	// Probe makes one small write of its own (a row no other query
	// reads): it fails while the store cannot take writes.
	Probe(ctx context.Context) error

	// Close releases the connections.
	Close() error
}
