package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options configure Open.
type Options struct {
	// LockTimeout bounds the wait for the database file lock; 0 means 1s. bbolt waits
	// forever by default, which would hang a second daemon started on the same data_dir.
	LockTimeout time.Duration
	// NoSync skips fsync: for tests and benchmarks only, a crash may lose acknowledged
	// messages.
	NoSync bool
	// MaxSize caps the database file in bytes (0: no cap). A write that would grow the
	// file past it fails with ErrFull, as it would on a full disk.
	MaxSize int
	// ReadOnly opens the database with a shared lock and writes nothing: for a
	// listing while the daemon is down (mailq as root). It fails with ErrLocked
	// while a daemon holds the database.
	ReadOnly bool

	// arrayFreelist selects bbolt's defaults (array freelist, written at every commit),
	// so that the benchmark can show what the chosen settings save.
	arrayFreelist bool
	// sparseMin overrides sparseMinSize, for tests.
	sparseMin int64
}

const defaultLockTimeout = time.Second

// Store is the durable queue. Its methods may be called concurrently.
type Store struct {
	db   *bolt.DB
	path string

	// mu guards pending and leading: the group commit's queue and whether some caller
	// is currently committing it.
	mu      sync.Mutex
	pending []*op
	leading bool

	// commits counts bolt write transactions, for the benchmarks' writes-per-commit.
	commits atomic.Int64

	sparseMin int64 // see Sparse

	// noQueue: a read-only open of a file no daemon has made its buckets in
	// (checkVersion): every read answers errNoQueue instead of touching a
	// bucket that is not there.
	noQueue bool

	// suppHook, when set, is told of every change of the suppression list (issue 14).
	suppHook atomic.Pointer[SuppressionHook]
}

// Open opens or creates the queue database at path. It starts no goroutine.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	bo := &bolt.Options{
		Timeout: timeout,
		// A queue deletes what it delivered, so the file is full of free pages; bbolt's
		// array freelist is sorted and rewritten at every commit, which grows with the
		// queue's history. The map freelist, rebuilt by a scan at open instead of being
		// synced, keeps commits flat (see doc.go for the measurement).
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
		NoSync:         opts.NoSync,
		MaxSize:        opts.MaxSize,
		ReadOnly:       opts.ReadOnly,
	}
	if opts.arrayFreelist {
		bo.FreelistType, bo.NoFreelistSync = bolt.FreelistArrayType, false
	}
	db, err := bolt.Open(path, 0o600, bo)
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open queue %s: still locked after %v, is another facteur running with the same data_dir? %w", path, timeout, ErrLocked)
		}
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	initTx := db.Update
	if opts.ReadOnly {
		initTx = db.View
	}
	noQueue := false
	if err := initTx(func(tx *bolt.Tx) error {
		if opts.ReadOnly {
			noQueue = tx.Bucket(bucketMsgs) == nil
			return checkVersion(tx)
		}
		return initBuckets(tx)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	sparseMin := opts.sparseMin
	if sparseMin <= 0 {
		sparseMin = sparseMinSize
	}
	return &Store{db: db, path: path, sparseMin: sparseMin, noQueue: noQueue}, nil
}

func initBuckets(tx *bolt.Tx) error {
	// A database from before the counts bucket gets it filled once, here.
	newCounts := tx.Bucket(bucketMsgs) != nil && tx.Bucket(bucketCounts) == nil
	// A new database has its sender index complete from the start; one from before
	// the index gets it from BuildIndexes, in the background.
	fresh := tx.Bucket(bucketMsgs) == nil
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	if newCounts {
		if err := buildCounts(tx); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if fresh {
		if err := meta.Put(metaSendersDone, []byte{1}); err != nil {
			return err
		}
	}
	if meta.Get(metaVersion) == nil {
		return meta.Put(metaVersion, putU64(schemaVersion))
	}
	return checkVersion(tx)
}

// errNoQueue is what every read of a database without its buckets answers:
// nothing was ever queued there, so it is ErrNotFound, and a listing is
// empty.
var errNoQueue = fmt.Errorf("%w: no queue in this database yet", ErrNotFound)

// checkVersion refuses a database written by another schema version; a
// read-only open of a database without the buckets yet (never opened by a
// daemon) reads as empty.
func checkVersion(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil
	}
	v := meta.Get(metaVersion)
	switch {
	case v == nil:
		return nil
	case getU64(v) != schemaVersion:
		return fmt.Errorf("database schema version %d, this facteur reads %d", getU64(v), schemaVersion)
	}
	return nil
}

// Close waits for the commit in progress and closes the database. Writes queued after
// it fail.
//
// A clean close writes the freelist once, so that the next Open reads it (a few pages)
// instead of walking every page of the file to rebuild it, which takes seconds with a
// million messages queued (issue 19: the SMTP listener must be up in under 2 s). After
// a crash the freelist is not on disk and Open walks the file, as before.
func (s *Store) Close() error {
	if !s.db.IsReadOnly() {
		// Set inside the write transaction: bbolt reads the field in Commit under the
		// same lock, and every later commit (none is expected) would sync it too.
		err := s.db.Update(func(*bolt.Tx) error {
			s.db.NoFreelistSync = false
			return nil
		})
		if err != nil && !errors.Is(err, berrors.ErrDatabaseNotOpen) {
			s.db.Close()
			return fmt.Errorf("close queue %s: write freelist: %w", s.path, err)
		}
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close queue %s: %w", s.path, err)
	}
	return nil
}

// Path returns the database file name.
func (s *Store) Path() string { return s.path }

// op is one caller's write waiting for the group commit.
type op struct {
	ctx context.Context
	fn  func(*wtx) error
	err error
	// wake receives false when err is final, true when this caller must lead the next
	// commit. Buffered so that the leader never blocks on a follower.
	wake chan bool
}

// rejected marks an error returned by a write function before it changed anything: the
// group's transaction goes on without it. Any other error aborts the transaction, and
// the group is re-run without the failed write, which is why write functions must be
// retry-safe: derive everything from the transaction and their arguments, assign (never
// append to) results captured from the caller.
type rejected struct{ err error }

func (r rejected) Error() string { return r.err.Error() }
func (r rejected) Unwrap() error { return r.err }

func reject(err error) error { return rejected{err} }

// write runs fn in a read-write transaction shared with every other write queued at the
// same time, and returns once that transaction is committed and synced, or failed.
//
// Group commit without a goroutine: a caller that finds nobody committing becomes the
// leader, takes everything pending, commits it in one bolt transaction, then hands
// leadership to the first caller that queued meanwhile, and returns. While a commit
// (two fdatasyncs) runs, new writes pile up and go out together in the next one, so a
// single writer never waits for a timer (bbolt's Batch waits MaxBatchDelay) and twenty
// writers share fsyncs.
//
// ctx is checked when the leader picks the write up; once queued, a caller waits for the
// outcome even if ctx ends, because a write it gave up on might still be committed and
// the caller must know whether its message is stored.
func (s *Store) write(ctx context.Context, fn func(*wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	me := &op{ctx: ctx, fn: fn, wake: make(chan bool, 1)}
	s.mu.Lock()
	s.pending = append(s.pending, me)
	if s.leading {
		s.mu.Unlock()
		if lead := <-me.wake; !lead {
			return me.err
		}
		s.mu.Lock()
	}
	s.leading = true
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()

	s.commit(batch)

	s.mu.Lock()
	if len(s.pending) > 0 {
		s.pending[0].wake <- true
	} else {
		s.leading = false
	}
	s.mu.Unlock()
	for _, o := range batch {
		if o != me {
			o.wake <- false
		}
	}
	return me.err
}

// commit applies batch and sets each op's err.
func (s *Store) commit(batch []*op) {
	live := make([]*op, 0, len(batch))
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.err = err
			continue
		}
		live = append(live, o)
	}
	for len(live) > 0 {
		var failed *op // the op whose error aborted the transaction
		s.commits.Add(1)
		err := s.update(func(tx *bolt.Tx) error {
			w := newWtx(tx)
			for _, o := range live {
				o.err = nil
				err := o.fn(w)
				if err == nil {
					continue
				}
				if r, ok := err.(rejected); ok {
					o.err = r.err
					continue
				}
				o.err, failed = err, o
				return err
			}
			return w.flushCounters()
		})
		switch {
		case err == nil:
			return
		case failed != nil:
			// Re-run without the write that failed half-way: its partial changes went
			// with the rolled-back transaction.
			next := live[:0:0]
			for _, o := range live {
				if o != failed {
					next = append(next, o)
				}
			}
			live = next
		case len(live) > 1:
			// The commit itself failed (disk full, I/O error). Maybe only one large
			// message did not fit: give each write its own verdict.
			for _, o := range live {
				s.commit([]*op{o})
			}
			return
		default:
			live[0].err = storageErr(err)
			return
		}
	}
}

var errPanicked = errors.New("write transaction panicked")

// update is db.Update that turns a panic into an error. bbolt panics on some corrupt
// pages; a panic escaping the leader would leave every follower waiting forever and the
// SMTP sessions hanging, where an error lets them answer 451.
func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w (database corrupt?): %v", errPanicked, p)
		}
	}()
	return s.db.Update(fn)
}

// storageErr maps a failed commit onto our sentinels (ErrFull when the disk or MaxSize
// is the cause, ErrClosed), so that callers need not import bbolt.
func storageErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("commit: %w", ErrClosed)
	}
	if errors.Is(err, berrors.ErrMaxSizeReached) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("commit: %w: %w", ErrFull, err)
	}
	return fmt.Errorf("commit: %w", err)
}

// viewSome is view with only the named buckets opened: the lookups of the hot paths
// (a suppression at each RCPT, a body per delivery, the counters) need one or two of
// the ten, and opening them all cost a few microseconds and two dozen allocations per
// lookup. fn must touch only those buckets.
func (s *Store) viewSome(ctx context.Context, fn func(*wtx) error, names ...[]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.noQueue {
		return errNoQueue
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		w := &wtx{tx: tx}
		for _, n := range names {
			b := tx.Bucket(n)
			switch string(n) {
			case string(bucketMsgs):
				w.msgs = b
			case string(bucketBodies):
				w.bodies = b
			case string(bucketZBodies):
				w.zbodies = b
			case string(bucketSupp):
				w.supp = b
			case string(bucketMeta):
				w.meta = b
			case string(bucketDue):
				w.due = b
			case string(bucketSenders):
				w.senders = b
			default:
				return fmt.Errorf("viewSome: bucket %s not wired", n)
			}
		}
		return fn(w)
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// view runs fn in a read-only transaction.
func (s *Store) view(ctx context.Context, fn func(*wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.noQueue {
		return errNoQueue
	}
	err := s.db.View(func(tx *bolt.Tx) error { return fn(newWtx(tx)) })
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
