package sqlstore

// Holds changing hands: the provider meter adopting another path's pending
// hold, and a new chat's hold getting its chat id.

import (
	"context"
	"errors"

	"github.com/openwebui-monitor/owmon/internal/store"
)

// Found is a record an UPDATE … RETURNING may have matched.
type Found struct {
	Rec store.Record
	OK  bool
}

func foundRecord(rec store.Record, err error) (Found, error) {
	if errors.Is(err, store.ErrNotFound) {
		return Found{}, nil
	}
	if err != nil {
		return Found{}, err
	}
	return Found{rec, true}, nil
}

// adoptSet makes a record the provider meter's ($3: the purpose, if any).
const adoptSet = `UPDATE usage_records SET source = 'provider', purpose = COALESCE(NULLIF(CAST($3 AS TEXT), ''), purpose)`

// adoptable selects a user's ($1) pending holds of other paths.
const adoptable = `user_id = $1 AND status = 'pending' AND source <> 'provider'`

// CheckAdoption refuses an adoption without a user.
func CheckAdoption(d Dialect, a store.Adoption) error {
	if a.UserID == "" {
		return d.errorf("adoption without a user id")
	}
	return nil
}

// Adoptable reports whether the user has a pending hold another path
// placed: a read that spares most provider calls a write.
func Adoptable(ctx context.Context, q Querier, userID string) (bool, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM usage_records WHERE `+adoptable+` LIMIT 1) h`, userID).Scan(&n)
	return n > 0, err
}

// AdoptHold makes another path's pending hold the provider meter's (see
// store.Store). The oldest matching hold is chosen with d.SkipLocked, so
// concurrent calls take different holds or none; a hold named by its key
// is updated under its row lock.
func AdoptHold(ctx context.Context, d Dialect, q Querier, a store.Adoption) (Found, error) {
	if a.Key != "" {
		return foundRecord(scanRecord(q.QueryRow(ctx, adoptSet+`
			WHERE idem_key = $2 AND `+adoptable+` RETURNING `+recordCols, a.UserID, a.Key, a.Purpose)))
	}
	f, err := foundRecord(scanRecord(q.QueryRow(ctx, adoptSet+`
		WHERE id = (SELECT id FROM usage_records WHERE chat_id = $2 AND `+adoptable+`
			ORDER BY id LIMIT 1`+d.SkipLocked+`)
		RETURNING `+recordCols, a.UserID, a.ChatID, a.Purpose)))
	if f.OK || err != nil || a.ChatID == "" || a.ChatID == store.NewChatID {
		return f, err
	}
	// The first turn of a new chat: its hold waits under NewChatID.
	f, err = foundRecord(scanRecord(q.QueryRow(ctx, adoptSet+`,
			chat_id = $2, idem_key = $2 || '/' || message_id
		WHERE id = (SELECT id FROM usage_records WHERE chat_id = $4 AND message_id <> '' AND `+adoptable+`
			ORDER BY id LIMIT 1`+d.SkipLocked+`)
		RETURNING `+recordCols, a.UserID, a.ChatID, a.Purpose, store.NewChatID)))
	if err != nil {
		return f, d.errorf("re-keying a new chat's hold to chat %q: %w", a.ChatID, err)
	}
	return f, nil
}

// CheckRekey refuses re-keying to an empty chat id.
func CheckRekey(d Dialect, chatID string) error {
	if chatID == "" {
		return d.errorf("re-keying a hold to an empty chat id")
	}
	return nil
}

// RekeyHold gives a pending hold its chat id and the key that goes with it.
func RekeyHold(ctx context.Context, q Querier, oldKey, chatID string) (Found, error) {
	return foundRecord(scanRecord(q.QueryRow(ctx, `UPDATE usage_records
		SET chat_id = $2, idem_key = $2 || '/' || message_id
		WHERE idem_key = $1 AND status = 'pending' AND message_id <> ''
		RETURNING `+recordCols, oldKey, chatID)))
}
