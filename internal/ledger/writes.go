package ledger

import (
	"context"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// The writes below change prices or users. They go through the ledger so
// that its caches (resolved prices, remembered users) stay right: a caller
// never has to remember to drop them. Reads may go to the store directly.

// PutPrice stores an admin's price (Priced is set true); the next charge
// of any model uses it at once.
func (l *Ledger) PutPrice(ctx context.Context, p store.ModelPrice) (store.ModelPrice, error) {
	saved, err := l.store.PutModelPrice(ctx, p)
	l.forgetPrices() // also on error: the write may have happened
	return saved, err
}

// RecordModel notes a model seen with no price row yet, so an admin can
// price it; an existing row is left as it is. Its base model id may change
// what the model resolves to, so resolved prices are dropped.
func (l *Ledger) RecordModel(ctx context.Context, id, name, baseModelID string) error {
	err := l.store.RecordModel(ctx, id, name, baseModelID)
	l.forgetPrices()
	return err
}

// SetBalance sets a user's balance and records the change with its actor.
func (l *Ledger) SetBalance(ctx context.Context, userID string, balance money.Amount, actor, reason string) (store.BalanceChange, error) {
	return l.store.SetBalance(ctx, userID, balance, actor, reason)
}

// AdjustBalance adds delta (which may be negative) to a user's balance and
// records the change.
func (l *Ledger) AdjustBalance(ctx context.Context, userID string, delta money.Amount, actor, reason string) (store.BalanceChange, error) {
	return l.store.AdjustBalance(ctx, userID, delta, actor, reason)
}

// SetBlocked blocks or unblocks a user.
func (l *Ledger) SetBlocked(ctx context.Context, userID string, blocked bool) error {
	return l.store.SetBlocked(ctx, userID, blocked)
}

// DeleteUser removes a user with their records and balance changes; the
// user's next call recreates them with the initial balance.
func (l *Ledger) DeleteUser(ctx context.Context, id string) error {
	err := l.store.DeleteUser(ctx, id)
	l.users.Delete(id)
	return err
}

// Import replaces every row with the backup's (see store.Store.Import);
// the ledger then forgets every price and user it remembered.
func (l *Ledger) Import(ctx context.Context, b store.Backup, keep func(replaced store.Backup) error) error {
	err := l.store.Import(ctx, b, keep)
	l.forgetPrices()
	l.forgetUsers()
	return err
}
