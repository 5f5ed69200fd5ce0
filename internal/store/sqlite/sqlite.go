// Package sqlite is the embedded SQLite store (modernc.org/sqlite, no cgo),
// the default when no PostgreSQL is configured.
//
// Writes go through one connection in WAL mode and every transaction begins
// IMMEDIATE, so writers are serialised: a read-then-write transaction never
// meets SQLITE_BUSY on a lock upgrade, and no idempotency-key race can
// happen inside one process (other processes wait on busy_timeout). Reads
// that are not part of a write use a separate pool of read-only connections,
// which WAL lets run beside the writer.
//
// Times are stored as INTEGER unix milliseconds (UTC), money as INTEGER
// nano-units, booleans as 0/1.
//
// The postgres package implements the same statements in the same order;
// keep the two alike.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/migrations"
)

const (
	commonPragmas = "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
	writerParams = commonPragmas + "&_txlock=immediate"
	readerParams = commonPragmas + "&_query_only=1"
)

// Store is the SQLite implementation of store.Store.
type Store struct {
	w *sql.DB // the single writer connection
	r *sql.DB // read-only connections for reads outside write transactions

	// ops feeds the one goroutine that writes. database/sql would hand the
	// writer connection to a random waiter, which under load left some
	// writes waiting far longer than others; blocked channel senders are
	// served first come, first served.
	ops        chan *writeOp
	closed     chan struct{}
	closeOnce  sync.Once
	writerDone chan struct{}

	stmts     sync.Map // SQL text → *sql.Stmt prepared on the writer
	readStmts sync.Map // SQL text → *sql.Stmt prepared on the readers
	missed    []string // statements to prepare once the writer is free; writer goroutine only
}

var _ store.Store = (*Store)(nil)

// Open opens (creating it and its parent directories if needed) the database
// file at path and brings its schema up to date. The path ":memory:" gives a
// private in-memory database on a single connection, for tests.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	memory := path == ":memory:"
	if !memory {
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("sqlite: %w", err)
			}
		}
	}
	w, err := sql.Open("sqlite", path+"?"+writerParams)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	s := &Store{w: w, r: w, ops: make(chan *writeOp), closed: make(chan struct{}), writerDone: make(chan struct{})}
	if !memory {
		r, err := sql.Open("sqlite", path+"?"+readerParams)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		n := max(4, runtime.NumCPU())
		r.SetMaxOpenConns(n)
		r.SetMaxIdleConns(n)
		if err := r.PingContext(ctx); err != nil {
			r.Close()
			w.Close()
			return nil, fmt.Errorf("sqlite: open %s for reading: %w", path, err)
		}
		s.r = r
	}
	go s.writer()
	return s, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	// The provider is not closed: that would close db.
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrations.SQLite, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// Kind returns "sqlite".
func (s *Store) Kind() string { return "sqlite" }

// DB returns the pool of read-only connections, for queries the Store
// interface does not cover (reports).
func (s *Store) DB() *sql.DB { return s.r }

// Close closes the connections.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	<-s.writerDone // the batch under way finishes first
	var err error
	if s.r != s.w {
		err = s.r.Close()
	}
	for _, m := range []*sync.Map{&s.stmts, &s.readStmts} {
		m.Range(func(_, st any) bool {
			st.(*sql.Stmt).Close()
			return true
		})
	}
	return errors.Join(err, s.w.Close())
}

// now is the store's clock, at the column's precision.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func stamp(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return t.UTC().Truncate(time.Millisecond)
}

func stampPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC().Truncate(time.Millisecond)
	return &v
}

// ms is a time as stored: unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

func msPtr(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// nullKey stores an empty idempotency key as NULL.
func nullKey(k string) *string {
	if k == "" {
		return nil
	}
	return &k
}

// errRace means an insert lost the race for its idempotency key.
var errRace = errors.New("sqlite: lost the race for an idempotency key")

// writeOp is one write waiting for the writer.
type writeOp struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx wtx) error
	done chan error
}

// maxBatch bounds how many writes share one transaction.
const maxBatch = 64

// errClosed reports a write after Close.
var errClosed = errors.New("sqlite: store closed")

// write runs fn in a write transaction and returns its result once that
// transaction has committed. Writes that wait at the same time share one
// transaction (group commit), each inside its own savepoint, so one
// failing write undoes only itself: under load the WAL is written once per
// batch instead of once per write. Waiting writes are served in arrival
// order.
func write[T any](ctx context.Context, s *Store, fn func(ctx context.Context, tx wtx) (T, error)) (T, error) {
	var v T
	op := &writeOp{ctx: ctx, done: make(chan error, 1)}
	op.fn = func(ctx context.Context, tx wtx) error {
		var err error
		v, err = fn(ctx, tx)
		return err
	}
	select {
	case s.ops <- op:
	case <-ctx.Done():
		return v, ctx.Err()
	case <-s.closed:
		return v, errClosed
	}
	err := <-op.done
	return v, err
}

// writer runs the writes, batch by batch, until the store closes.
func (s *Store) writer() {
	defer close(s.writerDone)
	batch := make([]*writeOp, 0, maxBatch)
	for {
		select {
		case <-s.closed:
			return
		case op := <-s.ops:
			batch = append(batch[:0], op)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case op := <-s.ops:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		s.runBatch(batch)
	}
}

func (s *Store) runBatch(batch []*writeOp) {
	ctx := context.Background()
	errs := make([]error, len(batch))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		for _, op := range batch {
			op.done <- err
		}
		return
	}
	t := wtx{tx, s}
	committed := 0
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			errs[i] = err // gave up waiting: never started
			continue
		}
		// Once started, a write finishes: money must not move halfway.
		opCtx := context.WithoutCancel(op.ctx)
		if _, err := t.ExecContext(ctx, "SAVEPOINT write"); err != nil {
			errs[i] = err
			continue
		}
		if errs[i] = op.fn(opCtx, t); errs[i] != nil {
			if _, rerr := t.ExecContext(ctx, "ROLLBACK TO write"); rerr != nil {
				// The failed write's changes cannot be undone alone (a
				// balance without its record): undo the whole batch.
				_ = tx.Rollback()
				abort := fmt.Errorf("sqlite: undoing a failed write: %w", rerr)
				s.prepareMissed(ctx)
				for j, op := range batch {
					if errs[j] == nil {
						errs[j] = abort
					}
					op.done <- errs[j]
				}
				return
			}
		} else {
			committed++
		}
		_, _ = t.ExecContext(ctx, "RELEASE write")
	}
	if committed == 0 {
		err = tx.Rollback()
	} else {
		err = tx.Commit()
	}
	s.prepareMissed(ctx)
	for i, op := range batch {
		if errs[i] == nil && err != nil {
			errs[i] = err
		}
		op.done <- errs[i]
	}
}

// wtx is a write transaction whose statements are prepared once per
// store: parsing SQL was a fifth of a charge's CPU time.
type wtx struct {
	*sql.Tx
	s *Store
}

// prepared returns the writer's prepared statement for query, or nil the
// first time: the writer's only connection is busy with the transaction
// then, so the statement is prepared after it (prepareMissed).
func (s *Store) prepared(query string) *sql.Stmt {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt)
	}
	s.missed = append(s.missed, query) // guarded by the gate
	return nil
}

// prepareMissed prepares the statements transactions ran unprepared. It
// runs in the writer's turn, with no transaction open.
func (s *Store) prepareMissed(ctx context.Context) {
	for _, q := range s.missed {
		if _, ok := s.stmts.Load(q); ok {
			continue
		}
		if st, err := s.w.PrepareContext(ctx, q); err == nil {
			s.stmts.Store(q, st)
		}
	}
	s.missed = s.missed[:0]
}

// read runs a hot one-row query on the readers, prepared once per store
// (database/sql prepares it again on each reader connection as needed).
func (s *Store) read(ctx context.Context, query string, args ...any) *sql.Row {
	if st, ok := s.readStmts.Load(query); ok {
		return st.(*sql.Stmt).QueryRowContext(ctx, args...)
	}
	st, err := s.r.PrepareContext(ctx, query)
	if err != nil {
		return s.r.QueryRowContext(ctx, query, args...) // reports the error
	}
	if prev, loaded := s.readStmts.LoadOrStore(query, st); loaded {
		st.Close()
		st = prev.(*sql.Stmt)
	}
	return st.QueryRowContext(ctx, args...)
}

func (t wtx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.s.prepared(query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

func (t wtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.s.prepared(query); st != nil {
		return t.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

// querier is a *sql.DB or a transaction.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

const userCols = `id, email, name, role, balance, initial_balance, deleted, created_at, updated_at`

func scanUser(row scanner) (store.User, error) {
	var (
		u                store.User
		created, updated int64
		balance, initial int64
	)
	err := row.Scan(&u.ID, &u.Email, &u.Name, &u.Role, &balance, &initial, &u.Blocked, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return u, store.ErrNotFound
	}
	u.Balance, u.InitialBalance = money.Amount(balance), money.Amount(initial)
	u.CreatedAt, u.UpdatedAt = fromMS(created), fromMS(updated)
	return u, err
}

const recordCols = `id, user_id, nickname, model, input_tokens, output_tokens, cached_tokens,
	reasoning_tokens, cost, balance_after, source, status, estimated, purpose, chat_id, message_id,
	COALESCE(idem_key, ''), duration_ms, created_at, expires_at`

func scanRecord(row scanner) (store.Record, error) {
	var (
		r                  store.Record
		cost, balanceAfter int64
		created            int64
		expires            sql.NullInt64
	)
	err := row.Scan(&r.ID, &r.UserID, &r.Nickname, &r.Model, &r.InputTokens, &r.OutputTokens,
		&r.CachedTokens, &r.ReasoningTokens, &cost, &balanceAfter, &r.Source, &r.Status,
		&r.Estimated, &r.Purpose, &r.ChatID, &r.MessageID, &r.Key, &r.DurationMS, &created,
		&expires)
	if errors.Is(err, sql.ErrNoRows) {
		return r, store.ErrNotFound
	}
	r.Cost, r.BalanceAfter = money.Amount(cost), money.Amount(balanceAfter)
	r.CreatedAt = fromMS(created)
	if expires.Valid {
		t := fromMS(expires.Int64)
		r.ExpiresAt = &t
	}
	return r, err
}

// UpsertUser creates the user with balance initial, or refreshes the email,
// name and role of an existing one. An empty field leaves the stored value
// as it is; a new user with no role gets "user".
func (s *Store) UpsertUser(ctx context.Context, u store.UserInfo, initial money.Amount) (store.User, error) {
	if u.ID == "" {
		return store.User{}, errors.New("sqlite: user without an id")
	}
	return write(ctx, s, func(ctx context.Context, tx wtx) (store.User, error) {
		return upsertUser(ctx, tx, u, initial)
	})
}

func upsertUser(ctx context.Context, tx wtx, u store.UserInfo, initial money.Amount) (store.User, error) {
	return scanUser(tx.QueryRowContext(ctx, `
		INSERT INTO users (id, email, name, role, balance, initial_balance, created_at, updated_at)
		VALUES ($1, $2, $3, COALESCE(NULLIF($4, ''), 'user'), $5, $5, $6, $6)
		ON CONFLICT (id) DO UPDATE SET
			email = COALESCE(NULLIF($2, ''), users.email),
			name = COALESCE(NULLIF($3, ''), users.name),
			role = COALESCE(NULLIF($4, ''), users.role),
			updated_at = $6
		RETURNING `+userCols,
		u.ID, u.Email, u.Name, u.Role, int64(initial), ms(now())))
}

// User returns one user, or store.ErrNotFound.
func (s *Store) User(ctx context.Context, id string) (store.User, error) {
	return scanUser(s.read(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
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
	return "", fmt.Errorf("sqlite: unknown reserve rule %d", rule)
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
	return write(ctx, s, func(ctx context.Context, tx wtx) (store.ReserveResult, error) {
		return reserve(ctx, tx, rec, r.Rule, cond)
	})
}

func reserve(ctx context.Context, tx wtx, rec store.Record, rule store.ReserveRule, cond string) (res store.ReserveResult, err error) {
	// 1. A record with the key already exists: nothing to do.
	if rec.Key != "" {
		old, err := scanRecord(tx.QueryRowContext(ctx, `SELECT `+recordCols+` FROM usage_records WHERE idem_key = $1`, rec.Key))
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
	var bal int64
	lo, hi := store.SubRange(int64(rec.Cost))
	err = tx.QueryRowContext(ctx, `UPDATE users SET balance = balance - $2, updated_at = $3
		WHERE id = $1 AND NOT deleted AND (`+cond+`) AND balance BETWEEN $4 AND $5 RETURNING balance`,
		rec.UserID, int64(rec.Cost), ms(now()), lo, hi).Scan(&bal)
	if errors.Is(err, sql.ErrNoRows) {
		var cur int64
		err = tx.QueryRowContext(ctx, `SELECT deleted, balance FROM users WHERE id = $1`, rec.UserID).
			Scan(&res.Blocked, &cur)
		res.Balance = money.Amount(cur)
		if errors.Is(err, sql.ErrNoRows) {
			return res, store.ErrNotFound
		}
		if err == nil && !res.Blocked && rule.Allows(res.Balance, rec.Cost) && (cur < lo || cur > hi) {
			return res, store.BalanceRangeError(res.Balance, rec.Cost)
		}
		return res, err
	}
	if err != nil {
		return res, err
	}

	// 3. Write the pending record.
	rec.BalanceAfter = money.Amount(bal)
	if err := insertRecord(ctx, tx, &rec); err != nil {
		return res, err
	}
	return store.ReserveResult{Placed: true, Record: rec, Balance: money.Amount(bal)}, nil
}

// Charge writes a final record and takes its cost, completing a pending
// record with the same key in place.
func (s *Store) Charge(ctx context.Context, r store.Record) (store.ChargeResult, error) {
	switch r.Status {
	case "":
		r.Status = store.StatusCompleted
	case store.StatusPending:
		return store.ChargeResult{}, errors.New("sqlite: Charge of a pending record (use Reserve)")
	}
	r.ID = 0
	r.CreatedAt = stamp(r.CreatedAt)
	r.ExpiresAt = nil
	return write(ctx, s, func(ctx context.Context, tx wtx) (store.ChargeResult, error) {
		return charge(ctx, tx, r)
	})
}

func charge(ctx context.Context, tx wtx, r store.Record) (res store.ChargeResult, err error) {
	// 1. A record with the key: complete it if pending, else a duplicate.
	// (BEGIN IMMEDIATE already holds the write lock: no FOR UPDATE needed.)
	if r.Key != "" {
		old, err := scanRecord(tx.QueryRowContext(ctx,
			`SELECT `+recordCols+` FROM usage_records WHERE idem_key = $1`, r.Key))
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
				return res, fmt.Errorf("sqlite: key %q is held for user %q, not %q", r.Key, old.UserID, r.UserID)
			}
			delta, ok := r.Cost.SubChecked(old.Cost)
			if !ok {
				return res, fmt.Errorf("sqlite: cost %s less the %s held: %w", r.Cost, old.Cost, store.ErrOutOfRange)
			}
			bal, err := take(ctx, tx, old.UserID, delta)
			if err != nil {
				return res, err
			}
			rec, err := scanRecord(tx.QueryRowContext(ctx, `
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
				err = replaceDaily(ctx, tx, contributionOf(old), contributionOf(rec))
			} else {
				err = addDaily(ctx, tx, contributionOf(rec))
			}
			if err != nil {
				return res, err
			}
			return store.ChargeResult{Record: rec, Held: old.Cost, Balance: money.Amount(bal)}, nil
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
	r.BalanceAfter = money.Amount(bal)
	if err := insertRecord(ctx, tx, &r); err != nil {
		return res, err
	}
	if err := addDaily(ctx, tx, contributionOf(r)); err != nil {
		return res, err
	}
	return store.ChargeResult{Record: r, Balance: money.Amount(bal)}, nil
}

// take subtracts delta (negative: gives it back) from a user's balance and
// returns the new balance: store.ErrNotFound when there is no such user,
// store.ErrOutOfRange, changing nothing, when the result would not fit in
// an int64 (SQLite would silently make it a REAL).
func take(ctx context.Context, tx wtx, userID string, delta money.Amount) (int64, error) {
	lo, hi := store.SubRange(int64(delta))
	var bal int64
	err := tx.QueryRowContext(ctx, `UPDATE users SET balance = balance - $2, updated_at = $3
		WHERE id = $1 AND balance BETWEEN $4 AND $5 RETURNING balance`,
		userID, int64(delta), ms(now()), lo, hi).Scan(&bal)
	if errors.Is(err, sql.ErrNoRows) {
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
func insertRecord(ctx context.Context, tx wtx, r *store.Record) error {
	err := tx.QueryRowContext(ctx, `
		INSERT INTO usage_records (user_id, nickname, model, input_tokens, output_tokens, cached_tokens,
			reasoning_tokens, cost, balance_after, source, status, estimated, purpose, chat_id, message_id,
			idem_key, duration_ms, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
		ON CONFLICT (idem_key) DO NOTHING
		RETURNING id`,
		r.UserID, r.Nickname, r.Model, r.InputTokens, r.OutputTokens, r.CachedTokens, r.ReasoningTokens,
		int64(r.Cost), int64(r.BalanceAfter), r.Source, r.Status, r.Estimated, r.Purpose, r.ChatID, r.MessageID,
		nullKey(r.Key), r.DurationMS, ms(r.CreatedAt), msPtr(r.ExpiresAt)).Scan(&r.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return errRace
	}
	return err
}

func balanceOf(ctx context.Context, q querier, userID string) (money.Amount, error) {
	var bal int64
	err := q.QueryRowContext(ctx, `SELECT balance FROM users WHERE id = $1`, userID).Scan(&bal)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	return money.Amount(bal), err
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
	return write(ctx, s, func(ctx context.Context, tx wtx) (store.BalanceChange, error) {
		c := store.BalanceChange{UserID: userID, Actor: actor, Reason: reason, CreatedAt: now()}
		var old int64
		err := tx.QueryRowContext(ctx, `SELECT balance FROM users WHERE id = $1`, userID).Scan(&old)
		if errors.Is(err, sql.ErrNoRows) {
			return c, store.ErrNotFound
		}
		if err != nil {
			return c, err
		}
		c.OldBalance = money.Amount(old)
		if c.NewBalance, err = next(c.OldBalance); err != nil {
			return c, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET balance = $2, updated_at = $3 WHERE id = $1`,
			userID, int64(c.NewBalance), ms(c.CreatedAt)); err != nil {
			return c, err
		}
		err = tx.QueryRowContext(ctx, `
			INSERT INTO balance_changes (user_id, actor, reason, old_balance, new_balance, created_at)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			userID, actor, reason, int64(c.OldBalance), int64(c.NewBalance), ms(c.CreatedAt)).Scan(&c.ID)
		return c, err
	})
}

// SetBlocked blocks or unblocks a user.
func (s *Store) SetBlocked(ctx context.Context, userID string, blocked bool) error {
	res, err := s.w.ExecContext(ctx, `UPDATE users SET deleted = $2, updated_at = $3 WHERE id = $1`,
		userID, blocked, ms(now()))
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

const priceCols = `id, name, base_model_id, input_price, output_price, per_msg_price, priced, updated_at`

func scanPrice(row scanner) (store.ModelPrice, error) {
	var (
		p               store.ModelPrice
		in, out, perMsg int64
		updated         int64
	)
	err := row.Scan(&p.ID, &p.Name, &p.BaseModelID, &in, &out, &perMsg, &p.Priced, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return p, store.ErrNotFound
	}
	p.Input, p.Output, p.PerMessage = money.Amount(in), money.Amount(out), money.Amount(perMsg)
	p.UpdatedAt = fromMS(updated)
	return p, err
}

// ModelPrice returns a model's price row, or store.ErrNotFound.
func (s *Store) ModelPrice(ctx context.Context, id string) (store.ModelPrice, error) {
	return scanPrice(s.read(ctx, `SELECT `+priceCols+` FROM model_prices WHERE id = $1`, id))
}

// PutModelPrice stores an admin's price.
func (s *Store) PutModelPrice(ctx context.Context, p store.ModelPrice) (store.ModelPrice, error) {
	if p.ID == "" {
		return store.ModelPrice{}, errors.New("sqlite: model price without an id")
	}
	return scanPrice(s.w.QueryRowContext(ctx, `
		INSERT INTO model_prices (id, name, base_model_id, input_price, output_price, per_msg_price, priced,
			created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7)
		ON CONFLICT (id) DO UPDATE SET
			name = excluded.name, base_model_id = excluded.base_model_id,
			input_price = excluded.input_price, output_price = excluded.output_price,
			per_msg_price = excluded.per_msg_price, priced = TRUE, updated_at = excluded.updated_at
		RETURNING `+priceCols,
		p.ID, p.Name, p.BaseModelID, int64(p.Input), int64(p.Output), int64(p.PerMessage), ms(now())))
}

// RecordModel notes a model seen in traffic; an existing row is left alone.
func (s *Store) RecordModel(ctx context.Context, id, name, baseModelID string) error {
	if id == "" {
		return errors.New("sqlite: model without an id")
	}
	t := ms(now())
	_, err := s.w.ExecContext(ctx, `
		INSERT INTO model_prices (id, name, base_model_id, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $4)
		ON CONFLICT (id) DO NOTHING`, id, name, baseModelID, t)
	return err
}

// Ledger sums one user's ledger in one snapshot (one statement). The sums
// are split (safeSum), so none overflows; a total beyond an int64
// saturates.
func (s *Store) Ledger(ctx context.Context, userID string) (store.Ledger, error) {
	var (
		l                                store.Ledger
		initial, balance                 int64
		newHi, newLo, oldHi, oldLo, c, d int64
	)
	err := s.r.QueryRowContext(ctx, `
		SELECT u.initial_balance, u.balance, a.*, r.*
		FROM users u,
			(SELECT `+safeSum("new_balance")+`, `+safeSum("old_balance")+` FROM balance_changes WHERE user_id = $1) a,
			(SELECT `+safeSum("cost")+`, COUNT(*) FROM usage_records WHERE user_id = $1) r
		WHERE u.id = $1`, userID).
		Scan(&initial, &balance, &newHi, &newLo, &oldHi, &oldLo, &c, &d, &l.Records)
	if errors.Is(err, sql.ErrNoRows) {
		return l, store.ErrNotFound
	}
	l.Initial, l.Balance = money.Amount(initial), money.Amount(balance)
	l.Adjustments = money.Amount(store.JoinSum(newHi-oldHi, newLo-oldLo))
	l.Charges = money.Amount(store.JoinSum(c, d))
	return l, err
}

// safeSum sums an INTEGER column as two columns, the sums of its high and
// of its low 32 bits, which store.JoinSum puts back together: SQLite's SUM
// fails with "integer overflow" once a sum leaves the int64 range, and
// these two cannot (below 2^31 rows).
func safeSum(col string) string {
	return `COALESCE(SUM(` + col + ` >> 32), 0), COALESCE(SUM(` + col + ` & 4294967295), 0)`
}

// RecordByKey returns the record with an idempotency key, or store.ErrNotFound.
func (s *Store) RecordByKey(ctx context.Context, key string) (store.Record, error) {
	if key == "" {
		return store.Record{}, store.ErrNotFound
	}
	return scanRecord(s.read(ctx, `SELECT `+recordCols+` FROM usage_records WHERE idem_key = $1`, key))
}

// MessageUsage sums what one path recorded for a message.
func (s *Store) MessageUsage(ctx context.Context, source, chatID, messageID string) (store.MessageUsage, error) {
	var (
		u     store.MessageUsage
		parts [10]int64
	)
	err := s.read(ctx, `SELECT COUNT(*), COALESCE(MAX(model), ''), `+safeSum("input_tokens")+`,
			`+safeSum("output_tokens")+`, `+safeSum("cached_tokens")+`,
			`+safeSum("reasoning_tokens")+`, `+safeSum("cost")+`
		FROM usage_records
		WHERE message_id = $1 AND message_id <> '' AND chat_id = $2 AND source = $3
			AND status NOT IN ('failed', 'expired')`, messageID, chatID, source).
		Scan(&u.Records, &u.Model, &parts[0], &parts[1], &parts[2], &parts[3], &parts[4], &parts[5],
			&parts[6], &parts[7], &parts[8], &parts[9])
	u.InputTokens, u.OutputTokens = store.JoinSum(parts[0], parts[1]), store.JoinSum(parts[2], parts[3])
	u.CachedTokens, u.ReasoningTokens = store.JoinSum(parts[4], parts[5]), store.JoinSum(parts[6], parts[7])
	u.Cost = money.Amount(store.JoinSum(parts[8], parts[9]))
	return u, err
}

// ReleaseHold removes a pending record and gives its cost back.
func (s *Store) ReleaseHold(ctx context.Context, key string) (bool, error) {
	if key == "" {
		return false, nil
	}
	return write(ctx, s, func(ctx context.Context, tx wtx) (bool, error) {
		var user string
		var cost int64
		err := tx.QueryRowContext(ctx, `DELETE FROM usage_records WHERE idem_key = $1 AND status = 'pending'
			RETURNING user_id, cost`, key).Scan(&user, &cost)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if cost == math.MinInt64 {
			return false, store.BalanceRangeError(0, money.Min)
		}
		_, err = take(ctx, tx, user, money.Amount(-cost))
		return err == nil, err
	})
}

// ExpiredHolds lists pending records whose hold has lapsed.
func (s *Store) ExpiredHolds(ctx context.Context, at time.Time, limit int) ([]store.Record, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+recordCols+` FROM usage_records
		WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1
		ORDER BY expires_at LIMIT $2`, ms(at), limit)
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
