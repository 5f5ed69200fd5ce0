package sqlstore

// The writes that move money: reserving and charging (with the netting of
// pending holds), releasing holds, admin balance changes. Each function
// runs in the one write transaction its backend gives it.

import (
	"context"
	"errors"
	"math"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// UpsertUser creates the user with balance initial, or refreshes the email,
// name and role of an existing one. An empty field leaves the stored value
// as it is; a new user with no role gets "user".
func UpsertUser(ctx context.Context, d Dialect, q Querier, u store.UserInfo, initial money.Amount) (store.User, error) {
	if u.ID == "" {
		return store.User{}, d.errorf("user without an id")
	}
	return scanUser(q.QueryRow(ctx, `
		INSERT INTO users (id, email, name, role, balance, initial_balance, created_at, updated_at)
		VALUES ($1, $2, $3, COALESCE(NULLIF($4, ''), 'user'), $5, $5, $6, $6)
		ON CONFLICT (id) DO UPDATE SET
			email = COALESCE(NULLIF($2, ''), users.email),
			name = COALESCE(NULLIF($3, ''), users.name),
			role = COALESCE(NULLIF($4, ''), users.role),
			updated_at = $6
		RETURNING `+userCols,
		u.ID, u.Email, u.Name, u.Role, int64(initial), d.Time(d.Now())))
}

// ruleCond is the SQL condition of a reserve rule on users.balance ($2 is the cost).
func ruleCond(d Dialect, rule store.ReserveRule) (string, error) {
	switch rule {
	case store.ReserveIfPositive:
		return `balance > 0`, nil
	case store.ReserveIfCovered, store.ReserveCoveredOrRest:
		return `balance >= $2`, nil
	case store.ReserveAlways:
		return `TRUE`, nil
	}
	return "", d.errorf("unknown reserve rule %d", rule)
}

// PrepareReserve checks a reservation and returns its pending record, as
// Reserve takes it: call it once, before the transaction (which may run
// more than once).
func PrepareReserve(d Dialect, r store.Reservation) (store.Reservation, error) {
	if _, err := ruleCond(d, r.Rule); err != nil {
		return r, err
	}
	r.Record.ID = 0
	r.Record.Status = store.StatusPending
	r.Record.CreatedAt = d.Stamp(r.Record.CreatedAt)
	r.Record.ExpiresAt = d.StampPtr(r.Record.ExpiresAt)
	return r, nil
}

// Reserve writes the pending record of a reservation (from PrepareReserve)
// and takes its cost when the rule allows and the user is not blocked. A
// record with the key makes it do nothing and return that record: most
// holds are new, so the key is looked up first only when lookup is set
// (an earlier try found it taken) or the hold is refused; a hold whose
// insert finds the key taken returns ErrRace, rolling back what it took,
// for the caller to try again with lookup.
func Reserve(ctx context.Context, d Dialect, q Querier, r store.Reservation, lookup bool) (res store.ReserveResult, err error) {
	cond, err := ruleCond(d, r.Rule)
	if err != nil {
		return res, err
	}
	rec := r.Record
	existing := func() (bool, error) {
		if rec.Key == "" {
			return false, nil
		}
		old, err := scanRecord(q.QueryRow(ctx, `SELECT `+recordCols+` FROM usage_records WHERE idem_key = $1`, rec.Key))
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		} else if err != nil {
			return false, err
		}
		res.Existing, res.Record = true, old
		res.Balance, err = balanceOf(ctx, q, old.UserID)
		return true, err
	}
	// 1. A record with the key already exists: nothing to do.
	if lookup {
		if found, err := existing(); found || err != nil {
			return res, err
		}
	}

	// 2. Take the cost when the user is not blocked, the rule allows and
	// the balance stays within an int64. ReserveCoveredOrRest takes what
	// is left of a balance below the cost; a balance changed by another
	// charge in between is read again (a few times: then it is refused).
	// The pools of the shared limits are locked in the same statement,
	// before the row (see lockPools).
	var bal int64
	lo, hi := store.SubRange(int64(rec.Cost))
	full := `UPDATE users SET balance = balance - $2, updated_at = $3
		WHERE id = $1 AND NOT deleted AND (` + cond + `) AND balance BETWEEN $4 AND $5 RETURNING balance`
	fullArgs := func() []any { return []any{rec.UserID, int64(rec.Cost), d.Time(d.Now()), lo, hi} }
	if keys := poolKeys(d, r.Limits); len(keys) > 0 {
		full = `WITH pools AS (` + lockPoolsSQL(`$6`) + `) UPDATE users SET balance = balance - $2, updated_at = $3
		FROM pools WHERE id = $1 AND NOT deleted AND (` + cond + `) AND balance BETWEEN $4 AND $5 RETURNING balance`
		fullArgs = func() []any { return []any{rec.UserID, int64(rec.Cost), d.Time(d.Now()), lo, hi, keys} }
	}
	err = q.QueryRow(ctx, full, fullArgs()...).Scan(&bal)
	for attempt := 0; noRows(err); attempt++ {
		if attempt == 0 {
			// Not taken: a record with the key answers first; the
			// pools may not be locked yet, and they go first.
			if found, err := existing(); found || err != nil {
				return res, err
			}
			if err := lockPools(ctx, d, q, r.Limits); err != nil {
				return res, err
			}
		}
		var cur int64
		err = q.QueryRow(ctx, `SELECT deleted, balance FROM users WHERE id = $1`, rec.UserID).
			Scan(&res.Blocked, &cur)
		res.Balance = money.Amount(cur)
		if noRows(err) {
			return res, store.ErrNotFound
		}
		if err == nil && !res.Blocked && r.Rule.Allows(res.Balance, rec.Cost) && (cur < lo || cur > hi) {
			return res, store.BalanceRangeError(res.Balance, rec.Cost)
		}
		if err != nil || res.Blocked || r.Rule != store.ReserveCoveredOrRest || cur <= 0 || attempt == 3 {
			return res, err
		}
		if cur >= int64(rec.Cost) { // another call gave money back: the cost is covered now
			err = q.QueryRow(ctx, full, fullArgs()...).Scan(&bal)
			continue
		}
		// Not covered, but something is left: take all of it, unless
		// another call changed it since it was read.
		err = q.QueryRow(ctx, `UPDATE users SET balance = 0, updated_at = $3
			WHERE id = $1 AND NOT deleted AND balance = $2 RETURNING balance`,
			rec.UserID, cur, d.Time(d.Now())).Scan(&bal)
		if err == nil {
			rec.Cost = money.Amount(cur)
		}
	}
	if err != nil {
		return res, err
	}

	// 3. With the user's row held and the pools locked, write the pending
	// record if every limit has room left: checked in the INSERT itself,
	// whose snapshot is taken after the locks, so it sees every hold that
	// went before. A limit with nothing left refuses the hold, and the
	// transaction rolls back what step 2 took.
	rec.BalanceAfter = money.Amount(bal)
	err = insertHold(ctx, d, q, &rec, r.HeldTokens, r.Limits)
	if errors.Is(err, ErrRace) && len(r.Limits) > 0 {
		// No row: the key was taken, or a limit has no room; which one?
		if taken, err := existing(); taken || err != nil {
			if err == nil {
				err = d.errorf("%w", ErrRace)
			}
			return store.ReserveResult{}, err
		}
		if over, used, oerr := overLimit(ctx, d, q, rec.UserID, r.Limits, rec.CreatedAt); oerr != nil || over > 0 {
			if oerr == nil {
				oerr = &OverLimitError{Index: over, Used: used, Balance: money.Amount(bal).Add(rec.Cost)}
			}
			return res, oerr
		}
	}
	if err != nil {
		return res, err
	}
	return store.ReserveResult{Placed: true, Record: rec, Balance: money.Amount(bal)}, nil
}

// OverLimitError ends a Reserve transaction (rolling it back) whose hold
// a limit refuses: Store.Reserve answers it as ReserveResult.OverLimit.
type OverLimitError struct {
	Index   int // 1 + the index of the limit
	Used    int64
	Balance money.Amount // the balance, untouched
}

func (e *OverLimitError) Error() string { return "over a budget limit" }

// PrepareCharge checks a charge and returns its record as Charge takes
// it: call it once, before the transaction.
func PrepareCharge(d Dialect, r store.Record) (store.Record, error) {
	switch r.Status {
	case "":
		r.Status = store.StatusCompleted
	case store.StatusPending:
		return r, d.errorf("Charge of a pending record (use Reserve)")
	}
	r.ID = 0
	r.CreatedAt = d.Stamp(r.CreatedAt)
	r.ExpiresAt = nil
	return r, nil
}

// Charge writes a final record (from PrepareCharge) and takes its cost,
// completing a pending record with the same key in place.
func Charge(ctx context.Context, d Dialect, q Querier, r store.Record) (res store.ChargeResult, err error) {
	// 1. A record with the key: complete it if pending, else a duplicate.
	if r.Key != "" {
		old, err := scanRecord(q.QueryRow(ctx,
			`SELECT `+recordCols+` FROM usage_records WHERE idem_key = $1`+d.ForUpdate, r.Key))
		switch {
		case err == nil && store.ProviderCovers(old, r):
			res.Covered, res.Record = true, old
			res.Balance, err = balanceOf(ctx, q, old.UserID)
			return res, err
		case err == nil && old.Status != store.StatusPending && old.Status != store.StatusExpired:
			res.Duplicate, res.Record = true, old
			res.Balance, err = balanceOf(ctx, q, old.UserID)
			return res, err
		case err == nil:
			if r.UserID != "" && r.UserID != old.UserID {
				return res, d.errorf("key %q is held for user %q, not %q", r.Key, old.UserID, r.UserID)
			}
			delta, ok := r.Cost.SubChecked(old.Cost)
			if !ok {
				return res, d.errorf("cost %s less the %s held: %w", r.Cost, old.Cost, store.ErrOutOfRange)
			}
			bal, err := take(ctx, d, q, old.UserID, delta)
			if err != nil {
				return res, err
			}
			rec, err := scanRecord(q.QueryRow(ctx, `
				UPDATE usage_records SET
					nickname = COALESCE(NULLIF($2, ''), nickname),
					model = COALESCE(NULLIF($3, ''), model),
					input_tokens = $4, output_tokens = $5, cached_tokens = $6, reasoning_tokens = $7,
					cost = $8, balance_after = $9,
					source = COALESCE(NULLIF($10, ''), source),
					status = $11, estimated = $12,
					purpose = COALESCE(NULLIF($13, ''), purpose),
					chat_id = COALESCE(NULLIF($14, ''), chat_id),
					message_id = COALESCE(NULLIF($15, ''), message_id),
					duration_ms = $16, expires_at = NULL
				WHERE id = $1 RETURNING `+recordCols,
				old.ID, r.Nickname, r.Model, r.InputTokens, r.OutputTokens, r.CachedTokens, r.ReasoningTokens,
				int64(r.Cost), bal, r.Source, r.Status, r.Estimated, r.Purpose, r.ChatID, r.MessageID, r.DurationMS))
			if err != nil {
				return res, err
			}
			// The rollups: a pending record never counted, an expired one did.
			if old.Status == store.StatusExpired {
				err = replaceDaily(ctx, d, q, contributionOf(old), contributionOf(rec))
			} else {
				err = addDaily(ctx, d, q, contributionOf(rec))
			}
			if err != nil {
				return res, err
			}
			return store.ChargeResult{Record: rec, Held: old.Cost, Balance: money.Amount(bal)}, nil
		case !errors.Is(err, store.ErrNotFound):
			return res, err
		case r.Status == store.StatusExpired:
			// The hold is gone (re-keyed, adopted and charged, or its user
			// deleted): an expiry has nothing to release, and must not
			// write a record of its own.
			return res, nil
		}
	}

	// 2. Take the cost.
	bal, err := take(ctx, d, q, r.UserID, r.Cost)
	if err != nil {
		return res, err
	}

	// 3. Write the record and add it to the rollups.
	r.BalanceAfter = money.Amount(bal)
	if err := insertRecord(ctx, d, q, &r); err != nil {
		return res, err
	}
	if err := addDaily(ctx, d, q, contributionOf(r)); err != nil {
		return res, err
	}
	return store.ChargeResult{Record: r, Balance: money.Amount(bal)}, nil
}

// take subtracts delta (negative: gives it back) from a user's balance and
// returns the new balance: store.ErrNotFound when there is no such user,
// store.ErrOutOfRange, changing nothing, when the result would not fit in
// an int64 (SQLite would silently make it a REAL, PostgreSQL fail).
func take(ctx context.Context, d Dialect, q Querier, userID string, delta money.Amount) (int64, error) {
	lo, hi := store.SubRange(int64(delta))
	var bal int64
	err := q.QueryRow(ctx, `UPDATE users SET balance = balance - $2, updated_at = $3
		WHERE id = $1 AND balance BETWEEN $4 AND $5 RETURNING balance`,
		userID, int64(delta), d.Time(d.Now()), lo, hi).Scan(&bal)
	if noRows(err) {
		cur, err := balanceOf(ctx, q, userID)
		if err != nil {
			return 0, err
		}
		return 0, store.BalanceRangeError(cur, delta)
	}
	return bal, err
}

// insertRecord inserts r and sets its ID. It returns ErrRace when another
// transaction holds r.Key.
func insertRecord(ctx context.Context, d Dialect, q Querier, r *store.Record) error {
	return insertHold(ctx, d, q, r, 0, nil)
}

// insertHold inserts a record that counts held tokens against token
// limits while pending (see store.Reservation.HeldTokens), when every
// check has room left (limitRoom). It returns ErrRace when no row was
// inserted: another transaction holds r.Key, or a check has no room.
func insertHold(ctx context.Context, d Dialect, q Querier, r *store.Record, heldTokens int64, checks []store.LimitCheck) error {
	w := Where{Args: []any{r.UserID, r.Nickname, r.Model, r.InputTokens, r.OutputTokens, r.CachedTokens, r.ReasoningTokens,
		int64(r.Cost), int64(r.BalanceAfter), r.Source, r.Status, r.Estimated, r.Purpose, r.ChatID, r.MessageID,
		nullKey(r.Key), r.DurationMS, d.Time(r.CreatedAt), d.timePtr(r.ExpiresAt), heldTokens}}
	room := limitRoom(d, &w, r.UserID, checks, r.CreatedAt)
	err := q.QueryRow(ctx, `
		INSERT INTO usage_records (user_id, nickname, model, input_tokens, output_tokens, cached_tokens,
			reasoning_tokens, cost, balance_after, source, status, estimated, purpose, chat_id, message_id,
			idem_key, duration_ms, created_at, expires_at, held_tokens)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20
		WHERE `+room+`
		ON CONFLICT (idem_key) DO NOTHING
		RETURNING id`, w.Args...).Scan(&r.ID)
	if noRows(err) {
		return d.errorf("%w", ErrRace)
	}
	return err
}

func balanceOf(ctx context.Context, q Querier, userID string) (money.Amount, error) {
	var bal int64
	err := q.QueryRow(ctx, `SELECT balance FROM users WHERE id = $1`, userID).Scan(&bal)
	return money.Amount(bal), found(err)
}

// SetBalanceTo is the next balance of SetBalance.
func SetBalanceTo(balance money.Amount) func(money.Amount) (money.Amount, error) {
	return func(money.Amount) (money.Amount, error) { return balance, nil }
}

// AdjustBalanceBy is the next balance of AdjustBalance: store.ErrOutOfRange
// beyond an int64.
func AdjustBalanceBy(delta money.Amount) func(money.Amount) (money.Amount, error) {
	return func(old money.Amount) (money.Amount, error) {
		if (delta > 0 && old > math.MaxInt64-delta) || (delta < 0 && old < math.MinInt64-delta) {
			return 0, store.BalanceRangeError(old, -delta)
		}
		return old + delta, nil
	}
}

// ChangeBalance sets a user's balance to next(old) and records the change
// with its actor.
func ChangeBalance(ctx context.Context, d Dialect, q Querier, userID, actor, reason string,
	next func(old money.Amount) (money.Amount, error)) (store.BalanceChange, error) {
	c := store.BalanceChange{UserID: userID, Actor: actor, Reason: reason, CreatedAt: d.Now()}
	err := q.QueryRow(ctx, `SELECT balance FROM users WHERE id = $1`+d.ForUpdate, userID).Scan((*int64)(&c.OldBalance))
	if err != nil {
		return c, found(err)
	}
	if c.NewBalance, err = next(c.OldBalance); err != nil {
		return c, err
	}
	if _, err := q.Exec(ctx, `UPDATE users SET balance = $2, updated_at = $3 WHERE id = $1`,
		userID, int64(c.NewBalance), d.Time(c.CreatedAt)); err != nil {
		return c, err
	}
	err = q.QueryRow(ctx, `
		INSERT INTO balance_changes (user_id, actor, reason, old_balance, new_balance, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		userID, actor, reason, int64(c.OldBalance), int64(c.NewBalance), d.Time(c.CreatedAt)).Scan(&c.ID)
	return c, err
}

// SetBlocked blocks or unblocks a user.
func SetBlocked(ctx context.Context, d Dialect, q Querier, userID string, blocked bool) error {
	n, err := q.Exec(ctx, `UPDATE users SET deleted = $2, updated_at = $3 WHERE id = $1`,
		userID, blocked, d.Time(d.Now()))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return err
}

// ReleaseHold removes the pending record with the key and gives its cost
// back; false when there is none.
func ReleaseHold(ctx context.Context, d Dialect, q Querier, key string) (bool, error) {
	var user string
	var cost int64
	err := q.QueryRow(ctx, `DELETE FROM usage_records WHERE idem_key = $1 AND status = 'pending'
		RETURNING user_id, cost`, key).Scan(&user, &cost)
	if noRows(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if cost == math.MinInt64 {
		return false, store.BalanceRangeError(0, money.Min)
	}
	_, err = take(ctx, d, q, user, money.Amount(-cost))
	return err == nil, err
}

// DeleteUser removes a user with their records and balance changes. The
// user's row is locked first, so no charge can add a record meanwhile.
func DeleteUser(ctx context.Context, d Dialect, q Querier, id string) error {
	var one int
	if err := q.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1`+d.ForUpdate, id).Scan(&one); err != nil {
		return found(err)
	}
	if err := forgetBreakdown(ctx, d, q, id); err != nil {
		return err
	}
	for _, s := range []string{
		`DELETE FROM balance_changes WHERE user_id = $1`,
		`DELETE FROM usage_records WHERE user_id = $1`,
		`DELETE FROM usage_daily WHERE user_id = $1`,
		`DELETE FROM users WHERE id = $1`,
	} {
		if _, err := q.Exec(ctx, s, id); err != nil {
			return err
		}
	}
	return nil
}

// PutModelPrice stores an admin's price.
func PutModelPrice(ctx context.Context, d Dialect, q Querier, p store.ModelPrice) (store.ModelPrice, error) {
	if p.ID == "" {
		return store.ModelPrice{}, d.errorf("model price without an id")
	}
	return scanPrice(q.QueryRow(ctx, `
		INSERT INTO model_prices (id, name, base_model_id, input_price, output_price, per_msg_price, priced,
			created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7)
		ON CONFLICT (id) DO UPDATE SET
			name = excluded.name, base_model_id = excluded.base_model_id,
			input_price = excluded.input_price, output_price = excluded.output_price,
			per_msg_price = excluded.per_msg_price, priced = TRUE, updated_at = excluded.updated_at
		RETURNING `+priceCols,
		p.ID, p.Name, p.BaseModelID, int64(p.Input), int64(p.Output), int64(p.PerMessage), d.Time(d.Now())))
}

// RecordModel notes a model seen in traffic; an existing row is left alone.
func RecordModel(ctx context.Context, d Dialect, q Querier, id, name, baseModelID string) error {
	if id == "" {
		return d.errorf("model without an id")
	}
	_, err := q.Exec(ctx, `
		INSERT INTO model_prices (id, name, base_model_id, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $4)
		ON CONFLICT (id) DO UPDATE SET base_model_id = excluded.base_model_id, updated_at = excluded.updated_at
		WHERE NOT model_prices.priced AND model_prices.base_model_id = '' AND excluded.base_model_id <> ''`,
		id, name, baseModelID, d.Time(d.Now()))
	return err
}
