package ledger

// Budget limits at the hold, and grants (see internal/budget).

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// Budgets is the ledger's view of budgets: the limits and OpenWebUI's
// groups, read from the store and kept in memory (read again every
// Refresh, so other instances' changes arrive, and at once after
// Invalidate), the time zone of calendar windows, and the clock. Share one
// across config reloads.
type Budgets struct {
	Location *time.Location   // of calendar windows; nil: UTC
	Now      func() time.Time // nil: time.Now
	Refresh  time.Duration    // 0: 10s

	mu     sync.Mutex
	limits []budget.Limit
	groups map[string][]string // user id → group ids
	at     time.Time           // when read; zero: never, or invalidated
	// loading: a caller is reading them; the others serve what was read
	// (unless it was invalidated). gen counts invalidations, so a read
	// that began before one is not taken as fresh.
	loading bool
	gen     uint64
}

func (b *Budgets) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Budgets) location() *time.Location {
	if b.Location != nil {
		return b.Location
	}
	return time.UTC
}

// Invalidate makes the next call read limits and groups again (after an
// admin changed them, or a group sync).
func (b *Budgets) Invalidate() {
	b.mu.Lock()
	b.at = time.Time{}
	b.gen++
	b.mu.Unlock()
}

// current returns the limits and groups, reading them when stale. The
// read runs outside the lock: while one caller reads, the others go on
// with what was read before (holds never wait on it), unless it was
// invalidated or nothing was read yet. A failed read keeps serving what
// was read before.
func (b *Budgets) current(ctx context.Context, st store.Store) ([]budget.Limit, map[string][]string, error) {
	b.mu.Lock()
	refresh := b.Refresh
	if refresh <= 0 {
		refresh = 10 * time.Second
	}
	fresh := !b.at.IsZero() && time.Since(b.at) < refresh
	if fresh || (b.loading && !b.at.IsZero()) {
		limits, groups := b.limits, b.groups
		b.mu.Unlock()
		return limits, groups, nil
	}
	b.loading = true
	gen := b.gen
	b.mu.Unlock()

	limits, err := st.Limits(ctx)
	var groups []budget.Group
	if err == nil {
		groups, err = st.Groups(ctx)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.loading = false
	if err != nil {
		if b.groups != nil {
			return b.limits, b.groups, nil
		}
		return nil, nil, fmt.Errorf("reading budget limits: %w", err)
	}
	members := make(map[string][]string)
	for _, g := range groups {
		for _, u := range g.Members {
			members[u] = append(members[u], g.ID)
		}
	}
	b.limits, b.groups = limits, members
	if gen == b.gen {
		b.at = time.Now()
	}
	return limits, members, nil
}

// Budgets returns the ledger's budgets (nil without them): Invalidate it
// after changing limits or groups.
func (l *Ledger) Budgets() *Budgets { return l.cfg.Budgets }

// budgetPlan is the limits a call must respect, as the store checks them.
type budgetPlan struct {
	limits []budget.Limit
	checks []store.LimitCheck
	now    time.Time
}

// plan returns the effective limits of user u's calls to model ("": every
// model's) with their windows as of now.
func (b *Budgets) plan(ctx context.Context, st store.Store, u store.UserInfo, model string) (budgetPlan, error) {
	p := budgetPlan{now: b.now()}
	limits, groups, err := b.current(ctx, st)
	if err != nil || len(limits) == 0 {
		return p, err
	}
	p.limits = budget.Effective(limits, budget.Subject{UserID: u.ID, Role: u.Role, Groups: groups[u.ID]}, model)
	for _, l := range p.limits {
		from, _ := l.Window.Bounds(p.now, b.location())
		c := store.LimitCheck{Measure: string(l.Measure), Amount: l.Amount, From: from, Models: l.Models}
		if l.Shared {
			c.Pool = store.Pool{Kind: l.Scope.Kind, ID: l.Scope.ID}
		}
		p.checks = append(p.checks, c)
	}
	return p, nil
}

// OverLimit says which limit refused a call: what it allows, what was
// used in its window, and when the window next has room.
type OverLimit struct {
	Limit budget.Limit
	Used  int64
	Start time.Time // the window's start
	Reset time.Time // a calendar window's end; for a rolling one, when all of today's usage has left it at the latest
}

// overLimit describes the refusal of plan's limit i.
func (b *Budgets) overLimit(p budgetPlan, i int, used int64) *OverLimit {
	l := p.limits[i]
	_, end := l.Window.Bounds(p.now, b.location())
	if end.IsZero() {
		end = p.now.Add(l.Window.Rolling)
	}
	return &OverLimit{Limit: l, Used: used, Start: p.checks[i].From, Reset: end}
}

// JSON is the refusing limit and its usage as LimitJSON.
func (o *OverLimit) JSON() LimitJSON {
	return LimitStatus{Limit: o.Limit, Used: o.Used, Remaining: max(o.Limit.Amount-o.Used, 0), Start: o.Start, Reset: o.Reset}.JSON()
}

// Message is the refusal as a user reads it.
func (o *OverLimit) Message() string {
	return fmt.Sprintf("Budget limit reached: %s. Used %s of %s; it resets at %s.",
		o.Limit.Describe(), o.Limit.FormatAmount(o.Used), o.Limit.FormatAmount(o.Limit.Amount),
		o.Reset.UTC().Format(time.RFC3339))
}

// RetryAfter is the Retry-After header's value: whole seconds until Reset.
func (o *OverLimit) RetryAfter(now time.Time) string {
	s := int64(o.Reset.Sub(now).Seconds() + 0.999)
	return strconv.FormatInt(max(s, 1), 10)
}

// LimitStatus is one effective limit of a user, with its window's usage.
type LimitStatus struct {
	Limit     budget.Limit
	Used      int64
	Remaining int64 // never below zero
	Start     time.Time
	Reset     time.Time // see OverLimit.Reset
}

// UserLimits returns the limits that apply to u's calls, each with what
// was used in its window (holds in flight included) and when it resets.
func (l *Ledger) UserLimits(ctx context.Context, u store.UserInfo) ([]LimitStatus, error) {
	b := l.cfg.Budgets
	if b == nil {
		return nil, nil
	}
	p, err := b.plan(ctx, l.store, u, "")
	if err != nil || len(p.checks) == 0 {
		return nil, err
	}
	used, err := l.store.LimitUsage(ctx, u.ID, p.checks, p.now)
	if err != nil {
		return nil, err
	}
	out := make([]LimitStatus, len(p.limits))
	for i, lim := range p.limits {
		o := b.overLimit(p, i, used[i])
		out[i] = LimitStatus{Limit: lim, Used: used[i], Remaining: max(lim.Amount-used[i], 0), Start: o.Start, Reset: o.Reset}
	}
	return out, nil
}

// ApplyGrants applies every grant whose current window has not been
// applied yet, once (across instances too: see store.ApplyGrant); missed
// windows are not made up. It returns the balance changes made.
func (l *Ledger) ApplyGrants(ctx context.Context) ([]store.BalanceChange, error) {
	b := l.cfg.Budgets
	if b == nil {
		return nil, nil
	}
	grants, err := l.store.Grants(ctx)
	if err != nil {
		return nil, err
	}
	now := b.now()
	var all []store.BalanceChange
	for _, g := range grants {
		start, _ := g.Window.Bounds(now, b.location())
		if !g.LastWindow.IsZero() && !g.LastWindow.Before(start) {
			continue
		}
		changes, err := l.store.ApplyGrant(ctx, g.ID, start)
		if err != nil {
			return all, fmt.Errorf("grant %d: %w", g.ID, err)
		}
		all = append(all, changes...)
	}
	if len(all) > 0 {
		l.forgetUsers()
	}
	return all, nil
}

// exhausted returns the first limit of u's calls to model with nothing
// left, for calls admitted without a hold (the function's inlet, gated
// routes). Without a model (""), only the limits of every model count:
// the call's own model is not known, and its provider call is held
// against the rest.
func (l *Ledger) exhausted(ctx context.Context, u store.UserInfo, model string) (*OverLimit, error) {
	b := l.cfg.Budgets
	if b == nil {
		return nil, nil
	}
	p, err := b.plan(ctx, l.store, u, model)
	if err != nil || len(p.checks) == 0 {
		return nil, err
	}
	if model == "" {
		var q budgetPlan
		q.now = p.now
		for i, lim := range p.limits {
			if len(lim.Models) == 0 {
				q.limits, q.checks = append(q.limits, lim), append(q.checks, p.checks[i])
			}
		}
		if p = q; len(p.checks) == 0 {
			return nil, nil
		}
	}
	used, err := l.store.LimitUsage(ctx, u.ID, p.checks, p.now)
	if err != nil {
		return nil, err
	}
	for i, c := range p.checks {
		if used[i] >= c.Amount {
			return b.overLimit(p, i, used[i]), nil
		}
	}
	return nil, nil
}
