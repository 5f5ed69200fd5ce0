package ledger

import (
	"context"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// The writes below change prices or users. They go through the ledger so
// that its caches (resolved prices, remembered users) stay right: a caller
// never has to remember to drop them. Reads may go to the store directly.

// Every admin change is logged once, here: who, what, the old and the new
// value. No secret passes through these writes.

// adminActor names who makes the changes that carry no actor: the
// dashboard has one administrator (the access_token).
const adminActor = "admin"

// PutPrice stores an admin's price (Priced is set true); the next charge
// of any model uses it at once.
func (l *Ledger) PutPrice(ctx context.Context, p store.ModelPrice) (store.ModelPrice, error) {
	old, oldErr := l.store.ModelPrice(ctx, p.ID)
	saved, err := l.store.PutModelPrice(ctx, p)
	l.forgetPrices() // also on error: the write may have happened
	if err == nil {
		attrs := []any{"actor", adminActor, "model", saved.ID,
			"input_price", saved.Input.String(), "output_price", saved.Output.String(), "per_msg_price", saved.PerMessage.String()}
		if oldErr == nil && old.Priced {
			attrs = append(attrs, "old_input_price", old.Input.String(), "old_output_price", old.Output.String(),
				"old_per_msg_price", old.PerMessage.String())
		} else {
			attrs = append(attrs, "old_price", "none")
		}
		l.log.Info("admin changed a price", attrs...)
	}
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
	c, err := l.store.SetBalance(ctx, userID, balance, actor, reason)
	if err == nil {
		l.logBalance("admin set a balance", c)
	}
	return c, err
}

func (l *Ledger) logBalance(msg string, c store.BalanceChange) {
	l.log.Info(msg, "actor", c.Actor, "user", c.UserID, "old_balance", c.OldBalance.String(),
		"new_balance", c.NewBalance.String(), "reason", c.Reason)
}

// AdjustBalance adds delta (which may be negative) to a user's balance and
// records the change.
func (l *Ledger) AdjustBalance(ctx context.Context, userID string, delta money.Amount, actor, reason string) (store.BalanceChange, error) {
	c, err := l.store.AdjustBalance(ctx, userID, delta, actor, reason)
	if err == nil {
		l.logBalance("admin adjusted a balance", c)
	}
	return c, err
}

// SetBlocked blocks or unblocks a user.
func (l *Ledger) SetBlocked(ctx context.Context, userID string, blocked bool) error {
	old, oldErr := l.store.User(ctx, userID)
	err := l.store.SetBlocked(ctx, userID, blocked)
	if err == nil {
		attrs := []any{"actor", adminActor, "user", userID, "blocked", blocked}
		if oldErr == nil {
			attrs = append(attrs, "old_blocked", old.Blocked)
		}
		l.log.Info("admin changed whether a user is blocked", attrs...)
	}
	return err
}

// DeleteUser removes a user with their records and balance changes; the
// user's next call recreates them with the initial balance.
func (l *Ledger) DeleteUser(ctx context.Context, id string) error {
	old, oldErr := l.store.User(ctx, id)
	err := l.store.DeleteUser(ctx, id)
	l.users.Delete(id)
	if err == nil {
		attrs := []any{"actor", adminActor, "user", id}
		if oldErr == nil {
			attrs = append(attrs, "old_balance", old.Balance.String())
		}
		l.log.Info("admin deleted a user", attrs...)
	}
	return err
}

// Import replaces every row with the backup's (see store.Store.Import);
// the ledger then forgets every price and user it remembered.
func (l *Ledger) Import(ctx context.Context, b store.Backup, keep func(replaced store.Backup) error) error {
	var replaced *store.Backup
	wrapped := keep
	if keep != nil {
		wrapped = func(old store.Backup) error {
			replaced = &old
			return keep(old)
		}
	}
	err := l.store.Import(ctx, b, wrapped)
	l.forgetPrices()
	l.forgetUsers()
	if err == nil {
		attrs := []any{"actor", adminActor, "users", len(b.Users), "model_prices", len(b.ModelPrices),
			"records", len(b.Records), "balance_changes", len(b.BalanceChanges)}
		if replaced != nil {
			attrs = append(attrs, "replaced_users", len(replaced.Users), "replaced_model_prices", len(replaced.ModelPrices),
				"replaced_records", len(replaced.Records), "replaced_balance_changes", len(replaced.BalanceChanges))
		}
		l.log.Info("admin imported a backup", attrs...)
	}
	return err
}
