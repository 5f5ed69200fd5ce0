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
// This package owns opening the file (pragmas, the writer and the reader
// pools, migrations), the single writer with its group commit and
// savepoints, and statement caching; the SQL of every Store method but
// UsageBetween is package sqlstore's, in SQLite's dialect (store.go).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlstore"
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
	sqlstore.Store // the shared SQL, on backend{s}

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
	s.Store = sqlstore.Store{D: dialect, B: backend{s}}
	go s.writer()
	return s, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	return sqlstore.Migrate(ctx, "sqlite", goose.DialectSQLite3, db, migrations.SQLite)
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

func (t wtx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.s.prepared(query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t wtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.s.prepared(query); st != nil {
		return t.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}
