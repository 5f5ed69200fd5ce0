package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/openwebui-monitor/owmon/internal/budget"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// Backend is how a backend runs statements.
type Backend interface {
	// Tx runs fn in a write transaction and commits it (SQLite: on the
	// single writer, in a savepoint of a group commit; PostgreSQL: a
	// retried READ COMMITTED transaction). fn may run more than once.
	Tx(ctx context.Context, fn func(ctx context.Context, q Querier) error) error
	// Stmt runs fn, one writing statement, the way the backend runs those
	// best (SQLite: on the single writer; PostgreSQL: on the pool, retried).
	Stmt(ctx context.Context, fn func(ctx context.Context, q Querier) error) error
	// Snapshot runs fn in a read-only transaction: one snapshot.
	Snapshot(ctx context.Context, fn func(q Querier) error) error
	// Reader runs single reads (SQLite: prepared on the readers).
	Reader() Querier
	// Writer runs single writes that need no transaction of their own.
	Writer() Querier
}

// Store implements store.Store but for Kind, UsageBetween, Import and
// Close, on a Backend in a Dialect. The backends embed it.
type Store struct {
	D Dialect
	B Backend
}

// UpsertUser creates the user with balance initial, or refreshes the email,
// name and role of an existing one.
func (s Store) UpsertUser(ctx context.Context, u store.UserInfo, initial money.Amount) (usr store.User, err error) {
	if u.ID == "" {
		return usr, s.D.errorf("user without an id")
	}
	err = s.B.Stmt(ctx, func(ctx context.Context, q Querier) error {
		usr, err = UpsertUser(ctx, s.D, q, u, initial)
		return err
	})
	return usr, err
}

// User returns one user, or store.ErrNotFound.
func (s Store) User(ctx context.Context, id string) (store.User, error) {
	return User(ctx, s.B.Reader(), id)
}

// Reserve writes a pending record and takes its cost when the rule allows.
func (s Store) Reserve(ctx context.Context, r store.Reservation) (res store.ReserveResult, err error) {
	if r, err = PrepareReserve(s.D, r); err != nil {
		return res, err
	}
	// A try whose insert found the key taken rolls back, and the next one
	// looks the key up (a backend that retries lost races tries again at
	// once; for one that does not, this does).
	lookup := false
	for try := 0; try < 2; try++ {
		err = s.B.Tx(ctx, func(ctx context.Context, q Querier) error {
			res, err = Reserve(ctx, s.D, q, r, lookup)
			if errors.Is(err, ErrRace) {
				lookup = true
			}
			return err
		})
		if !errors.Is(err, ErrRace) {
			break
		}
	}
	if over, ok := errors.AsType[*OverLimitError](err); ok {
		return store.ReserveResult{OverLimit: over.Index, Used: over.Used, Balance: over.Balance}, nil
	}
	return res, err
}

// Charge writes a final record and takes its cost, completing a pending
// record with the same key in place.
func (s Store) Charge(ctx context.Context, r store.Record) (res store.ChargeResult, err error) {
	if r, err = PrepareCharge(s.D, r); err != nil {
		return res, err
	}
	err = s.B.Tx(ctx, func(ctx context.Context, q Querier) error {
		res, err = Charge(ctx, s.D, q, r)
		return err
	})
	return res, err
}

// AdoptHold makes another path's pending hold the provider meter's.
func (s Store) AdoptHold(ctx context.Context, a store.Adoption) (store.Record, bool, error) {
	if err := CheckAdoption(s.D, a); err != nil {
		return store.Record{}, false, err
	}
	var f Found
	err := s.B.Tx(ctx, func(ctx context.Context, q Querier) (err error) {
		f, err = AdoptHold(ctx, s.D, q, a)
		return err
	})
	return f.Rec, f.OK, err
}

// RekeyHold gives a pending hold its chat id and the key that goes with it.
func (s Store) RekeyHold(ctx context.Context, oldKey, chatID string) (store.Record, bool, error) {
	if oldKey == "" {
		return store.Record{}, false, nil
	}
	if err := CheckRekey(s.D, chatID); err != nil {
		return store.Record{}, false, err
	}
	var f Found
	err := s.B.Stmt(ctx, func(ctx context.Context, q Querier) (err error) {
		f, err = RekeyHold(ctx, q, oldKey, chatID)
		return err
	})
	return f.Rec, f.OK, err
}

// SetBalance sets a balance and records the change.
func (s Store) SetBalance(ctx context.Context, userID string, balance money.Amount, actor, reason string) (store.BalanceChange, error) {
	return s.changeBalance(ctx, userID, actor, reason, SetBalanceTo(balance))
}

// AdjustBalance adds delta to a balance and records the change.
func (s Store) AdjustBalance(ctx context.Context, userID string, delta money.Amount, actor, reason string) (store.BalanceChange, error) {
	return s.changeBalance(ctx, userID, actor, reason, AdjustBalanceBy(delta))
}

func (s Store) changeBalance(ctx context.Context, userID, actor, reason string,
	next func(old money.Amount) (money.Amount, error)) (c store.BalanceChange, err error) {
	err = s.B.Tx(ctx, func(ctx context.Context, q Querier) error {
		c, err = ChangeBalance(ctx, s.D, q, userID, actor, reason, next)
		return err
	})
	return c, err
}

// Probe rewrites the store's probe row.
func (s Store) Probe(ctx context.Context) error {
	return s.B.Stmt(ctx, func(ctx context.Context, q Querier) error {
		_, err := q.Exec(ctx, `INSERT INTO store_probe (id, writes) VALUES (1, 1)
			ON CONFLICT (id) DO UPDATE SET writes = store_probe.writes + 1`)
		return err
	})
}

// SetBlocked blocks or unblocks a user.
func (s Store) SetBlocked(ctx context.Context, userID string, blocked bool) error {
	return SetBlocked(ctx, s.D, s.B.Writer(), userID, blocked)
}

// ModelPrice returns a model's price row, or store.ErrNotFound.
func (s Store) ModelPrice(ctx context.Context, id string) (store.ModelPrice, error) {
	return ModelPrice(ctx, s.B.Reader(), id)
}

// PutModelPrice stores an admin's price.
func (s Store) PutModelPrice(ctx context.Context, p store.ModelPrice) (store.ModelPrice, error) {
	return PutModelPrice(ctx, s.D, s.B.Writer(), p)
}

// RecordModel notes a model seen in traffic; an existing row is left alone.
func (s Store) RecordModel(ctx context.Context, id, name, baseModelID string) error {
	return RecordModel(ctx, s.D, s.B.Writer(), id, name, baseModelID)
}

// Ledger sums one user's ledger in one snapshot (one statement).
func (s Store) Ledger(ctx context.Context, userID string) (store.Ledger, error) {
	return Ledger(ctx, s.D, s.B.Reader(), userID)
}

// RecordByKey returns the record with an idempotency key, or store.ErrNotFound.
func (s Store) RecordByKey(ctx context.Context, key string) (store.Record, error) {
	return RecordByKey(ctx, s.B.Reader(), key)
}

// MessageUsage sums what one path recorded for a message.
func (s Store) MessageUsage(ctx context.Context, source, chatID, messageID string) (store.MessageUsage, error) {
	return MessageUsage(ctx, s.D, s.B.Reader(), source, chatID, messageID)
}

// ReleaseHold removes a pending record and gives its cost back.
func (s Store) ReleaseHold(ctx context.Context, key string) (ok bool, err error) {
	if key == "" {
		return false, nil
	}
	err = s.B.Tx(ctx, func(ctx context.Context, q Querier) error {
		ok, err = ReleaseHold(ctx, s.D, q, key)
		return err
	})
	return ok, err
}

// ExpiredHolds lists pending records whose hold has lapsed.
func (s Store) ExpiredHolds(ctx context.Context, at time.Time, limit int) ([]store.Record, error) {
	return ExpiredHolds(ctx, s.D, s.B.Reader(), at, limit)
}

// ListUsers returns a page of users and how many match in all.
func (s Store) ListUsers(ctx context.Context, uq store.UserQuery) (users []store.User, total int64, err error) {
	err = s.B.Snapshot(ctx, func(q Querier) error {
		users, total, err = ListUsers(ctx, s.D, q, uq)
		return err
	})
	return users, total, err
}

// DeleteUser removes a user with their records and balance changes.
func (s Store) DeleteUser(ctx context.Context, id string) error {
	return s.B.Tx(ctx, func(ctx context.Context, q Querier) error { return DeleteUser(ctx, s.D, q, id) })
}

// BalanceChanges returns a user's latest balance changes, newest first (an
// unknown user has none).
func (s Store) BalanceChanges(ctx context.Context, userID string, limit int) ([]store.BalanceChange, error) {
	return BalanceChanges(ctx, s.B.Reader(), userID, limit)
}

// ListRecords returns a page of records and how many match in all.
func (s Store) ListRecords(ctx context.Context, rq store.RecordQuery) (recs []store.Record, total int64, err error) {
	err = s.B.Snapshot(ctx, func(q Querier) error {
		recs, total, err = ListRecords(ctx, s.D, q, rq)
		return err
	})
	return recs, total, err
}

// EachRecord calls fn for every matching record in ListRecords' order,
// ignoring paging, one row at a time.
func (s Store) EachRecord(ctx context.Context, rq store.RecordQuery, fn func(store.Record) error) error {
	return EachRecord(ctx, s.D, s.B.Reader(), rq, fn)
}

// ListModelPrices returns every price row, by id in byte order.
func (s Store) ListModelPrices(ctx context.Context) ([]store.ModelPrice, error) {
	return ListModelPrices(ctx, s.D, s.B.Reader())
}

// Export returns every row, in one snapshot.
func (s Store) Export(ctx context.Context) (b store.Backup, err error) {
	err = s.B.Snapshot(ctx, func(q Querier) error {
		b, err = Export(ctx, s.D, q)
		return err
	})
	if err != nil {
		return store.Backup{}, err
	}
	return b, nil
}

// LimitUsage sums what each limit check has used in its window.
func (s Store) LimitUsage(ctx context.Context, userID string, checks []store.LimitCheck, now time.Time) ([]int64, error) {
	return LimitUsage(ctx, s.D, s.B.Reader(), userID, checks, now)
}

// Limits returns every budget limit.
func (s Store) Limits(ctx context.Context) ([]budget.Limit, error) { return Limits(ctx, s.B.Reader()) }

// PutLimit inserts or replaces a limit.
func (s Store) PutLimit(ctx context.Context, l budget.Limit) (out budget.Limit, err error) {
	err = s.B.Stmt(ctx, func(ctx context.Context, q Querier) error {
		out, err = PutLimit(ctx, s.D, q, l)
		return err
	})
	return out, err
}

// DeleteLimit removes a limit.
func (s Store) DeleteLimit(ctx context.Context, id int64) error {
	return s.B.Stmt(ctx, func(ctx context.Context, q Querier) error { return deleteByID(ctx, q, "budget_limits", id) })
}

// Grants returns every grant.
func (s Store) Grants(ctx context.Context) ([]budget.Grant, error) { return Grants(ctx, s.B.Reader()) }

// AddGrant stores a grant.
func (s Store) AddGrant(ctx context.Context, g budget.Grant) (out budget.Grant, err error) {
	err = s.B.Stmt(ctx, func(ctx context.Context, q Querier) error {
		out, err = AddGrant(ctx, s.D, q, g)
		return err
	})
	return out, err
}

// DeleteGrant removes a grant.
func (s Store) DeleteGrant(ctx context.Context, id int64) error {
	return s.B.Stmt(ctx, func(ctx context.Context, q Querier) error { return deleteByID(ctx, q, "budget_grants", id) })
}

// ApplyGrant applies a grant's window once.
func (s Store) ApplyGrant(ctx context.Context, id int64, window time.Time) (changes []store.BalanceChange, err error) {
	err = s.B.Tx(ctx, func(ctx context.Context, q Querier) error {
		changes, err = ApplyGrant(ctx, s.D, q, id, window)
		return err
	})
	return changes, err
}

// Groups returns the synced groups.
func (s Store) Groups(ctx context.Context) ([]budget.Group, error) { return Groups(ctx, s.B.Reader()) }

// SetGroups replaces the synced groups.
func (s Store) SetGroups(ctx context.Context, groups []budget.Group) error {
	return s.B.Tx(ctx, func(ctx context.Context, q Querier) error { return SetGroups(ctx, s.D, q, groups) })
}

// UserGroups lists a user's groups.
func (s Store) UserGroups(ctx context.Context, userID string) ([]string, error) {
	return UserGroups(ctx, s.B.Reader(), userID)
}
