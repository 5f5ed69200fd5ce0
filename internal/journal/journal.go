// Package journal is a durable, local, append-only journal of opaque
// payloads kept per idempotency key.
//
// It exists so that nothing worth money is lost between the moment it is
// known and the moment it reaches the database: a call in flight is
// recorded with Begin (and its output so far with Progress) so that, after
// a crash, each answer that was streaming can still be charged for what it
// had produced; a settlement that could not yet be written to the database
// is recorded with Settle. Done forgets a key once it has been dealt with.
// The package knows nothing about money: payloads are JSON documents chosen
// by the caller.
//
// # File format
//
// The journal is one text file, one record per line:
//
//	<crc> <json>\n
//
// where <crc> is the CRC-32C (Castagnoli) of the JSON bytes as 8 lowercase
// hex digits and <json> is a compact JSON object with the fields
// "op" (begin, progress, settle, done or rekey), "key", "new" (rekey: the
// new key), "seq" (begin and settle: the order of the key's first
// appearance), "call" (begin) and "settlement" (settle) holding the
// caller's JSON payload verbatim (compacted), and "out" (progress). Replaying
// the records in order rebuilds the live state. A compacted file holds, per
// live key in Seq order, the begin, settle and progress records that
// reproduce its state.
//
// On Open a torn last record (the process died mid-write) is ignored with a
// warning; a corrupt record followed by others stops the replay there with
// an error log (what precedes is kept, and a copy of the damaged file is
// kept next to it as path.corrupt-<time>). The file is then compacted:
// written to path.tmp, fsynced, renamed over path, and the directory fsynced.
//
// # Durability
//
// Settle returns only once its record is written and fsynced (group
// commit: one writer goroutine writes and fsyncs everything pending at
// once, so concurrent callers share one fsync). Begin returns once its
// record is written to the file (it then survives the process being
// killed) and is fsynced with the next Settle or within SyncEvery: a call
// in flight is on the hot path of every model call, and what a power loss
// could take from it is the first SyncEvery of its answer. Progress, Done
// and Rekey are not waited for; they reach the disk at the latest about
// SyncEvery later (or with the next durable record). After a crash a Done may thus be
// lost and the key come back as recovered: consumers must be idempotent per
// key.
//
// The in-memory state always changes, even when the file cannot be written:
// a settlement is never lost while the process lives. When a write or fsync
// fails (disk full, I/O error) the error is returned to the durable callers
// of that batch and reported by Err; the writer then retries every
// SyncEvery by rewriting the whole live state (a compaction), since the
// failed append may have left a partial record, and Err returns nil again
// once that succeeds.
//
// A journal file is owned by one process at a time (flock on path.lock);
// each instance needs its own journal.
package journal

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// ErrLocked is returned (wrapped) by Open when another process has the
// journal open.
var ErrLocked = errors.New("journal: locked by another process")

// ErrInvalidPayload is returned (wrapped) by Begin and Settle when the
// payload is not valid JSON.
var ErrInvalidPayload = errors.New("journal: payload is not valid JSON")

// ErrInvalidKey is returned (wrapped) by Begin and Settle when the key is
// empty or not valid UTF-8 (it could not be stored faithfully in JSON).
var ErrInvalidKey = errors.New("journal: key must be non-empty valid UTF-8")

// ErrClosed is returned by Begin and Settle after Close (the in-memory state
// still changes, but nothing is written any more), and by Err.
var ErrClosed = errors.New("journal: closed")

const (
	defaultSyncEvery = 200 * time.Millisecond
	defaultCompactAt = 16 << 20
)

// Options configure a journal.
type Options struct {
	Logger    *slog.Logger  // nil: slog.Default()
	SyncEvery time.Duration // how soon writes nobody waits for reach the file and are fsynced; default 200ms
	CompactAt int64         // file size in bytes beyond which the file is rewritten with live entries only; default 16 MiB
}

// Entry is the live state of one key.
type Entry struct {
	Key        string
	Seq        uint64 // order of the key's first appearance (stable across Open/compaction)
	Call       []byte // payload given to Begin; nil if none
	Output     int64  // the last Progress value
	Settlement []byte // payload given to Settle; nil if none
	Recovered  bool   // the entry was live when the journal was opened (left by an earlier process)
}

// Stats describe a journal.
type Stats struct {
	Live        int   // live keys
	Settlements int   // live keys with a settlement (waiting to be written to the database)
	Recovered   int   // live keys left by an earlier process
	Bytes       int64 // current file size
	Writable    bool  // Err() == nil
}

// Journal is an open journal. Its methods are safe for concurrent use.
type Journal struct {
	path      string
	log       *slog.Logger
	syncEvery time.Duration
	compactAt int64
	lockFile  *os.File

	// f is owned by the writer goroutine (and by Open/Close around it).
	f     *os.File
	spare []byte // writer-owned second buffer, swapped with buf

	kick chan struct{} // a durable caller is waiting
	stop chan struct{}
	done chan struct{}

	closeOnce sync.Once
	closeErr  error

	syncs atomic.Int64 // fsyncs done, for the benchmark

	mu      sync.Mutex
	st      state
	buf     []byte           // encoded records not yet handed to the writer
	pending map[string]int64 // coalesced Progress not yet encoded into buf
	cur     *batch           // durable callers waiting for the next write and fsync
	written *batch           // callers waiting for the next write only (Begin)
	synced  bool             // everything written so far is fsynced
	syncAt  time.Time        // when the last fsync was done
	err     error            // last write/fsync/compaction error; nil when writable
	size    int64            // file size
	base    int64            // file size right after the last compaction
	closed  bool
}

// batch is the group of durable callers served by one write+fsync.
type batch struct {
	done chan struct{}
	err  error
}

func (b *batch) resolve(err error) {
	if b != nil {
		b.err = err
		close(b.done)
	}
}

// Open opens (creating it if needed) the journal at path, locks it for this
// process, replays it and compacts it. Every entry live at Open is marked
// Recovered. If the compaction fails (for example the disk is full), Open
// still succeeds with the journal in the broken state: Err reports it and
// the writer keeps retrying.
func Open(path string, opts Options) (*Journal, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = defaultSyncEvery
	}
	if opts.CompactAt <= 0 {
		opts.CompactAt = defaultCompactAt
	}
	j := &Journal{
		path:      path,
		log:       opts.Logger.With("journal", path),
		syncEvery: opts.SyncEvery,
		compactAt: opts.CompactAt,
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		st:        state{live: make(map[string]*Entry), nextSeq: 1},
		pending:   make(map[string]int64),
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	// The lock lives in a separate file because compaction replaces the
	// journal file (a lock on the old inode would no longer exclude anyone).
	lf, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("journal %s is already open in another process; each instance needs its own journal (its own data directory): %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("journal: lock %s: %w", path+".lock", err)
	}
	j.lockFile = lf

	data, err := readFile(path)
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	if corrupt := j.replay(data); corrupt {
		// Keep the damaged file: records after the corruption may still
		// be readable by hand and may be worth money.
		backup := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405.000000000"))
		if err := os.Link(path, backup); err != nil {
			j.log.Error("journal: cannot keep a copy of the corrupt file", "err", err)
		} else {
			j.log.Error("journal: kept a copy of the corrupt file", "copy", backup)
		}
	}
	for _, e := range j.st.live {
		e.Recovered = true
	}
	if err := j.compact(); err != nil {
		j.log.Error("journal: cannot rewrite the journal at open; retrying in the background", "err", err)
	}
	st := j.Stats()
	j.log.Info("journal opened", "live", st.Live, "recovered", st.Recovered, "settlements", st.Settlements, "bytes", st.Bytes)
	go j.run()
	return j, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// replay applies the records of data to the state. It reports whether a
// corrupt record was found before the last one.
func (j *Journal) replay(data []byte) (corrupt bool) {
	n := 0
	for off := 0; off < len(data); {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			j.log.Warn("journal: ignoring a torn last record (the process died mid-write)", "offset", off, "bytes", len(data)-off)
			return false
		}
		r, err := decodeRecord(data[off : off+nl])
		if err != nil {
			if off+nl+1 == len(data) {
				j.log.Warn("journal: ignoring a corrupt last record (the process died mid-write)", "offset", off, "err", err)
				return false
			}
			j.log.Error("journal: corrupt record; ignoring it and everything after it", "offset", off, "record", n, "err", err, "ignored_bytes", len(data)-off)
			return true
		}
		j.st.apply(&r)
		n++
		off += nl + 1
	}
	return false
}

// Begin records that the call key started, with its payload. It returns
// once the record is written to the file; it is fsynced within SyncEvery.
func (j *Journal) Begin(key string, call []byte) error {
	return j.durable(opBegin, key, call)
}

// Settle records the settlement of key. It returns once the record is
// durable.
func (j *Journal) Settle(key string, settlement []byte) error {
	return j.durable(opSettle, key, settlement)
}

func (j *Journal) durable(op, key string, payload []byte) error {
	if key == "" || !utf8.ValidString(key) {
		return fmt.Errorf("%s %q: %w", op, key, ErrInvalidKey)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, payload); err != nil {
		return fmt.Errorf("%s %q: %w: %v", op, key, ErrInvalidPayload, err)
	}
	r := record{Op: op, Key: key}
	if op == opBegin {
		r.Call = c.Bytes()
	} else {
		r.Settlement = c.Bytes()
	}

	j.mu.Lock()
	j.st.apply(&r)
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	j.buf = appendRecord(j.buf, &r)
	wait := &j.cur
	if op == opBegin {
		wait = &j.written
	}
	b := *wait
	if b == nil {
		b = &batch{done: make(chan struct{})}
		*wait = b
	}
	j.mu.Unlock()

	select {
	case j.kick <- struct{}{}:
	default: // the writer is already due to run
	}
	<-b.done
	return b.err
}

// Progress records the output produced so far by the call key. It is
// ignored if key is not live. It is not waited for, and successive values
// for a key may be coalesced.
func (j *Journal) Progress(key string, output int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.st.apply(&record{Op: opProgress, Key: key, Out: output}) && !j.closed {
		j.pending[key] = output
	}
}

// Done forgets key. It is not waited for.
func (j *Journal) Done(key string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := record{Op: opDone, Key: key}
	if j.st.apply(&r) && !j.closed {
		delete(j.pending, key)
		j.buf = appendRecord(j.buf, &r)
	}
}

// Rekey moves the live state of oldKey to newKey, keeping its Seq. It is
// ignored if oldKey is not live. If newKey is live too, the two merge: the
// non-nil payloads of oldKey replace those of newKey, the larger Output and
// the smaller Seq are kept, and Recovered is set if either was. It is not
// waited for.
func (j *Journal) Rekey(oldKey, newKey string) {
	if newKey == "" || !utf8.ValidString(newKey) {
		j.log.Warn("journal: rekey to an invalid key ignored", "old", oldKey, "new", newKey)
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	r := record{Op: opRekey, Key: oldKey, New: newKey}
	if !j.st.apply(&r) || j.closed {
		return
	}
	// Encode pending progress after the rekey record, under the new key,
	// so that replay order per key stays right.
	_, p1 := j.pending[oldKey]
	_, p2 := j.pending[newKey]
	delete(j.pending, oldKey)
	delete(j.pending, newKey)
	j.buf = appendRecord(j.buf, &r)
	if p1 || p2 {
		j.pending[newKey] = j.st.live[newKey].Output
	}
}

// Get returns the live state of key.
func (j *Journal) Get(key string) (Entry, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.st.live[key]
	if !ok {
		return Entry{}, false
	}
	return clone(e), true
}

// Recovered returns the live entries left by an earlier process, in Seq
// order.
func (j *Journal) Recovered() []Entry {
	return j.list(func(e *Entry) bool { return e.Recovered })
}

// Settlements returns the live entries with a settlement, in Seq order.
func (j *Journal) Settlements() []Entry {
	return j.list(func(e *Entry) bool { return e.Settlement != nil })
}

func (j *Journal) list(keep func(*Entry) bool) []Entry {
	j.mu.Lock()
	var out []Entry
	for _, e := range j.st.live {
		if keep(e) {
			out = append(out, clone(e))
		}
	}
	j.mu.Unlock()
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

func clone(e *Entry) Entry {
	c := *e
	c.Call = bytes.Clone(e.Call)
	c.Settlement = bytes.Clone(e.Settlement)
	return c
}

// Stats returns counters describing the journal.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := Stats{Live: len(j.st.live), Bytes: j.size, Writable: j.err == nil && !j.closed}
	for _, e := range j.st.live {
		if e.Settlement != nil {
			s.Settlements++
		}
		if e.Recovered {
			s.Recovered++
		}
	}
	return s
}

// Err returns nil when the journal is writable (the last write and fsync
// succeeded), else the error that made it unwritable (ErrClosed after
// Close).
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil && j.closed {
		return ErrClosed
	}
	return j.err
}

// Path returns the journal's file path.
func (j *Journal) Path() string { return j.path }

// Close writes and fsyncs what is pending, stops the writer and releases
// the lock. It returns the error of that last write, if any. It is
// idempotent; the in-memory state stays readable afterwards.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		j.mu.Lock()
		j.closed = true
		j.mu.Unlock()
		close(j.stop)
		<-j.done
		j.mu.Lock()
		err := j.err
		j.mu.Unlock()
		if j.f != nil {
			if err == nil {
				err = j.sync() // what was only written
			}
			err = errors.Join(err, j.f.Close())
		}
		err = errors.Join(err, j.lockFile.Close()) // releases the flock
		j.closeErr = err
	})
	return j.closeErr
}

// run is the writer goroutine: the only one touching the file after Open.
func (j *Journal) run() {
	defer close(j.done)
	t := time.NewTicker(j.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			j.flush()
			return
		case <-j.kick:
		case <-t.C:
		}
		j.flush()
	}
}

// flush writes and fsyncs everything pending in one go, or, while the
// journal is broken, retries by compacting.
func (j *Journal) flush() {
	j.mu.Lock()
	if j.err != nil || j.f == nil {
		j.mu.Unlock()
		j.compact()
		return
	}
	for k, out := range j.pending {
		j.buf = appendRecord(j.buf, &record{Op: opProgress, Key: k, Out: out})
	}
	clear(j.pending)
	// An fsync is due for a Settle waiting, or for what was written
	// without one SyncEvery ago.
	syncDue := j.cur != nil || (!j.synced && time.Since(j.syncAt) >= j.syncEvery)
	if len(j.buf) == 0 && j.cur == nil && j.written == nil && !syncDue {
		j.mu.Unlock()
		return
	}
	buf, b, w := j.buf, j.cur, j.written
	j.buf, j.cur, j.written = j.spare[:0], nil, nil
	j.mu.Unlock()

	err := j.write(buf)
	w.resolve(err) // Begin waits for the write only
	if err == nil {
		if syncDue {
			err = j.sync()
		} else {
			j.mu.Lock()
			j.synced = false
			j.mu.Unlock()
		}
	}

	j.mu.Lock()
	if err != nil {
		j.err = err
	} else {
		j.size += int64(len(buf))
	}
	compact := err == nil && j.size > max(j.compactAt, 2*j.base)
	j.mu.Unlock()
	if cap(buf) <= 1<<20 { // do not keep a huge buffer after a burst
		j.spare = buf[:0]
	} else {
		j.spare = nil
	}
	if err != nil {
		j.log.Error("journal: write failed; keeping state in memory and retrying", "err", err)
	}
	b.resolve(err)
	if compact {
		j.compact()
	}
}

func (j *Journal) write(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	if _, err := j.f.Write(buf); err != nil {
		return fmt.Errorf("journal: write %s: %w", j.path, err)
	}
	return nil
}

// sync fsyncs what was written.
func (j *Journal) sync() error {
	j.syncs.Add(1)
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal: fsync %s: %w", j.path, err)
	}
	j.mu.Lock()
	j.synced, j.syncAt = true, time.Now()
	j.mu.Unlock()
	return nil
}

// compact rewrites the file with the live state only, atomically. It also
// serves the durable callers waiting, since their records are part of the
// state written. It is called by Open and then only by the writer.
func (j *Journal) compact() error {
	j.mu.Lock()
	snap := make([]Entry, 0, len(j.st.live))
	for _, e := range j.st.live {
		snap = append(snap, *e) // payloads are never mutated in place
	}
	j.buf = j.buf[:0]
	clear(j.pending)
	b, w := j.cur, j.written
	j.cur, j.written = nil, nil
	wasBroken := j.err != nil
	j.mu.Unlock()

	slices.SortFunc(snap, func(a, b Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	var data []byte
	for i := range snap {
		data = appendEntry(data, &snap[i])
	}
	f, err := j.replaceFile(data)

	j.mu.Lock()
	if err == nil {
		j.size, j.base, j.err = int64(len(data)), int64(len(data)), nil
		j.synced, j.syncAt = true, time.Now()
	} else {
		j.err = err
	}
	j.mu.Unlock()
	if err == nil {
		if j.f != nil {
			j.f.Close()
		}
		j.f = f
		if wasBroken {
			j.log.Info("journal: writable again", "bytes", len(data), "live", len(snap))
		}
	} else if !wasBroken {
		j.log.Error("journal: compaction failed; keeping state in memory and retrying", "err", err)
	} else {
		j.log.Debug("journal: retry failed", "err", err)
	}
	b.resolve(err)
	w.resolve(err)
	return err
}

// replaceFile writes data to path.tmp, fsyncs it, renames it over path and
// fsyncs the directory. It returns the new file, positioned at its end.
func (j *Journal) replaceFile(data []byte) (*os.File, error) {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: compact: %w", err)
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(tmp) // frees the space a full disk needs
		return nil, fmt.Errorf("journal: compact: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	j.syncs.Add(1)
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(j.path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: compact: %w", err)
	}
	j.syncs.Add(1)
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
