package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

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
const adoptSet = `UPDATE usage_records SET source = 'provider', purpose = COALESCE(NULLIF($3::TEXT, ''), purpose)`

// adoptable selects a user's ($1) pending holds of other paths.
const adoptable = `user_id = $1 AND status = 'pending' AND source <> 'provider'`

// AdoptHold makes another path's pending hold the provider meter's. The
// oldest matching hold is taken with FOR UPDATE SKIP LOCKED, so concurrent
// calls, from other instances too, take different holds or none; a hold
// named by its key is updated under its row lock and re-checked after any
// concurrent writer of the row commits.
func (s *Store) AdoptHold(ctx context.Context, a store.Adoption) (store.Record, bool, error) {
	if a.UserID == "" {
		return store.Record{}, false, errors.New("postgres: adoption without a user id")
	}
	f, err := retry(ctx, func() (found, error) { return s.adoptHold(ctx, a) })
	return f.rec, f.ok, err
}

func (s *Store) adoptHold(ctx context.Context, a store.Adoption) (found, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return found{}, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	f, err := adoptIn(ctx, tx, a)
	if err != nil || !f.ok {
		return found{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return found{}, err
	}
	return f, nil
}

func adoptIn(ctx context.Context, tx pgx.Tx, a store.Adoption) (found, error) {
	if a.Key != "" {
		return foundRecord(scanRecord(tx.QueryRow(ctx, adoptSet+`
			WHERE idem_key = $2 AND `+adoptable+` RETURNING `+recordCols, a.UserID, a.Key, a.Purpose)))
	}
	f, err := foundRecord(scanRecord(tx.QueryRow(ctx, adoptSet+`
		WHERE id = (SELECT id FROM usage_records WHERE chat_id = $2 AND `+adoptable+`
			ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING `+recordCols, a.UserID, a.ChatID, a.Purpose)))
	if f.ok || err != nil || a.ChatID == "" || a.ChatID == store.NewChatID {
		return f, err
	}
	// The first turn of a new chat: its hold waits under NewChatID.
	f, err = foundRecord(scanRecord(tx.QueryRow(ctx, adoptSet+`,
			chat_id = $2, idem_key = $2 || '/' || message_id
		WHERE id = (SELECT id FROM usage_records WHERE chat_id = $4 AND message_id <> '' AND `+adoptable+`
			ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING `+recordCols, a.UserID, a.ChatID, a.Purpose, store.NewChatID)))
	if err != nil {
		return f, fmt.Errorf("postgres: re-keying a new chat's hold to chat %q: %w", a.ChatID, err)
	}
	return f, nil
}

// RekeyHold gives a pending hold its chat id and the key that goes with it.
func (s *Store) RekeyHold(ctx context.Context, oldKey, chatID string) (store.Record, bool, error) {
	if oldKey == "" {
		return store.Record{}, false, nil
	}
	if chatID == "" {
		return store.Record{}, false, errors.New("postgres: re-keying a hold to an empty chat id")
	}
	f, err := retry(ctx, func() (found, error) {
		return foundRecord(scanRecord(s.pool.QueryRow(ctx, `UPDATE usage_records
			SET chat_id = $2, idem_key = $2 || '/' || message_id
			WHERE idem_key = $1 AND status = 'pending' AND message_id <> ''
			RETURNING `+recordCols, oldKey, chatID)))
	})
	return f.rec, f.ok, err
}
