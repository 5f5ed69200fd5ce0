package ledger

// Durable settlement. A charge the store cannot take is kept in the
// journal (fsynced) and written, in order, once the store answers again;
// each call in flight is journaled with what it has produced, so that after
// a crash its answer is charged for that (RecoveredAnswer) instead of
// lapsing at zero. Every entry carries the charge's idempotency key: a
// replay never charges twice.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openwebui-monitor/owmon/internal/journal"
	"github.com/openwebui-monitor/owmon/internal/metrics"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// ErrUnavailable refuses a model call while the store cannot take writes:
// under store_outage fail_closed, or under fail_open when the journal
// cannot be written either or the user's balance was never read.
var ErrUnavailable = errors.New("the store cannot record charges")

// Durable is the state that keeps charges while the store is down: the
// journal, whether the store is down, what deferred charges each user
// owes, and the balances last read. One Durable serves every ledger over
// a store (across config reloads).
type Durable struct {
	journal  *journal.Journal // nil: off
	failOpen bool
	log      *slog.Logger

	mu      sync.Mutex
	down    bool
	cause   string
	since   time.Time
	owed    map[string]money.Amount // per user: deferred charges not yet written
	pending int                     // deferred charges not yet written
	probed  time.Time               // when Health last probed the store

	known sync.Map // user id → knownUser: the last balance read

	spare *LocalHolds // holds of calls admitted while the store is down (fail_open)

	draining  sync.Mutex // one drain at a time, whichever ledger runs it
	recovered sync.Once  // the calls a crash interrupted are settled once
	wake      chan struct{}

	recoveredCalls atomic.Int64 // calls a crash interrupted, charged from the journal
	expiredHolds   atomic.Int64 // holds that lapsed with no journal trace

	metrics atomic.Pointer[metrics.Metrics] // the ledgers' metrics: store errors
	open    *openHolds                      // holds in the store placed here, not yet settled
}

type knownUser struct {
	balance money.Amount
	blocked bool
}

// NewDurable returns the durable state over j (nil: no journal). failOpen
// admits known users while the store is down (store_outage fail_open);
// without a journal that is refused.
func NewDurable(j *journal.Journal, failOpen bool, log *slog.Logger) *Durable {
	if log == nil {
		log = slog.Default()
	}
	d := &Durable{journal: j, failOpen: failOpen && j != nil, log: log,
		owed: make(map[string]money.Amount), spare: NewLocalHolds(), wake: make(chan struct{}, 1), open: newOpenHolds()}
	if j != nil {
		// Deferred charges an earlier process left: owed until written.
		for _, e := range j.Settlements() {
			var p deferred
			if json.Unmarshal(e.Settlement, &p) == nil {
				d.owed[p.Answer.User.ID] += p.Owed
				d.pending++
			}
		}
	}
	return d
}

// tracked is what the journal keeps of a call in flight.
type tracked struct {
	User       store.UserInfo `json:"user"`
	Model      string         `json:"model"`
	Base       string         `json:"base,omitempty"`
	Prompt     int64          `json:"prompt"`
	ChatID     string         `json:"chat,omitempty"`
	MessageID  string         `json:"message,omitempty"`
	Source     Source         `json:"source"`
	Purpose    string         `json:"purpose,omitempty"`
	Background bool           `json:"background,omitempty"` // a web-UI chat the websocket tap settles
	Started    time.Time      `json:"started"`
}

// deferred is a charge waiting for the store.
type deferred struct {
	Answer Answer       `json:"answer"`
	Owed   money.Amount `json:"owed"` // its cost as priced when deferred
}

// Health is the state of the store and the journal, for the health
// endpoint and the dashboard.
type Health struct {
	// Status sums it up: "ok"; "degraded" (calls are admitted, but the
	// store is down or charges wait in the journal, or the journal cannot
	// be written); "unavailable" (model calls are refused).
	Status      string    `json:"status"`
	StoreOK     bool      `json:"store_ok"`
	StoreError  string    `json:"store_error,omitempty"`
	DownSince   time.Time `json:"down_since,omitzero"`
	StoreOutage string    `json:"store_outage"` // fail_open or fail_closed
	Journal     string    `json:"journal,omitempty"`
	JournalOK   bool      `json:"journal_ok"`
	// Pending counts charges kept in the journal, not yet in the store.
	Pending int `json:"settlements_pending"`
	// RecoveredCalls counts answers a crash interrupted, charged for what
	// the journal recorded; ExpiredHolds counts holds that lapsed with no
	// trace in the journal (nothing is known of what they produced).
	RecoveredCalls int64 `json:"recovered_calls"`
	ExpiredHolds   int64 `json:"expired_holds"`
	// Admitting says whether model calls are admitted now.
	Admitting bool `json:"admitting"`
}

// Health reports the state of the store and the journal.
func (d *Durable) Health() Health {
	d.mu.Lock()
	h := Health{StoreOK: !d.down, StoreError: d.cause, Pending: d.pending, StoreOutage: "fail_closed"}
	if d.down {
		h.DownSince = d.since
	}
	d.mu.Unlock()
	if d.failOpen {
		h.StoreOutage = "fail_open"
	}
	if d.journal != nil {
		h.Journal = d.journal.Path()
		h.JournalOK = d.journal.Err() == nil
	}
	h.RecoveredCalls, h.ExpiredHolds = d.recoveredCalls.Load(), d.expiredHolds.Load()
	h.Admitting = h.StoreOK || d.admitsDuringOutage()
	h.sum(d.journal != nil)
	return h
}

func (h *Health) sum(journaled bool) {
	switch {
	case !h.Admitting:
		h.Status = "unavailable"
	case !h.StoreOK || h.Pending > 0 || (journaled && !h.JournalOK):
		h.Status = "degraded"
	default:
		h.Status = "ok"
	}
}

// Journal returns the journal; nil when off.
func (d *Durable) Journal() *journal.Journal { return d.journal }

// isDown reports whether the store is known not to take writes.
func (d *Durable) isDown() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.down
}

// storeFailed notes that a store write failed.
func (d *Durable) storeFailed(err error) {
	d.metrics.Load().StoreError()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.down {
		d.down, d.since = true, time.Now()
		d.log.Error("the store does not take writes: charges are kept in the journal until it does", "error", err)
	}
	d.cause = err.Error()
}

// storeBack notes that a store write succeeded.
func (d *Durable) storeBack() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		d.log.Info("the store takes writes again", "down_for", time.Since(d.since).Round(time.Millisecond).String())
	}
	d.down, d.cause = false, ""
}

// admitsDuringOutage reports whether model calls may start while the store
// does not take writes: under fail_open, while the journal can be written.
func (d *Durable) admitsDuringOutage() bool {
	return d.failOpen && d.journal != nil && d.journal.Err() == nil
}

// owedBy is what a user's deferred charges take from their balance.
func (d *Durable) owedBy(user string) money.Amount {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.owed[user]
}

func (d *Durable) know(u store.User) {
	d.known.Store(u.ID, knownUser{balance: u.Balance, blocked: u.Blocked})
}

func (d *Durable) knowBalance(user string, balance money.Amount) {
	if v, ok := d.known.Load(user); ok {
		k := v.(knownUser)
		k.balance = balance
		d.known.Store(user, k)
		return
	}
	d.known.Store(user, knownUser{balance: balance})
}

func (d *Durable) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// storeFailure reports whether err means the store could not take a
// write, rather than a refusal of the write itself.
func storeFailure(err error) bool {
	return err != nil && !errors.Is(err, store.ErrOutOfRange) && !errors.Is(err, store.ErrNotFound)
}

// track journals a call admitted with the hold res, so a crash does not
// lose what it produces. It reports false when the journal could not
// make that durable.
func (l *Ledger) track(h Hold, res HoldResult) bool {
	j := l.journal()
	if j == nil {
		return true
	}
	key, chat, msg := h.Key, h.ChatID, h.MessageID
	if res.Adopted {
		key, chat, msg = res.Key, res.ChatID, res.MessageID
	}
	if key == "" {
		return true
	}
	b, _ := json.Marshal(tracked{User: h.User, Model: h.Model, Base: h.BaseModelID, Prompt: h.PromptTokens,
		ChatID: chat, MessageID: msg, Source: h.Source, Purpose: h.Purpose, Background: !h.Settled, Started: time.Now()})
	if err := j.Begin(key, b); err != nil {
		l.durable.log.Warn("cannot journal a call in flight: a crash would leave its answer to the hold's expiry", "error", err)
		return false
	}
	return true
}

// storeTakesWrites probes the store with a write, when the journal could
// not take a call's record: a full disk under both fails both, and the
// call would then have no durable place for its charge. Only that path
// pays for the probe.
func (l *Ledger) storeTakesWrites(ctx context.Context) bool {
	err := l.store.Probe(ctx)
	if err != nil && l.durable != nil {
		l.durable.storeFailed(err)
	}
	return err == nil
}

// Progress journals how many output tokens the call with key has produced
// so far; after a crash its answer is charged for the last count.
func (l *Ledger) Progress(key string, output int64) {
	if j := l.journal(); j != nil && key != "" {
		j.Progress(key, output)
	}
}

// Untrack forgets the call with key when source tracked it: the front's
// call whose hold the provider meter adopted (the provider call charges it).
func (l *Ledger) Untrack(key string, source Source) {
	j := l.journal()
	if j == nil || key == "" {
		return
	}
	if e, ok := j.Get(key); ok && e.Settlement == nil {
		var t tracked
		if json.Unmarshal(e.Call, &t) == nil && t.Source == source {
			j.Done(key)
		}
	}
}

// settled forgets what the journal keeps of key, once its charge is in
// the store.
func (l *Ledger) settled(key string) {
	if j := l.journal(); j != nil && key != "" {
		j.Done(key) // a key the journal does not hold costs a map lookup, no write
	}
}

func (l *Ledger) journal() *journal.Journal {
	if l.durable == nil {
		return nil
	}
	return l.durable.journal
}

// RecoveredAnswer is how a call a crash interrupted is charged, from what
// the journal kept of it: cancelled, for its counted prompt and the last
// output count journaled (at most SyncEvery behind what was streamed);
// estimated. With no output recorded it costs nothing (as a call cancelled
// before any output), and its hold is given back.
func RecoveredAnswer(key string, call []byte, output int64) (Answer, error) {
	var t tracked
	if err := json.Unmarshal(call, &t); err != nil {
		return Answer{}, fmt.Errorf("journal entry %q: %w", key, err)
	}
	return Answer{
		User: t.User, Model: t.Model, BaseModelID: t.Base,
		InputTokens: t.Prompt, OutputTokens: output, Estimated: true,
		Status: StatusCancelled, Source: t.Source, Purpose: t.Purpose,
		ChatID: t.ChatID, MessageID: t.MessageID, Key: key,
		Duration: time.Since(t.Started),
	}, nil
}

// deferCharge keeps a charge the store could not take in the journal
// (in memory too, should the journal fail as well) and answers as if it
// were made, priced now.
func (l *Ledger) deferCharge(ctx context.Context, a Answer, cause error) (ChargeResult, error) {
	d := l.durable
	l.capTokens(&a)
	if a.Key == "" {
		a.Key = Key(a.ChatID, a.MessageID)
	}
	if a.Key == "" {
		a.Key = "deferred/" + newID() // its own key, so the replay is written once
	}
	if a.Status == "" {
		a.Status = StatusCompleted
	}
	cost := l.cost(ctx, a)
	b, err := json.Marshal(deferred{Answer: a, Owed: cost})
	if err != nil {
		return ChargeResult{}, err
	}
	// Counted before the journal is written, so a drain running at once
	// never gives back what was not yet counted.
	d.mu.Lock()
	d.owed[a.User.ID] += cost
	d.pending++
	d.mu.Unlock()
	if err := d.journal.Settle(a.Key, b); err != nil {
		d.log.Error("cannot journal a charge the store did not take: it is kept in memory until one of them can", "key", a.Key, "error", err)
	}
	d.kick()
	balance := money.Amount(0)
	if v, ok := d.known.Load(a.User.ID); ok {
		balance = v.(knownUser).balance
	}
	balance -= d.owedBy(a.User.ID)
	l.durable.log.Warn("charge deferred to the journal", "key", a.Key, "user", a.User.ID, "cost", cost.String(), "cause", cause)
	return ChargeResult{Deferred: true, Balance: balance, Record: store.Record{
		UserID: a.User.ID, Nickname: a.User.Name, Model: a.Model,
		InputTokens: a.InputTokens, OutputTokens: a.OutputTokens, CachedTokens: a.CachedTokens,
		ReasoningTokens: a.ReasoningTokens, Cost: cost, BalanceAfter: balance, Source: a.Source,
		Status: a.Status, Estimated: a.Estimated, Purpose: a.Purpose, ChatID: a.ChatID,
		MessageID: a.MessageID, Key: a.Key, DurationMS: a.Duration.Milliseconds(),
	}}, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// cost prices an answer as Charge would, from cached prices (stale ones
// too) when the store cannot be asked; the default price when none is known.
func (l *Ledger) cost(ctx context.Context, a Answer) money.Amount {
	if a.Status == StatusFailed || (a.Status == StatusCancelled && a.OutputTokens == 0) {
		return 0
	}
	price, err := l.Price(ctx, a.Model, a.BaseModelID)
	if err != nil {
		price = l.cfg.DefaultPrice
	}
	c, ok := price.CostChecked(a.InputTokens, a.OutputTokens)
	if !ok {
		return money.Max
	}
	return c
}

// Run keeps the store and the journal in step until ctx ends: it charges
// the calls a crash interrupted, writes deferred charges in order once the
// store takes them, and, while the store is down with nothing to write,
// probes it. Ledgers sharing a Durable may all run it; one drains at a time.
func (l *Ledger) Run(ctx context.Context) {
	d := l.durable
	if d == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		l.drain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-d.wake:
		}
	}
}

// drain is one round of Run.
func (l *Ledger) drain(ctx context.Context) {
	d := l.durable
	d.draining.Lock()
	defer d.draining.Unlock()
	if j := d.journal; j != nil {
		d.recovered.Do(func() { l.recoverCalls() })
		for _, e := range j.Settlements() {
			if ctx.Err() != nil {
				return
			}
			var p deferred
			if err := json.Unmarshal(e.Settlement, &p); err != nil {
				d.log.Error("dropping an unreadable journal entry", "key", e.Key, "error", err)
				j.Done(e.Key)
				continue
			}
			_, err := l.chargeStore(ctx, p.Answer)
			if storeFailure(err) {
				d.storeFailed(err)
				return // the store is still down: the rest waits, in order
			}
			if err != nil {
				d.log.Error("a deferred charge cannot be written and is dropped", "key", e.Key, "user", p.Answer.User.ID, "error", err)
			}
			j.Done(e.Key)
			d.mu.Lock()
			if d.owed[p.Answer.User.ID] -= p.Owed; d.owed[p.Answer.User.ID] <= 0 {
				delete(d.owed, p.Answer.User.ID)
			}
			d.pending--
			d.mu.Unlock()
			d.storeBack()
		}
	}
	if d.isDown() {
		if err := l.store.Probe(ctx); err == nil {
			d.storeBack()
		} else if ctx.Err() == nil {
			d.storeFailed(err)
		}
	}
}

// recoverCalls turns the calls an earlier process left in flight into
// deferred charges (RecoveredAnswer). Web-UI chats answered in the
// background are left to their hold's expiry, which charges them from the
// journal: the websocket may yet report their whole answer.
func (l *Ledger) recoverCalls() {
	d := l.durable
	for _, e := range d.journal.Recovered() {
		if e.Settlement != nil || e.Call == nil {
			continue
		}
		var t tracked
		if json.Unmarshal(e.Call, &t) == nil && t.Background {
			continue
		}
		a, err := RecoveredAnswer(e.Key, e.Call, e.Output)
		if err != nil {
			d.log.Error("dropping an unreadable journal entry", "key", e.Key, "error", err)
			d.journal.Done(e.Key)
			continue
		}
		d.recoveredCalls.Add(1)
		d.log.Warn("charging a call the last run left in flight, for what it had produced", "key", e.Key,
			"user", a.User.ID, "output_tokens", a.OutputTokens)
		if res, err := l.deferCharge(context.Background(), a, errors.New("recovered after a crash")); err == nil {
			l.charged(res, 0)
		}
	}
}

// holdDuringOutage holds a call in memory against the user's last known
// balance, less what their deferred charges and calls in flight take,
// while the store is down (store_outage fail_open). A user whose balance
// was never read, a price never resolved, or a journal that cannot be
// written refuses it (ErrUnavailable).
func (l *Ledger) holdDuringOutage(ctx context.Context, h Hold) (HoldResult, error) {
	d := l.durable
	if d == nil || !d.admitsDuringOutage() {
		return HoldResult{}, ErrUnavailable
	}
	v, ok := d.known.Load(h.User.ID)
	if !ok {
		return HoldResult{}, ErrUnavailable
	}
	k := v.(knownUser)
	// Budget limits are not checked: their usage is in the store. Under
	// fail_open the operator chose to serve, as with balances last known.
	amount, _, err := l.holdAmount(ctx, h)
	if err != nil {
		return HoldResult{}, ErrUnavailable
	}
	lh := l.cfg.LocalHolds
	if lh == nil {
		lh = d.spare
	}
	u := store.User{UserInfo: h.User, Balance: k.balance - d.owedBy(h.User.ID), Blocked: k.blocked}
	lh.mu.Lock()
	res := lh.place(u, h, amount)
	lh.mu.Unlock()
	return res, nil
}

// recoverExpired settles an expired hold from the journal when it has a
// trace of the call with output recorded (a web-UI chat whose answer the
// websocket tap lost, or a call a crash interrupted): charged as
// RecoveredAnswer, not released at zero. It reports whether it did.
func (l *Ledger) recoverExpired(ctx context.Context, h store.Record) bool {
	j := l.journal()
	if j == nil {
		return false
	}
	e, ok := j.Get(h.Key)
	if !ok || e.Call == nil || e.Settlement != nil || e.Output <= 0 {
		return false
	}
	a, err := RecoveredAnswer(e.Key, e.Call, e.Output)
	if err != nil {
		return false
	}
	start := time.Now()
	res, err := l.chargeStore(ctx, a)
	if err != nil {
		return false // expired at zero instead, or tried again next round
	}
	l.charged(res, time.Since(start))
	j.Done(h.Key)
	l.durable.recoveredCalls.Add(1)
	l.durable.log.Warn("charged a lapsed hold for what the journal recorded", "key", h.Key, "user", a.User.ID, "output_tokens", a.OutputTokens)
	return true
}

// healthProbeEvery bounds how often Health writes to the store: the
// health endpoint answers without authentication.
const healthProbeEvery = time.Second

// Health reports the state of the store and the journal, probing the
// store with a write (at most once a second; ctx bounds it), so an outage
// shows with no traffic too.
func (l *Ledger) Health(ctx context.Context) Health {
	d := l.durable
	if d == nil {
		err := l.store.Probe(ctx)
		h := Health{StoreOK: err == nil, StoreOutage: "fail_closed", Admitting: err == nil}
		if err != nil {
			h.StoreError = err.Error()
		}
		h.sum(false)
		return h
	}
	d.mu.Lock()
	due := time.Since(d.probed) >= healthProbeEvery
	if due {
		d.probed = time.Now()
	}
	d.mu.Unlock()
	if due {
		if err := l.store.Probe(ctx); err == nil {
			d.storeBack()
		} else if ctx.Err() == nil {
			d.storeFailed(err)
		}
	}
	return d.Health()
}
