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
	"sync"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// Config is how the ledger prices and funds users.
type Config struct {
	InitBalance  money.Amount       // balance of a new user
	DefaultPrice pricing.Price      // price of models nobody priced
	InletCosts   pricing.InletCosts // pre-charges when a chat starts
	// PriceTTL is how long a resolved price is reused before the store is
	// asked again, which bounds how stale prices changed by another instance
	// can be. Default 5s.
	PriceTTL time.Duration
}

// Ledger charges users. It is safe for concurrent use.
type Ledger struct {
	store store.Store
	cfg   Config

	mu     sync.Mutex
	prices map[priceKey]cachedPrice

	// users remembers the identity last written per user id, so an unchanged
	// user costs no write on every call.
	users sync.Map // string → store.UserInfo
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
	return &Ledger{store: st, cfg: cfg, prices: make(map[priceKey]cachedPrice)}
}

// Store returns the store the ledger writes to.
func (l *Ledger) Store() store.Store { return l.store }

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
	return got, nil
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
	own, ownErr := l.store.ModelPrice(ctx, model)
	switch {
	case ownErr == nil && own.Priced:
		return priceOf(own), nil
	case ownErr == nil:
		if baseModelID == "" {
			baseModelID = own.BaseModelID
		}
	case !errors.Is(ownErr, store.ErrNotFound):
		return pricing.Price{}, ownErr
	}
	for _, base := range pricing.BaseCandidates(model, baseModelID) {
		p, err := l.store.ModelPrice(ctx, base)
		if err == nil && p.Priced {
			return priceOf(p), nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return pricing.Price{}, err
		}
	}
	if errors.Is(ownErr, store.ErrNotFound) {
		if err := l.store.RecordModel(ctx, model, model, baseModelID); err != nil {
			return pricing.Price{}, err
		}
	}
	return l.cfg.DefaultPrice, nil
}

func priceOf(p store.ModelPrice) pricing.Price {
	return pricing.Price{Input: p.Input, Output: p.Output, PerMessage: p.PerMessage}
}

// ForgetPrices drops cached prices, after an admin changed one.
func (l *Ledger) ForgetPrices() {
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
	Source    string
}

// PreChargeResult says what a pre-charge did.
type PreChargeResult struct {
	Blocked bool
	Charged money.Amount // zero when nothing was taken
	Balance money.Amount // after the pre-charge
}

// PreChargeInlet takes the model's inlet cost (COST_ON_INLET) from a user
// whose balance is above zero. A user at or below zero is only told their
// balance, so retries never push a balance further down; a repeated call
// for the same message takes nothing again.
func (l *Ledger) PreChargeInlet(ctx context.Context, p PreCharge) (PreChargeResult, error) {
	u, err := l.user(ctx, p.User)
	if err != nil {
		return PreChargeResult{}, err
	}
	if u.Blocked {
		return PreChargeResult{Blocked: true, Balance: u.Balance}, nil
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

	// Failed marks an answer that produced nothing: it costs nothing and
	// releases whatever was taken in advance.
	Failed bool

	Source    string
	Purpose   string
	ChatID    string
	MessageID string
	Duration  time.Duration
}

// Charge prices an answer and charges it: once per key, netting whatever a
// pre-charge or hold for the same message took.
func (l *Ledger) Charge(ctx context.Context, a Answer) (store.ChargeResult, error) {
	if err := l.EnsureUser(ctx, a.User); err != nil {
		return store.ChargeResult{}, err
	}
	rec := store.Record{
		UserID: a.User.ID, Nickname: a.User.Name, Model: a.Model,
		InputTokens: a.InputTokens, OutputTokens: a.OutputTokens,
		CachedTokens: a.CachedTokens, ReasoningTokens: a.ReasoningTokens,
		Estimated: a.Estimated, Source: a.Source, Purpose: a.Purpose,
		ChatID: a.ChatID, MessageID: a.MessageID, Key: Key(a.ChatID, a.MessageID),
		Status: store.StatusCompleted, DurationMS: a.Duration.Milliseconds(),
	}
	if a.Failed {
		rec.Status = store.StatusFailed
	} else {
		price, err := l.Price(ctx, a.Model, a.BaseModelID)
		if err != nil {
			return store.ChargeResult{}, err
		}
		rec.Cost = price.Cost(a.InputTokens, a.OutputTokens)
	}
	res, err := l.store.Charge(ctx, rec)
	if errors.Is(err, store.ErrNotFound) {
		// The user vanished since we cached them (an admin deleted them).
		l.users.Delete(a.User.ID)
		if err := l.EnsureUser(ctx, a.User); err != nil {
			return store.ChargeResult{}, err
		}
		res, err = l.store.Charge(ctx, rec)
	}
	if err != nil {
		return store.ChargeResult{}, fmt.Errorf("charge: %w", err)
	}
	return res, nil
}
