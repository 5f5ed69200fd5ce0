// Package postgres is the PostgreSQL store, for production and for several
// instances sharing one database. It runs on pgxpool with raw SQL.
//
// Every write is one short transaction under READ COMMITTED. Balances move
// with UPDATE … RETURNING, so concurrent charges of one user serialise on
// that user's row and never lose an update. Idempotency keys are UNIQUE: a
// charge that loses an insert race for its key rolls back and is retried,
// and then finds the winner's record (a duplicate).
//
// The sqlite package implements the same statements in the same order; keep
// the two alike.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/migrations"
)

// minConns is the least pool size Open sets when the DSN does not choose one.
const minConns = 8

// maxAttempts bounds the retries of a transaction that lost a race for an
// idempotency key (or hit a deadlock or serialization failure).
const maxAttempts = 10

// Store is the PostgreSQL implementation of store.Store.
type Store struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a postgres:// or postgresql:// URL,
// or key=value settings) and brings its schema up to date. Instances that
// start at once take turns migrating under an advisory lock.
//
// The pool keeps pgxpool's size (max(4, CPUs)) but at least 8 connections,
// unless the DSN sets pool_max_conns; application_name defaults to "owmon".
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DSN: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") && cfg.MaxConns < minConns {
		cfg.MaxConns = minConns
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "owmon"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool}, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close() // does not close the pool
	// Poll for the lock every second, for up to 5 minutes.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.Postgres,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// Kind returns "postgres".
func (s *Store) Kind() string { return "postgres" }

// Pool returns the connection pool, for queries the Store interface does not
// cover (reports, LISTEN/NOTIFY).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// now is the store's clock, at the column's precision.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func stamp(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return t.UTC().Truncate(time.Microsecond)
}

func stampPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC().Truncate(time.Microsecond)
	return &v
}

// nullKey stores an empty idempotency key as NULL.
func nullKey(k string) *string {
	if k == "" {
		return nil
	}
	return &k
}

// retryable reports errors after which the whole transaction may be run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return true
		}
	}
	return false
}

// errRace means an insert lost the race for its idempotency key.
var errRace = errors.New("postgres: lost the race for an idempotency key")

// retry runs fn until it neither loses a race nor hits a retryable error.
func retry[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		v, err = fn()
		if err == nil || !(errors.Is(err, errRace) || retryable(err)) {
			return v, err
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
	}
	return v, fmt.Errorf("postgres: gave up after %d attempts: %w", maxAttempts, err)
}

const userCols = `id, email, name, role, balance, initial_balance, deleted, created_at, updated_at`

func scanUser(row pgx.Row) (store.User, error) {
	var u store.User
	err := row.Scan(&u.ID, &u.Email, &u.Name, &u.Role, &u.Balance, &u.InitialBalance, &u.Blocked,
		&u.CreatedAt, &u.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, store.ErrNotFound
	}
	u.CreatedAt = u.CreatedAt.UTC()
	u.UpdatedAt = u.UpdatedAt.UTC()
	return u, err
}

const recordCols = `id, user_id, nickname, model, input_tokens, output_tokens, cached_tokens,
	reasoning_tokens, cost, balance_after, source, status, estimated, purpose, chat_id, message_id,
	COALESCE(idem_key, ''), duration_ms, created_at, expires_at`

func scanRecord(row pgx.Row) (store.Record, error) {
	var r store.Record
	err := row.Scan(&r.ID, &r.UserID, &r.Nickname, &r.Model, &r.InputTokens, &r.OutputTokens,
		&r.CachedTokens, &r.ReasoningTokens, &r.Cost, &r.BalanceAfter, &r.Source, &r.Status,
		&r.Estimated, &r.Purpose, &r.ChatID, &r.MessageID, &r.Key, &r.DurationMS, &r.CreatedAt,
		&r.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, store.ErrNotFound
	}
	r.CreatedAt = r.CreatedAt.UTC()
	r.ExpiresAt = stampPtr(r.ExpiresAt)
	return r, err
}

// UpsertUser creates the user with balance initial, or refreshes the email,
// name and role of an existing one. An empty field leaves the stored value
// as it is; a new user with no role gets "user".
func (s *Store) UpsertUser(ctx context.Context, u store.UserInfo, initial money.Amount) (store.User, error) {
	if u.ID == "" {
		return store.User{}, errors.New("postgres: user without an id")
	}
	return scanUser(s.pool.QueryRow(ctx, `
		INSERT INTO users (id, email, name, role, balance, initial_balance, created_at, updated_at)
		VALUES ($1, $2, $3, COALESCE(NULLIF($4, ''), 'user'), $5, $5, $6, $6)
		ON CONFLICT (id) DO UPDATE SET
			email = COALESCE(NULLIF($2, ''), users.email),
			name = COALESCE(NULLIF($3, ''), users.name),
			role = COALESCE(NULLIF($4, ''), users.role),
			updated_at = $6
		RETURNING `+userCols,
		u.ID, u.Email, u.Name, u.Role, initial, now()))
}

// User returns one user, or store.ErrNotFound.
func (s *Store) User(ctx context.Context, id string) (store.User, error) {
	return scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
}

// ruleCond is the SQL condition of a reserve rule on users.balance ($2 is the cost).
func ruleCond(rule store.ReserveRule) (string, error) {
	switch rule {
	case store.ReserveIfPositive:
		return `balance > 0`, nil
	case store.ReserveIfCovered:
		return `balance >= $2`, nil
	case store.ReserveAlways:
		return `TRUE`, nil
	}
	return "", fmt.Errorf("postgres: unknown reserve rule %d", rule)
}

// Reserve writes a pending record and takes its cost when the rule allows.
func (s *Store) Reserve(ctx context.Context, r store.Reservation) (store.ReserveResult, error) {
	cond, err := ruleCond(r.Rule)
	if err != nil {
		return store.ReserveResult{}, err
	}
	rec := r.Record
	rec.ID = 0
	rec.Status = store.StatusPending
	rec.CreatedAt = stamp(rec.CreatedAt)
	rec.ExpiresAt = stampPtr(rec.ExpiresAt)
	return retry(ctx, func() (store.ReserveResult, error) { return s.reserve(ctx, rec, r.Rule, cond) })
}

func (s *Store) reserve(ctx context.Context, rec store.Record, rule store.ReserveRule, cond string) (res store.ReserveResult, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	// 1. A record with the key already exists: nothing to do.
	if rec.Key != "" {
		old, err := scanRecord(tx.QueryRow(ctx, `SELECT `+recordCols+` FROM usage_records WHERE idem_key = $1`, rec.Key))
		if err == nil {
			res.Existing, res.Record = true, old
			res.Balance, err = balanceOf(ctx, tx, old.UserID)
			return res, err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return res, err
		}
	}

	// 2. Take the cost when the user is not blocked, the rule allows and
	// the balance stays within an int64.
	var bal money.Amount
	lo, hi := store.SubRange(int64(rec.Cost))
	err = tx.QueryRow(ctx, `UPDATE users SET balance = balance - $2, updated_at = $3
		WHERE id = $1 AND NOT deleted AND (`+cond+`) AND balance BETWEEN $4 AND $5 RETURNING balance`,
		rec.UserID, rec.Cost, now(), lo, hi).Scan(&bal)
	if errors.Is(err, pgx.ErrNoRows) {
		err = tx.QueryRow(ctx, `SELECT deleted, balance FROM users WHERE id = $1`, rec.UserID).
			Scan(&res.Blocked, &res.Balance)
		if errors.Is(err, pgx.ErrNoRows) {
			return res, store.ErrNotFound
		}
		if cur := int64(res.Balance); err == nil && !res.Blocked && rule.Allows(res.Balance, rec.Cost) && (cur < lo || cur > hi) {
			return res, store.BalanceRangeError(res.Balance, rec.Cost)
		}
		return res, err
	}
	if err != nil {
		return res, err
	}

	// 3. Write the pending record.
	rec.BalanceAfter = bal
	if err := insertRecord(ctx, tx, &rec); err != nil {
		return res, err
	}
	if err := tx.Commit(ctx); err != nil {
		return res, err
	}
	return store.ReserveResult{Placed: true, Record: rec, Balance: bal}, nil
}

// Charge writes a final record and takes its cost, completing a pending
// record with the same key in place.
func (s *Store) Charge(ctx context.Context, r store.Record) (store.ChargeResult, error) {
	switch r.Status {
	case "":
		r.Status = store.StatusCompleted
	case store.StatusPending:
		return store.ChargeResult{}, errors.New("postgres: Charge of a pending record (use Reserve)")
	}
	r.ID = 0
	r.CreatedAt = stamp(r.CreatedAt)
	r.ExpiresAt = nil
	return retry(ctx, func() (store.ChargeResult, error) { return s.charge(ctx, r) })
}

func (s *Store) charge(ctx context.Context, r store.Record) (res store.ChargeResult, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	// 1. A record with the key: complete it if pending, else a duplicate.
	if r.Key != "" {
		old, err := scanRecord(tx.QueryRow(ctx,
			`SELECT `+recordCols+` FROM usage_records WHERE idem_key = $1 FOR UPDATE`, r.Key))
		switch {
		case err == nil && store.ProviderCovers(old, r):
			res.Covered, res.Record = true, old
			res.Balance, err = balanceOf(ctx, tx, old.UserID)
			return res, err
		case err == nil && old.Status != store.StatusPending && old.Status != store.StatusExpired:
			res.Duplicate, res.Record = true, old
			res.Balance, err = balanceOf(ctx, tx, old.UserID)
			return res, err
		case err == nil:
			if r.UserID != "" && r.UserID != old.UserID {
				return res, fmt.Errorf("postgres: key %q is held for user %q, not %q", r.Key, old.UserID, r.UserID)
			}
			delta, ok := r.Cost.SubChecked(old.Cost)
			if !ok {
				return res, fmt.Errorf("postgres: cost %s less the %s held: %w", r.Cost, old.Cost, store.ErrOutOfRange)
			}
			bal, err := take(ctx, tx, old.UserID, delta)
			if err != nil {
				return res, err
			}
			rec, err := scanRecord(tx.QueryRow(ctx, `
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
				r.Cost, bal, r.Source, r.Status, r.Estimated, r.Purpose, r.ChatID, r.MessageID, r.DurationMS))
			if err != nil {
				return res, err
			}
			// The rollups: a pending record never counted, an expired one did.
			if old.Status == store.StatusExpired {
				err = replaceDaily(ctx, tx, contributionOf(old), contributionOf(rec))
			} else {
				err = addDaily(ctx, tx, contributionOf(rec))
			}
			if err != nil {
				return res, err
			}
			if err := tx.Commit(ctx); err != nil {
				return res, err
			}
			return store.ChargeResult{Record: rec, Held: old.Cost, Balance: bal}, nil
		case !errors.Is(err, store.ErrNotFound):
			return res, err
		}
	}

	// 2. Take the cost.
	bal, err := take(ctx, tx, r.UserID, r.Cost)
	if err != nil {
		return res, err
	}

	// 3. Write the record and add it to the rollups.
	r.BalanceAfter = bal
	if err := insertRecord(ctx, tx, &r); err != nil {
		return res, err
	}
	if err := addDaily(ctx, tx, contributionOf(r)); err != nil {
		return res, err
	}
	if err := tx.Commit(ctx); err != nil {
		return res, err
	}
	return store.ChargeResult{Record: r, Balance: bal}, nil
}

// take subtracts delta (negative: gives it back) from a user's balance and
// returns the new balance: store.ErrNotFound when there is no such user,
// store.ErrOutOfRange, changing nothing, when the result would not fit in
// a BIGINT (PostgreSQL would fail the statement).
func take(ctx context.Context, tx pgx.Tx, userID string, delta money.Amount) (money.Amount, error) {
	lo, hi := store.SubRange(int64(delta))
	var bal money.Amount
	err := tx.QueryRow(ctx, `UPDATE users SET balance = balance - $2, updated_at = $3
		WHERE id = $1 AND balance BETWEEN $4 AND $5 RETURNING balance`,
		userID, delta, now(), lo, hi).Scan(&bal)
	if errors.Is(err, pgx.ErrNoRows) {
		cur, err := balanceOf(ctx, tx, userID)
		if err != nil {
			return 0, err
		}
		return 0, store.BalanceRangeError(cur, delta)
	}
	return bal, err
}

// insertRecord inserts r and sets its ID. It returns errRace when another
// transaction holds r.Key.
func insertRecord(ctx context.Context, tx pgx.Tx, r *store.Record) error {
	err := tx.QueryRow(ctx, `
		INSERT INTO usage_records (user_id, nickname, model, input_tokens, output_tokens, cached_tokens,
			reasoning_tokens, cost, balance_after, source, status, estimated, purpose, chat_id, message_id,
			idem_key, duration_ms, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
		ON CONFLICT (idem_key) DO NOTHING
		RETURNING id`,
		r.UserID, r.Nickname, r.Model, r.InputTokens, r.OutputTokens, r.CachedTokens, r.ReasoningTokens,
		r.Cost, r.BalanceAfter, r.Source, r.Status, r.Estimated, r.Purpose, r.ChatID, r.MessageID,
		nullKey(r.Key), r.DurationMS, r.CreatedAt, r.ExpiresAt).Scan(&r.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return errRace
	}
	return err
}

func balanceOf(ctx context.Context, q pgx.Tx, userID string) (money.Amount, error) {
	var bal money.Amount
	err := q.QueryRow(ctx, `SELECT balance FROM users WHERE id = $1`, userID).Scan(&bal)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	return bal, err
}

// SetBalance sets a balance and records the change.
func (s *Store) SetBalance(ctx context.Context, userID string, balance money.Amount, actor, reason string) (store.BalanceChange, error) {
	return s.changeBalance(ctx, userID, actor, reason, func(money.Amount) (money.Amount, error) {
		return balance, nil
	})
}

// AdjustBalance adds delta to a balance and records the change.
func (s *Store) AdjustBalance(ctx context.Context, userID string, delta money.Amount, actor, reason string) (store.BalanceChange, error) {
	return s.changeBalance(ctx, userID, actor, reason, func(old money.Amount) (money.Amount, error) {
		if (delta > 0 && old > math.MaxInt64-delta) || (delta < 0 && old < math.MinInt64-delta) {
			return 0, store.BalanceRangeError(old, -delta)
		}
		return old + delta, nil
	})
}

func (s *Store) changeBalance(ctx context.Context, userID, actor, reason string,
	next func(old money.Amount) (money.Amount, error)) (store.BalanceChange, error) {
	return retry(ctx, func() (store.BalanceChange, error) {
		c := store.BalanceChange{UserID: userID, Actor: actor, Reason: reason, CreatedAt: now()}
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return c, err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

		err = tx.QueryRow(ctx, `SELECT balance FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&c.OldBalance)
		if errors.Is(err, pgx.ErrNoRows) {
			return c, store.ErrNotFound
		}
		if err != nil {
			return c, err
		}
		if c.NewBalance, err = next(c.OldBalance); err != nil {
			return c, err
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET balance = $2, updated_at = $3 WHERE id = $1`,
			userID, c.NewBalance, c.CreatedAt); err != nil {
			return c, err
		}
		err = tx.QueryRow(ctx, `
			INSERT INTO balance_changes (user_id, actor, reason, old_balance, new_balance, created_at)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			userID, actor, reason, c.OldBalance, c.NewBalance, c.CreatedAt).Scan(&c.ID)
		if err != nil {
			return c, err
		}
		return c, tx.Commit(ctx)
	})
}

// SetBlocked blocks or unblocks a user.
func (s *Store) SetBlocked(ctx context.Context, userID string, blocked bool) error {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET deleted = $2, updated_at = $3 WHERE id = $1`,
		userID, blocked, now())
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

const priceCols = `id, name, base_model_id, input_price, output_price, per_msg_price, priced, updated_at`

func scanPrice(row pgx.Row) (store.ModelPrice, error) {
	var p store.ModelPrice
	err := row.Scan(&p.ID, &p.Name, &p.BaseModelID, &p.Input, &p.Output, &p.PerMessage, &p.Priced, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, store.ErrNotFound
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, err
}

// ModelPrice returns a model's price row, or store.ErrNotFound.
func (s *Store) ModelPrice(ctx context.Context, id string) (store.ModelPrice, error) {
	return scanPrice(s.pool.QueryRow(ctx, `SELECT `+priceCols+` FROM model_prices WHERE id = $1`, id))
}

// PutModelPrice stores an admin's price.
func (s *Store) PutModelPrice(ctx context.Context, p store.ModelPrice) (store.ModelPrice, error) {
	if p.ID == "" {
		return store.ModelPrice{}, errors.New("postgres: model price without an id")
	}
	return scanPrice(s.pool.QueryRow(ctx, `
		INSERT INTO model_prices (id, name, base_model_id, input_price, output_price, per_msg_price, priced,
			created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7)
		ON CONFLICT (id) DO UPDATE SET
			name = excluded.name, base_model_id = excluded.base_model_id,
			input_price = excluded.input_price, output_price = excluded.output_price,
			per_msg_price = excluded.per_msg_price, priced = TRUE, updated_at = excluded.updated_at
		RETURNING `+priceCols,
		p.ID, p.Name, p.BaseModelID, p.Input, p.Output, p.PerMessage, now()))
}

// RecordModel notes a model seen in traffic; an existing row is left alone.
func (s *Store) RecordModel(ctx context.Context, id, name, baseModelID string) error {
	if id == "" {
		return errors.New("postgres: model without an id")
	}
	t := now()
	_, err := s.pool.Exec(ctx, `
		INSERT INTO model_prices (id, name, base_model_id, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $4)
		ON CONFLICT (id) DO NOTHING`, id, name, baseModelID, t)
	return err
}

// Ledger sums one user's ledger in one snapshot. SUM of a BIGINT is a
// NUMERIC: a sum beyond the int64 range saturates at its end (clamp).
func (s *Store) Ledger(ctx context.Context, userID string) (store.Ledger, error) {
	var l store.Ledger
	err := s.pool.QueryRow(ctx, `
		SELECT u.initial_balance, u.balance,
			(SELECT `+clamp(`COALESCE(SUM(new_balance::NUMERIC - old_balance), 0)`)+` FROM balance_changes WHERE user_id = u.id),
			(SELECT `+clamp(`COALESCE(SUM(cost), 0)`)+` FROM usage_records WHERE user_id = u.id),
			(SELECT COUNT(*) FROM usage_records WHERE user_id = u.id)
		FROM users u WHERE u.id = $1`, userID).
		Scan(&l.Initial, &l.Balance, &l.Adjustments, &l.Charges, &l.Records)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, store.ErrNotFound
	}
	return l, err
}

// clamp is SQL giving a NUMERIC expression (a SUM of BIGINTs) as a BIGINT,
// saturated at the ends of the range rather than failing beyond them.
func clamp(expr string) string {
	return `LEAST(GREATEST(` + expr + `, -9223372036854775808), 9223372036854775807)::BIGINT`
}

// RecordByKey returns the record with an idempotency key, or store.ErrNotFound.
func (s *Store) RecordByKey(ctx context.Context, key string) (store.Record, error) {
	if key == "" {
		return store.Record{}, store.ErrNotFound
	}
	return scanRecord(s.pool.QueryRow(ctx, `SELECT `+recordCols+` FROM usage_records WHERE idem_key = $1`, key))
}

// MessageUsage sums what one path recorded for a message.
func (s *Store) MessageUsage(ctx context.Context, source, chatID, messageID string) (store.MessageUsage, error) {
	var (
		u    store.MessageUsage
		cost int64
	)
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*), COALESCE(MAX(model), ''), `+clamp(`COALESCE(SUM(input_tokens), 0)`)+`,
			`+clamp(`COALESCE(SUM(output_tokens), 0)`)+`, `+clamp(`COALESCE(SUM(cached_tokens), 0)`)+`,
			`+clamp(`COALESCE(SUM(reasoning_tokens), 0)`)+`, `+clamp(`COALESCE(SUM(cost), 0)`)+`
		FROM usage_records
		WHERE message_id = $1 AND message_id <> '' AND chat_id = $2 AND source = $3
			AND status NOT IN ('failed', 'expired')`, messageID, chatID, source).
		Scan(&u.Records, &u.Model, &u.InputTokens, &u.OutputTokens, &u.CachedTokens, &u.ReasoningTokens, &cost)
	u.Cost = money.Amount(cost)
	return u, err
}

// ReleaseHold removes a pending record and gives its cost back.
func (s *Store) ReleaseHold(ctx context.Context, key string) (bool, error) {
	if key == "" {
		return false, nil
	}
	return retry(ctx, func() (bool, error) {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return false, err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		var user string
		var cost int64
		err = tx.QueryRow(ctx, `DELETE FROM usage_records WHERE idem_key = $1 AND status = 'pending'
			RETURNING user_id, cost`, key).Scan(&user, &cost)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if cost == math.MinInt64 {
			return false, store.BalanceRangeError(0, money.Min)
		}
		if _, err := take(ctx, tx, user, money.Amount(-cost)); err != nil {
			return false, err
		}
		return true, tx.Commit(ctx)
	})
}

// ExpiredHolds lists pending records whose hold has lapsed.
func (s *Store) ExpiredHolds(ctx context.Context, at time.Time, limit int) ([]store.Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+recordCols+` FROM usage_records
		WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1
		ORDER BY expires_at LIMIT $2`, at, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
