// Package ledger charges users for answers: it resolves prices, computes
// costs and hands each charge to the store as one transaction. Every path
// that meters an answer (the filter function's outlet, the proxy, the
// websocket tap, the provider meter) charges through here, with the same
// idempotency key, so an answer is charged once whichever path sees it first.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openwebui-monitor/owmon/internal/metrics"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// Config is how the ledger prices and funds users.
type Config struct {
	InitBalance  money.Amount       // balance of a new user
	DefaultPrice pricing.Price      // price of models nobody priced
	InletCosts   pricing.InletCosts // pre-charges when a chat starts
	MinHold      money.Amount       // least amount a hold reserves
	// HoldOutputTokens is the answer a hold covers when the call does not
	// bound it (max_tokens): with it, concurrent calls spend at most the
	// balance plus one call's overrun. 0: the prompt only.
	HoldOutputTokens int64
	// LocalHolds, when set, keeps the holds of calls settled in this
	// process in memory rather than in the store. Only for a store no other
	// process writes (SQLite): it saves a write before every call, and a
	// crash loses nothing since nothing was taken. Share one LocalHolds
	// between ledgers over the same store (across config reloads).
	LocalHolds *LocalHolds
	// Claims, when set, is the table of messages the provider meter
	// charges, shared across config reloads; a ledger makes its own if nil.
	Claims *Claims
	// Durable, when set, keeps charges the store cannot take in a journal
	// and admits calls while the store is down as its policy says; shared
	// across config reloads.
	Durable *Durable
	// Budgets, when set, are the budget limits holds respect and the
	// grants ApplyGrants applies; shared across config reloads.
	Budgets *Budgets
	// PriceTTL is how long a resolved price is reused before the store is
	// asked again, which bounds how stale prices changed by another instance
	// can be. Default 5s.
	PriceTTL time.Duration
	// MaxTokensPerCall bounds the token counts of one answer
	// (max_tokens_per_call); 0: no bound. The filter function's outlet
	// refuses a report above it (400); on the other paths the answer has
	// been delivered, and Charge counts it as this many tokens, marked
	// estimated.
	MaxTokensPerCall int64
	// Metrics, when set, counts charges, settlements and store errors
	// (nil: none).
	Metrics *metrics.Metrics
	// Log takes one line per charge, hold expiry and admin change; nil:
	// discarded. QuietCharges (log_charges off) leaves out the charge
	// lines only.
	Log          *slog.Logger
	QuietCharges bool
}

// Ledger charges users. It is safe for concurrent use.
type Ledger struct {
	store   store.Store
	cfg     Config
	durable *Durable // nil: charges the store cannot take are errors
	metrics *metrics.Metrics
	log     *slog.Logger
	open    *openHolds // stored holds this process placed and has not settled

	mu     sync.Mutex
	prices map[priceKey]cachedPrice

	// users remembers the identity last written per user id, so an unchanged
	// user costs no write on every call.
	users sync.Map // string → store.UserInfo
}

// LocalHolds are money held in memory, per user.
type LocalHolds struct {
	mu       sync.Mutex
	held     map[string]money.Amount // per user
	released map[string]uint64       // per user, holds given back so far
	open     map[string][]*LocalHold // per user, oldest first: what the provider meter may adopt
	count    int                     // holds placed and not released
}

// NewLocalHolds returns an empty table of local holds.
func NewLocalHolds() *LocalHolds {
	return &LocalHolds{held: make(map[string]money.Amount), released: make(map[string]uint64), open: make(map[string][]*LocalHold)}
}

// LocalHold is one call's hold in memory. It is released once, by the call
// that owns it (ReleaseLocal). The provider meter may adopt a front call's
// hold: the provider call then owns it, and the front charges nothing.
type LocalHold struct {
	owner                        *LocalHolds
	user, key, chatID, messageID string
	amount                       money.Amount
	released                     bool
	adopted                      atomic.Bool
}

// Adopted reports whether the provider meter took the hold over: its
// call then charges the message, under the hold's key.
func (h *LocalHold) Adopted() bool { return h != nil && h.adopted.Load() }

// release gives the hold back unless that was done already; lh.mu is held.
func (lh *LocalHolds) release(h *LocalHold) {
	if h.released {
		return
	}
	h.released = true
	lh.count--
	lh.released[h.user]++
	if rest := lh.held[h.user] - h.amount; rest > 0 {
		lh.held[h.user] = rest
	} else {
		delete(lh.held, h.user)
	}
	lh.drop(h)
}

// drop removes h from its user's adoptable holds; lh.mu is held.
func (lh *LocalHolds) drop(h *LocalHold) {
	open := lh.open[h.user]
	for i, o := range open {
		if o == h {
			open = append(open[:i], open[i+1:]...)
			break
		}
	}
	if len(open) == 0 {
		delete(lh.open, h.user)
	} else {
		lh.open[h.user] = open
	}
}

// adopt hands the provider meter the oldest hold of user for chatID (the
// exact key when key is set), as AdoptHold does for stored holds.
func (lh *LocalHolds) adopt(user, chatID, key string) *LocalHold {
	lh.mu.Lock()
	defer lh.mu.Unlock()
	for _, h := range lh.open[user] {
		if (key != "" && h.key == key) || (key == "" && h.chatID == chatID) {
			h.adopted.Store(true)
			lh.drop(h)
			return h
		}
	}
	return nil
}

type priceKey struct{ model, base string }

type cachedPrice struct {
	price   pricing.Price
	expires time.Time
}

// New returns a ledger over st.
func New(st store.Store, cfg Config) *Ledger {
	if cfg.PriceTTL <= 0 {
		cfg.PriceTTL = 5 * time.Second
	}
	if cfg.Claims == nil {
		cfg.Claims = NewClaims()
	}
	l := &Ledger{store: st, cfg: cfg, durable: cfg.Durable, prices: make(map[priceKey]cachedPrice),
		metrics: cfg.Metrics, log: cfg.Log, open: newOpenHolds()}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if d := cfg.Durable; d != nil {
		d.metrics.Store(cfg.Metrics)
		l.open = d.open
	}
	return l
}

// Store returns the store the ledger writes to.
func (l *Ledger) Store() store.Store { return l.store }

// MaxTokensPerCall is the configured bound on one answer's token counts;
// 0: none.
func (l *Ledger) MaxTokensPerCall() int64 { return l.cfg.MaxTokensPerCall }

// capTokens bounds an answer's counts by MaxTokensPerCall, marking a
// capped answer estimated.
func (l *Ledger) capTokens(a *Answer) {
	limit := l.cfg.MaxTokensPerCall
	if limit <= 0 {
		return
	}
	for _, n := range []*int64{&a.InputTokens, &a.OutputTokens, &a.CachedTokens, &a.ReasoningTokens} {
		if *n > limit {
			*n, a.Estimated = limit, true
		}
	}
}

// Key is the idempotency key of an answer: OpenWebUI's chat id and message
// id. Without a message id there is no key, and no protection from repeats.
func Key(chatID, messageID string) string {
	if messageID == "" {
		return ""
	}
	return chatID + "/" + messageID
}

// EnsureUser creates the user with the initial balance, or refreshes their
// email, name and role when those changed.
func (l *Ledger) EnsureUser(ctx context.Context, u store.UserInfo) error {
	if u.Role == "" {
		u.Role = "user"
	}
	if seen, ok := l.users.Load(u.ID); ok && seen.(store.UserInfo) == u {
		return nil
	}
	if _, err := l.store.UpsertUser(ctx, u, l.cfg.InitBalance); err != nil {
		return err
	}
	l.users.Store(u.ID, u)
	return nil
}

// user returns the stored user, creating or refreshing it first.
func (l *Ledger) user(ctx context.Context, u store.UserInfo) (store.User, error) {
	if u.Role == "" {
		u.Role = "user"
	}
	if seen, ok := l.users.Load(u.ID); ok && seen.(store.UserInfo) == u {
		got, err := l.store.User(ctx, u.ID)
		if err == nil {
			l.knowUser(got)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return got, err
		}
		l.users.Delete(u.ID)
	}
	got, err := l.store.UpsertUser(ctx, u, l.cfg.InitBalance)
	if err != nil {
		return got, err
	}
	l.users.Store(u.ID, u)
	l.knowUser(got)
	return got, nil
}

// knowUser remembers a balance read, for admitting calls while the store
// is down.
func (l *Ledger) knowUser(u store.User) {
	if l.durable != nil {
		l.durable.know(u)
	}
}

// Price resolves what a model costs: its own price, else the price of the
// base model it derives from (see pricing.BaseCandidates), else the defaults.
// A model with no price row is recorded so that an admin can price it.
func (l *Ledger) Price(ctx context.Context, model, baseModelID string) (pricing.Price, error) {
	key := priceKey{model, baseModelID}
	now := time.Now()
	l.mu.Lock()
	c, ok := l.prices[key]
	l.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.price, nil
	}
	price, err := l.resolve(ctx, model, baseModelID)
	if err != nil {
		if ok {
			return c.price, nil // stale, but the store cannot say better now
		}
		return price, err
	}
	l.mu.Lock()
	if len(l.prices) > 10_000 { // many distinct models: start over rather than grow
		clear(l.prices)
	}
	l.prices[key] = cachedPrice{price, now.Add(l.cfg.PriceTTL)}
	l.mu.Unlock()
	return price, nil
}

func (l *Ledger) resolve(ctx context.Context, model, baseModelID string) (pricing.Price, error) {
	price, src, known, err := resolvePrice(ctx, l.store.ModelPrice, l.cfg.DefaultPrice, model, baseModelID)
	if err != nil {
		return pricing.Price{}, err
	}
	if src.Kind == PriceDefault && !known {
		if err := l.store.RecordModel(ctx, model, model, baseModelID); err != nil {
			return pricing.Price{}, err
		}
	}
	return price, nil
}

func priceOf(p store.ModelPrice) pricing.Price {
	return pricing.Price{Input: p.Input, Output: p.Output, PerMessage: p.PerMessage}
}

// forgetUsers drops the remembered identities, after users were replaced
// (an import).
func (l *Ledger) forgetUsers() { l.users.Clear() }

// forgetPrices drops cached prices, after a price changed.
func (l *Ledger) forgetPrices() {
	l.mu.Lock()
	clear(l.prices)
	l.mu.Unlock()
}

// PreCharge is the money taken when a chat starts, before its answer exists.
type PreCharge struct {
	User      store.UserInfo
	Model     string
	ChatID    string
	MessageID string
	Source    Source
}

// PreChargeResult says what a pre-charge did.
type PreChargeResult struct {
	Blocked bool
	Charged money.Amount // zero when nothing was taken
	Balance money.Amount // after the pre-charge
	// OverLimit, when set, is a budget limit with nothing left for the
	// chat's model: the chat is refused, and nothing was taken.
	OverLimit *OverLimit
}

// PreChargeInlet takes the model's inlet cost (COST_ON_INLET) from a user
// whose balance is above zero. A user at or below zero is only told their
// balance, so retries never push a balance further down; a repeated call
// for the same message takes nothing again.
func (l *Ledger) PreChargeInlet(ctx context.Context, p PreCharge) (PreChargeResult, error) {
	u, err := l.user(ctx, p.User)
	if d := l.durable; storeFailure(err) && d != nil {
		// The store is down: under fail_open a user seen before is told
		// their last known balance, and nothing is taken in advance.
		d.storeFailed(err)
		if v, ok := d.known.Load(p.User.ID); ok && d.failOpen {
			k := v.(knownUser)
			return PreChargeResult{Blocked: k.blocked, Balance: k.balance - d.owedBy(p.User.ID)}, nil
		}
	}
	if err != nil {
		return PreChargeResult{}, err
	}
	if u.Blocked {
		return PreChargeResult{Blocked: true, Balance: u.Balance}, nil
	}
	if u.Balance > 0 {
		over, err := l.exhausted(ctx, u.UserInfo, p.Model)
		if err != nil || over != nil {
			return PreChargeResult{Balance: u.Balance, OverLimit: over}, err
		}
	}
	amount := l.cfg.InletCosts.For(p.Model)
	if amount == 0 || u.Balance <= 0 {
		return PreChargeResult{Balance: u.Balance}, nil
	}
	res, err := l.store.Reserve(ctx, store.Reservation{
		Rule: store.ReserveIfPositive,
		Record: store.Record{
			UserID: u.ID, Nickname: u.Name, Model: p.Model, Cost: amount,
			Source: p.Source, ChatID: p.ChatID, MessageID: p.MessageID,
			Key: Key(p.ChatID, p.MessageID),
		},
	})
	if err != nil {
		return PreChargeResult{}, err
	}
	out := PreChargeResult{Blocked: res.Blocked, Balance: res.Balance}
	if res.Placed {
		out.Charged = amount
		l.open.add(res.Record.Key, time.Time{})
	}
	return out, nil
}

// Answer is one metered answer.
type Answer struct {
	User        store.UserInfo
	Model       string
	BaseModelID string

	InputTokens     int64
	OutputTokens    int64
	CachedTokens    int64
	ReasoningTokens int64
	Estimated       bool // tokens were counted here, not reported by the provider

	// Status is how the answer ended: StatusCompleted (the default),
	// StatusCancelled (charged for what was produced; free when
	// nothing was), or StatusFailed (nothing produced: it costs
	// nothing and releases whatever was taken in advance).
	Status Status

	Source    Source
	Purpose   string
	ChatID    string
	MessageID string
	Key       string // idempotency key; empty: Key(ChatID, MessageID)
	Duration  time.Duration
}

// Charge prices an answer and charges it: once per key, netting whatever a
// pre-charge or hold for the same message took. A key the provider meter
// owns (it adopted the hold) is covered: nothing is charged by the other
// paths, and the result sums the provider meter's records of the message.
//
// An answer whose cost does not fit in an amount, or whose charge would take
// the balance beyond the range of one, is refused with an error wrapping
// store.ErrOutOfRange, and nothing is written.
//
// With a journal (Config.Durable), a charge the store cannot take is kept
// there and written once it can (the result is Deferred); while deferred
// charges wait, new ones queue behind them, so they reach the store in order.
func (l *Ledger) Charge(ctx context.Context, a Answer) (ChargeResult, error) {
	start := time.Now()
	res, err := l.charge(ctx, a)
	if err == nil {
		l.charged(res, time.Since(start))
	}
	return res, err
}

// charge is Charge without the metrics and the log line.
func (l *Ledger) charge(ctx context.Context, a Answer) (ChargeResult, error) {
	if a.Source == SourceProvider && a.MessageID != "" {
		defer l.cfg.Claims.end(Key(a.ChatID, a.MessageID))
	}
	if d := l.durable; d != nil && d.journal != nil {
		d.mu.Lock()
		queued := d.pending > 0
		d.mu.Unlock()
		if queued {
			return l.deferCharge(ctx, a, errors.New("earlier charges wait for the store"))
		}
	}
	res, err := l.chargeStore(ctx, a)
	if storeFailure(err) && l.durable != nil {
		l.durable.storeFailed(err)
		if l.durable.journal != nil {
			return l.deferCharge(ctx, a, err)
		}
	}
	if err != nil {
		return res, err
	}
	if !res.Covered {
		l.settled(res.Record.Key) // a covered key is the provider call's to settle
	}
	if l.durable != nil {
		l.durable.knowBalance(res.Record.UserID, res.Balance)
	}
	if res.Covered {
		return l.providerFigures(ctx, res)
	}
	return res, nil
}

// chargeStore writes a charge to the store (see Charge).
func (l *Ledger) chargeStore(ctx context.Context, a Answer) (ChargeResult, error) {
	if err := l.EnsureUser(ctx, a.User); err != nil {
		return ChargeResult{}, err
	}
	l.capTokens(&a)
	rec := store.Record{
		UserID: a.User.ID, Nickname: a.User.Name, Model: a.Model,
		InputTokens: a.InputTokens, OutputTokens: a.OutputTokens,
		CachedTokens: a.CachedTokens, ReasoningTokens: a.ReasoningTokens,
		Estimated: a.Estimated, Source: a.Source, Purpose: a.Purpose,
		ChatID: a.ChatID, MessageID: a.MessageID, Key: a.Key,
		Status: a.Status, DurationMS: a.Duration.Milliseconds(),
	}
	if b := l.cfg.Budgets; b != nil && b.Now != nil {
		rec.CreatedAt = b.Now() // the clock budget windows read (tests set it)
	}
	if rec.Key == "" {
		rec.Key = Key(a.ChatID, a.MessageID)
	}
	if rec.Status == "" {
		rec.Status = StatusCompleted
	}
	// Failed answers, and calls cancelled before any output, cost nothing.
	free := rec.Status == StatusFailed || (rec.Status == StatusCancelled && a.OutputTokens == 0)
	if !free {
		price, err := l.Price(ctx, a.Model, a.BaseModelID)
		if err != nil {
			return ChargeResult{}, err
		}
		var ok bool
		if rec.Cost, ok = price.CostChecked(a.InputTokens, a.OutputTokens); !ok {
			return ChargeResult{}, fmt.Errorf("the cost of %d input and %d output tokens at %s and %s per 1M tokens "+
				"is more than the largest amount (%s): %w", a.InputTokens, a.OutputTokens, price.Input, price.Output,
				money.Max, store.ErrOutOfRange)
		}
	}
	res, err := l.store.Charge(ctx, rec)
	if errors.Is(err, store.ErrNotFound) {
		// The user vanished since we cached them (an admin deleted them).
		l.users.Delete(a.User.ID)
		if err := l.EnsureUser(ctx, a.User); err != nil {
			return ChargeResult{}, err
		}
		res, err = l.store.Charge(ctx, rec)
	}
	if err != nil {
		return ChargeResult{}, fmt.Errorf("charge: %w", err)
	}
	return res, nil
}

// coveredWait bounds how long a charge waits for the provider calls of its
// message to be settled.
const coveredWait = 10 * time.Second

// providerFigures answers a covered charge with what the provider meter
// charged for the message: the sum of its records, once its calls under
// way in this process are settled.
func (l *Ledger) providerFigures(ctx context.Context, res ChargeResult) (ChargeResult, error) {
	r := res.Record
	if r.MessageID == "" {
		return res, nil
	}
	l.cfg.Claims.wait(ctx, Key(r.ChatID, r.MessageID), coveredWait)
	u, err := l.store.MessageUsage(ctx, SourceProvider, r.ChatID, r.MessageID)
	if err != nil || u.Records == 0 {
		return res, err
	}
	user, err := l.store.User(ctx, r.UserID)
	if err != nil {
		return res, err
	}
	r.Model, r.InputTokens, r.OutputTokens = u.Model, u.InputTokens, u.OutputTokens
	r.CachedTokens, r.ReasoningTokens, r.Cost = u.CachedTokens, u.ReasoningTokens, u.Cost
	r.BalanceAfter, r.Status = user.Balance, StatusCompleted
	return ChargeResult{Covered: true, Record: r, Balance: user.Balance}, nil
}

// Admit says whether a user may start a call whose cost cannot be
// estimated before it runs (OpenWebUI spends the tokens inside; the
// provider meter counts them): not blocked, with a balance above zero
// (and at least min_hold) beyond what their calls in flight hold here.
func (l *Ledger) Admit(ctx context.Context, u store.UserInfo) (HoldResult, error) {
	d := l.durable
	if d != nil && d.isDown() && !d.admitsDuringOutage() {
		return HoldResult{}, ErrUnavailable
	}
	got, err := l.user(ctx, u)
	if storeFailure(err) && d != nil {
		d.storeFailed(err)
		v, ok := d.known.Load(u.ID)
		if !d.admitsDuringOutage() || !ok {
			return HoldResult{}, ErrUnavailable
		}
		got, err = store.User{UserInfo: u, Balance: v.(knownUser).balance, Blocked: v.(knownUser).blocked}, nil
	}
	if err != nil {
		return HoldResult{}, err
	}
	res := HoldResult{Blocked: got.Blocked, Balance: got.Balance, Amount: l.cfg.MinHold}
	for _, lh := range l.localTables() {
		lh.mu.Lock()
		res.Balance -= lh.held[got.ID]
		lh.mu.Unlock()
	}
	if d != nil {
		res.Balance -= d.owedBy(got.ID)
	}
	res.Allowed = !got.Blocked && res.Balance > 0 && res.Balance >= l.cfg.MinHold
	if res.Allowed {
		over, err := l.exhausted(ctx, got.UserInfo, "")
		switch {
		case err != nil && storeFailure(err) && d != nil && d.admitsDuringOutage():
			d.storeFailed(err) // limits unread: served as balances are in an outage
		case err != nil:
			return HoldResult{}, err
		case over != nil:
			res.Allowed, res.OverLimit = false, over
		}
	}
	return res, nil
}

// localTables are the tables of holds in memory: the store's (SQLite) and
// those of calls admitted while the store was down.
func (l *Ledger) localTables() []*LocalHolds {
	var t []*LocalHolds
	if l.cfg.LocalHolds != nil {
		t = append(t, l.cfg.LocalHolds)
	}
	if l.durable != nil {
		t = append(t, l.durable.spare)
	}
	return t
}

// RekeyHold gives the hold of a new chat's first turn, placed under
// Key(store.NewChatID, message), the chat id OpenWebUI created; it reports
// whether a pending hold was re-keyed.
func (l *Ledger) RekeyHold(ctx context.Context, oldKey, chatID string) (bool, error) {
	rec, ok, err := l.store.RekeyHold(ctx, oldKey, chatID)
	if ok {
		l.open.rekey(oldKey, rec.Key)
		if j := l.journal(); j != nil {
			j.Rekey(oldKey, rec.Key)
		}
	}
	return ok, err
}

// Hold is money reserved before a model call is forwarded.
type Hold struct {
	User         store.UserInfo
	Model        string
	BaseModelID  string
	PromptTokens int64
	Key          string // the call's idempotency key; its settlement uses the same
	ChatID       string
	MessageID    string
	Source       Source
	Purpose      string
	// MaxOutputTokens is the answer the call asks for at most (its
	// max_tokens); 0: unbounded, and the hold covers HoldOutputTokens.
	MaxOutputTokens int64
	// NoOutput: the call answers no tokens (embeddings, images, audio);
	// its hold covers the prompt only.
	NoOutput bool
	Enforce  bool      // refuse when the balance cannot cover the hold; false: monitor only
	Expires  time.Time // when an unsettled hold is released
	// Settled says this process settles the call (a synchronous answer),
	// so the hold may live in memory when the ledger keeps local holds.
	Settled bool
	// ClientKey: Key names a message the client chose. A key already
	// answered (or another user's) is then refused as Reused: charging it
	// would be a duplicate, and the answer free.
	ClientKey bool
}

// HoldResult says what a hold did.
type HoldResult struct {
	Allowed bool       // forward the call
	Reused  bool       // the call's key was answered already, or is another user's: refuse it
	Placed  bool       // the amount is reserved
	Local   *LocalHold // in memory: ReleaseLocal it once the call is charged
	Blocked bool
	Amount  money.Amount
	Balance money.Amount
	// Adopted: a provider-meter call took over the front's hold for its
	// message. The call charges under Key, with the hold's ChatID and
	// MessageID (the front knew the message; OpenWebUI does not tell
	// providers).
	Adopted           bool
	Key               string
	ChatID, MessageID string
	// OverLimit, when set, is the budget limit that refused the call
	// (Allowed is false): it has nothing left in its window.
	OverLimit *OverLimit
}

// holdAmount is what a call reserves, and the tokens it counts against
// token limits until its charge: the price of its counted prompt and
// of the answer it may produce (its max_tokens, else HoldOutputTokens),
// or the model's per-message price, plus the larger of the model's inlet
// cost and the configured minimum. A cost beyond the range of an amount
// holds the largest amount: no balance covers it.
func (l *Ledger) holdAmount(ctx context.Context, h Hold) (money.Amount, int64, error) {
	price, err := l.Price(ctx, h.Model, h.BaseModelID)
	if err != nil {
		return 0, 0, err
	}
	output := h.MaxOutputTokens
	if output <= 0 {
		output = l.cfg.HoldOutputTokens
	}
	if limit := l.cfg.MaxTokensPerCall; limit > 0 {
		output = min(output, limit)
	}
	if h.NoOutput {
		output = 0
	}
	tokens := store.SatAdd(max(h.PromptTokens, 0), max(output, 0))
	cost, ok := price.CostChecked(h.PromptTokens, output)
	if !ok {
		return money.Max, tokens, nil
	}
	return cost.Add(max(l.cfg.InletCosts.For(h.Model), l.cfg.MinHold)), tokens, nil
}

// Hold reserves the estimated cost of a call against the user's balance.
// Concurrent calls of one user each reserve their own amount, so together
// they can never spend more than the balance plus one call's overrun.
//
// A provider-meter call first adopts what another path holds for it: the
// front's hold of the same user and message (by key when the call knows
// its message, else the oldest of the same chat, or without a chat), or
// the inlet's pre-charge. The provider meter then charges that message
// under the hold's key, the others find the key covered, and the call is
// held once.
//
// While the store does not take writes, store_outage decides: fail_closed
// refuses (ErrUnavailable); fail_open holds in memory against the user's
// last known balance (holdDuringOutage). An admitted call is journaled,
// so a crash does not lose what it produces; under fail_open in an outage
// a call the journal cannot keep is refused.
func (l *Ledger) Hold(ctx context.Context, h Hold) (HoldResult, error) {
	d := l.durable
	if d != nil && h.Enforce && d.isDown() && !d.admitsDuringOutage() {
		return HoldResult{}, ErrUnavailable
	}
	res, err := l.holdOrAdopt(ctx, h)
	outage := false
	if storeFailure(err) && d != nil {
		d.storeFailed(err)
		if h.Enforce {
			res, err = l.holdDuringOutage(ctx, h)
			res.Key, res.ChatID, res.MessageID = h.Key, h.ChatID, h.MessageID
			outage = true
		}
	}
	if err != nil || !res.Allowed {
		return res, err
	}
	if !l.track(h, res) && h.Enforce && (outage || d.isDown() || !l.storeTakesWrites(ctx)) {
		// Neither the store nor the journal would keep its charge.
		l.ReleaseLocal(res.Local)
		return HoldResult{}, ErrUnavailable
	}
	if res.MessageID != "" && h.Source == SourceProvider {
		l.cfg.Claims.begin(Key(res.ChatID, res.MessageID)) // Charge ends it
	}
	return res, nil
}

// holdOrAdopt holds a call, or adopts the hold another path placed for it
// (see Hold).
func (l *Ledger) holdOrAdopt(ctx context.Context, h Hold) (HoldResult, error) {
	if h.Source != SourceProvider {
		return l.holdRetry(ctx, h)
	}
	res, err := l.adopt(ctx, h)
	if err == nil && !res.Adopted {
		res, err = l.holdRetry(ctx, h)
		res.Key, res.ChatID, res.MessageID = h.Key, h.ChatID, h.MessageID
	}
	return res, err
}

// adopt takes over another path's hold for a provider call (see Hold).
func (l *Ledger) adopt(ctx context.Context, h Hold) (HoldResult, error) {
	var key string
	if h.MessageID != "" {
		key = Key(h.ChatID, h.MessageID)
	}
	for _, lh := range l.localTables() {
		got := lh.adopt(h.User.ID, h.ChatID, key)
		if got == nil && key != "" {
			got = lh.adopt(h.User.ID, h.ChatID, "")
		}
		if got != nil {
			return HoldResult{Allowed: true, Placed: true, Local: got, Amount: got.amount, Adopted: true,
				Key: got.key, ChatID: got.chatID, MessageID: got.messageID}, nil
		}
	}
	a := store.Adoption{UserID: h.User.ID, ChatID: h.ChatID, Key: key, Purpose: h.Purpose}
	rec, ok, err := l.store.AdoptHold(ctx, a)
	if err == nil && !ok && key != "" {
		// No hold under the message's key: the first turn of a new chat
		// waits under a placeholder, which the chat finds.
		a.Key = ""
		rec, ok, err = l.store.AdoptHold(ctx, a)
	}
	if err != nil || !ok {
		return HoldResult{}, err
	}
	return HoldResult{Allowed: true, Placed: true, Amount: rec.Cost, Balance: rec.BalanceAfter, Adopted: true,
		Key: rec.Key, ChatID: rec.ChatID, MessageID: rec.MessageID}, nil
}

func (l *Ledger) holdRetry(ctx context.Context, h Hold) (HoldResult, error) {
	res, err := l.hold(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		// The user vanished since we cached them (an admin deleted them).
		l.users.Delete(h.User.ID)
		res, err = l.hold(ctx, h)
	}
	return res, err
}

func (l *Ledger) hold(ctx context.Context, h Hold) (HoldResult, error) {
	if err := l.EnsureUser(ctx, h.User); err != nil {
		return HoldResult{}, err
	}
	amount, heldTokens, err := l.holdAmount(ctx, h)
	if err != nil {
		return HoldResult{}, err
	}
	var plan budgetPlan
	if b := l.cfg.Budgets; b != nil && h.Enforce {
		if plan, err = b.plan(ctx, l.store, h.User, h.Model); err != nil {
			return HoldResult{}, err
		}
	}
	// Under budget limits a hold is written to the store even where it
	// could live in memory: the limits' usage is read in the hold's own
	// transaction there, exactly, with the holds of every other call in it.
	if l.cfg.LocalHolds != nil && h.Settled && len(plan.checks) == 0 {
		if h.ClientKey && h.Enforce {
			// A hold in memory knows nothing of the key's past.
			old, err := l.store.RecordByKey(ctx, h.Key)
			if err == nil && reused(old, h) {
				return HoldResult{Reused: true, Amount: amount}, nil
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return HoldResult{}, err
			}
		}
		return l.holdLocally(ctx, h, amount)
	}
	rule := store.ReserveCoveredOrRest
	if !h.Enforce {
		rule = store.ReserveAlways
	}
	var expires *time.Time
	if !h.Expires.IsZero() {
		expires = &h.Expires
	}
	res, err := l.store.Reserve(ctx, store.Reservation{Rule: rule, Limits: plan.checks, HeldTokens: heldTokens,
		Record: store.Record{
			UserID: h.User.ID, Nickname: h.User.Name, Model: h.Model, Cost: amount,
			Source: h.Source, Purpose: h.Purpose, ChatID: h.ChatID, MessageID: h.MessageID,
			Key: h.Key, ExpiresAt: expires, CreatedAt: plan.now,
		}})
	if errors.Is(err, store.ErrOutOfRange) && !h.Enforce {
		// Monitor mode never refuses: a balance at the end of the range
		// holds nothing, and the call's charge says what it cost.
		return HoldResult{Allowed: true, Amount: amount, Balance: res.Balance}, nil
	}
	if err != nil {
		return HoldResult{}, err
	}
	if res.Existing && h.Enforce && reused(res.Record, h) {
		return HoldResult{Reused: true, Amount: amount}, nil
	}
	if res.Placed {
		amount = res.Record.Cost // the rest of the balance, when that was less
		l.open.add(res.Record.Key, h.Expires)
	}
	if res.OverLimit > 0 {
		return HoldResult{Amount: amount, Balance: res.Balance,
			OverLimit: l.cfg.Budgets.overLimit(plan, res.OverLimit-1, res.Used)}, nil
	}
	return HoldResult{
		// A key the user holds already is a retry of a call that was
		// allowed; monitor mode never refuses.
		Allowed: res.Placed || res.Existing || !h.Enforce,
		Placed:  res.Placed, Blocked: res.Blocked, Amount: amount, Balance: res.Balance,
	}, nil
}

// reused reports whether a hold may not take over old, the record already
// under its key: another user's, or an answer already settled (its charge
// would be a duplicate, and the new answer free).
func reused(old store.Record, h Hold) bool {
	return old.UserID != h.User.ID || old.Status != StatusPending
}

// holdLocally reserves amount in memory against the stored balance less
// what other calls of the user hold. Charges commit before their holds are
// released, so that sum is never too small, provided no hold of the user
// was released between reading the balance and taking the table: that
// call's charge may be missing from the balance read while its hold is
// gone. Then the balance is read again.
func (l *Ledger) holdLocally(ctx context.Context, h Hold, amount money.Amount) (HoldResult, error) {
	lh := l.cfg.LocalHolds
	for range 3 {
		lh.mu.Lock()
		seen := lh.released[h.User.ID]
		lh.mu.Unlock()
		u, err := l.store.User(ctx, h.User.ID)
		if err != nil {
			return HoldResult{}, err
		}
		l.knowUser(u)
		u.Balance -= l.owed(u.ID)
		lh.mu.Lock()
		if lh.released[u.ID] == seen {
			res := lh.place(u, h, amount)
			lh.mu.Unlock()
			return res, nil
		}
		lh.mu.Unlock()
	}
	// The user's calls keep ending while we read: read with the table held.
	lh.mu.Lock()
	defer lh.mu.Unlock()
	u, err := l.store.User(ctx, h.User.ID)
	if err != nil {
		return HoldResult{}, err
	}
	u.Balance -= l.owed(u.ID)
	return lh.place(u, h, amount), nil
}

// place holds amount for u if the balance less u's holds covers it; lh.mu
// is held.
func (lh *LocalHolds) place(u store.User, h Hold, amount money.Amount) HoldResult {
	if !h.Enforce {
		return HoldResult{Allowed: true, Amount: amount, Balance: u.Balance}
	}
	if u.Blocked {
		return HoldResult{Blocked: true, Amount: amount, Balance: u.Balance}
	}
	available := u.Balance - lh.held[u.ID]
	if available <= 0 {
		return HoldResult{Amount: amount, Balance: available}
	}
	// What is left, when it covers less than the hold: at most one call
	// runs on less than a full hold.
	amount = min(amount, available)
	lh.held[u.ID] += amount
	lh.count++
	hold := &LocalHold{owner: lh, user: u.ID, key: h.Key, chatID: h.ChatID, messageID: h.MessageID, amount: amount}
	if h.Source != SourceProvider {
		lh.open[u.ID] = append(lh.open[u.ID], hold)
	}
	return HoldResult{Allowed: true, Placed: true, Local: hold, Amount: amount, Balance: available - amount}
}

// owed is what a user's deferred charges take from their stored balance.
func (l *Ledger) owed(user string) money.Amount {
	if l.durable == nil {
		return 0
	}
	return l.durable.owedBy(user)
}

// ReleaseLocal gives back a local hold, after its call was charged (or
// failed). Releasing it again does nothing.
func (l *Ledger) ReleaseLocal(h *LocalHold) {
	if h == nil {
		return
	}
	lh := h.owner
	lh.mu.Lock()
	defer lh.mu.Unlock()
	lh.release(h)
}

// ExpireHolds releases holds nobody settled in time (a crash, or a web-UI
// answer no report arrived for) and returns how many it released.
func (l *Ledger) ExpireHolds(ctx context.Context, now time.Time) (int, error) {
	n := 0
	for {
		holds, err := l.store.ExpiredHolds(ctx, now, 100)
		if err != nil {
			return n, err
		}
		done := 0
		var stuck error
		for _, h := range holds {
			if l.recoverExpired(ctx, h) {
				n++
				done++
				continue
			}
			start := time.Now()
			res, err := l.store.Charge(ctx, store.Record{UserID: h.UserID, Key: h.Key, Status: StatusExpired})
			if errors.Is(err, store.ErrOutOfRange) {
				// Giving the hold back would take the balance past the
				// largest amount (an admin set it there): it waits for room.
				stuck = err
				continue
			}
			if err != nil {
				return n, err
			}
			if l.durable != nil {
				l.durable.expiredHolds.Add(1)
				l.settled(h.Key)
			}
			l.charged(res, time.Since(start))
			n++
			done++
		}
		if len(holds) < 100 || done == 0 {
			return n, stuck
		}
	}
}
