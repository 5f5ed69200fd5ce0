package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/openwebui-monitor/owmon/internal/store"
)

// found is a record an UPDATE … RETURNING may have matched.
type found struct {
	rec store.Record
	ok  bool
}

func foundRecord(rec store.Record, err error) (found, error) {
	if errors.Is(err, store.ErrNotFound) {
		return found{}, nil
	}
	if err != nil {
		return found{}, err
	}
	return found{rec, true}, nil
}

// adoptSet makes a record the provider meter's ($3: the purpose, if any).
const adoptSet = `UPDATE usage_records SET source = 'provider', purpose = COALESCE(NULLIF($3, ''), purpose)`

// adoptable selects a user's ($1) pending holds of other paths.
const adoptable = `user_id = $1 AND status = 'pending' AND source <> 'provider'`

// AdoptHold makes another path's pending hold the provider meter's. The
// single writer serialises it with every other write (and BEGIN IMMEDIATE
// with other processes' writes), so no two calls adopt one hold.
func (s *Store) AdoptHold(ctx context.Context, a store.Adoption) (store.Record, bool, error) {
	if a.UserID == "" {
		return store.Record{}, false, errors.New("sqlite: adoption without a user id")
	}
	// Most provider calls find nothing to adopt: a read spares them a
	// write. A hold to adopt was committed before its call reached
	// OpenWebUI, so the read sees it.
	var any int
	err := s.read(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM usage_records WHERE `+adoptable+` LIMIT 1)`, a.UserID).Scan(&any)
	if err != nil || any == 0 {
		return store.Record{}, false, err
	}
	f, err := write(ctx, s, func(ctx context.Context, tx wtx) (found, error) {
		if a.Key != "" {
			return foundRecord(scanRecord(tx.QueryRowContext(ctx, adoptSet+`
				WHERE idem_key = $2 AND `+adoptable+` RETURNING `+recordCols, a.UserID, a.Key, a.Purpose)))
		}
		f, err := foundRecord(scanRecord(tx.QueryRowContext(ctx, adoptSet+`
			WHERE id = (SELECT id FROM usage_records WHERE chat_id = $2 AND `+adoptable+`
				ORDER BY id LIMIT 1)
			RETURNING `+recordCols, a.UserID, a.ChatID, a.Purpose)))
		if f.ok || err != nil || a.ChatID == "" || a.ChatID == store.NewChatID {
			return f, err
		}
		// The first turn of a new chat: its hold waits under NewChatID.
		f, err = foundRecord(scanRecord(tx.QueryRowContext(ctx, adoptSet+`,
				chat_id = $2, idem_key = $2 || '/' || message_id
			WHERE id = (SELECT id FROM usage_records WHERE chat_id = $4 AND message_id <> '' AND `+adoptable+`
				ORDER BY id LIMIT 1)
			RETURNING `+recordCols, a.UserID, a.ChatID, a.Purpose, store.NewChatID)))
		if err != nil {
			return f, fmt.Errorf("sqlite: re-keying a new chat's hold to chat %q: %w", a.ChatID, err)
		}
		return f, nil
	})
	return f.rec, f.ok, err
}

// RekeyHold gives a pending hold its chat id and the key that goes with it.
func (s *Store) RekeyHold(ctx context.Context, oldKey, chatID string) (store.Record, bool, error) {
	if oldKey == "" {
		return store.Record{}, false, nil
	}
	if chatID == "" {
		return store.Record{}, false, errors.New("sqlite: re-keying a hold to an empty chat id")
	}
	f, err := write(ctx, s, func(ctx context.Context, tx wtx) (found, error) {
		return foundRecord(scanRecord(tx.QueryRowContext(ctx, `UPDATE usage_records
			SET chat_id = $2, idem_key = $2 || '/' || message_id
			WHERE idem_key = $1 AND status = 'pending' AND message_id <> ''
			RETURNING `+recordCols, oldKey, chatID)))
	})
	return f.rec, f.ok, err
}
