package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"facteur/safeio"
)

// compactTxSize bounds one transaction of the copy, so that compacting a large queue
// holds a bounded amount of memory.
const compactTxSize = 64 << 20

// Compact rewrites the queue database at path into a new file holding only its live
// pages, then puts it in place, as `postsuper -s`-style maintenance: a bbolt file never
// shrinks by itself, so after a big queue drained it stays as large as it once was.
// It needs the file to itself (the daemon stopped): with the daemon running it fails
// with ErrLocked. The copy is fsync'd and renamed over the original, then the directory
// is fsync'd, so a crash leaves either file whole. It returns the sizes before and after.
func Compact(path string, opts Options) (before, after int64, err error) {
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	before = fi.Size()
	src, err := bolt.Open(path, fi.Mode().Perm(), &bolt.Options{Timeout: timeout, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return before, 0, fmt.Errorf("compact %s: stop the daemon first: %w", path, ErrLocked)
		}
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	defer src.Close()
	tmp := path + ".compact"
	os.Remove(tmp) // a copy left by an interrupted run
	// The freelist of the copy is synced, so that the next Open reads it at once.
	dst, err := bolt.Open(tmp, fi.Mode().Perm(), &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	fail := func(err error) (int64, int64, error) {
		dst.Close()
		os.Remove(tmp)
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := bolt.Compact(dst, src, compactTxSize); err != nil {
		return fail(err)
	}
	if err := dst.Sync(); err != nil {
		return fail(err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		// Root compacting the daemon's file must leave it the daemon's.
		os.Chown(tmp, int(st.Uid), int(st.Gid))
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	// The compacted file is complete either way; a failed directory sync
	// only leaves the old one to be found after a crash.
	safeio.SyncDir(filepath.Dir(path), nil)
	if fi, err := os.Stat(path); err == nil {
		after = fi.Size()
	}
	return before, after, nil
}

// Automatic compaction (issue 19 §5): the daemon compacts at a clean stop when the file
// is mostly free pages, the trace of a large queue that drained, and what is live is
// small enough to copy in seconds. A compaction copies only live pages, so its cost is
// that of the queue still waiting, not of the file.
const (
	sparseMinSize = 64 << 20  // below, the space is not worth a copy
	sparseMaxLive = 256 << 20 // above, the copy would hold the stop too long
)

// Sparse reports whether the file is worth compacting at a clean stop: at least
// 64 MiB, at least half of it free pages, and at most 256 MiB live.
func (s *Store) Sparse() bool {
	var size int64
	if err := s.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil }); err != nil {
		return false
	}
	free := int64(s.db.Stats().FreePageN) * int64(s.db.Info().PageSize)
	return size >= s.sparseMin && 2*free >= size && size-free <= sparseMaxLive
}
