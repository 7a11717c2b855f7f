// Package safeio writes files so that a crash leaves either the old
// content or the new one, complete and durable, never a torn file: the
// bytes go to a temporary file in the destination's directory, which is
// fsynced, then renamed (or linked) to its name, then the directory is
// fsynced so that the new entry survives a crash too. chasquid's safeio
// does the first three steps; the last is what makes "250 queued" and
// "key written" true after a power loss.
//
// It is a leaf: it imports nothing of facteur's, so that dkim and
// queue/maildrop, which import none of the relay, may use it.
package safeio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Mode says what Commit does when the destination already exists.
type Mode int

const (
	// Replace renames the temporary file over the destination, atomically.
	Replace Mode = iota
	// NoReplace links the temporary file to the destination, which fails
	// with an error wrapping fs.ErrExist when something is there: a DKIM
	// key already published in DNS is never overwritten.
	NoReplace
	// Unique renames, the caller having made the name unique (the
	// maildrop's time-ordered random names): one rename, no link, and
	// nobody else's file can be there.
	Unique
)

// File is a file being written to path through a temporary name. Write to
// it (it is an *os.File), then Commit; Abort on any failure (it is a no-op
// after Commit). The zero File is not usable; Create makes one.
type File struct {
	*os.File
	path, tmp string
	done      bool
}

// Create starts the write of path through the temporary file tmp, a base
// name in path's directory (empty: a random ".tmp-" name). tmp is created
// exclusively with perm, and chmod'ed to perm since the umask may have
// removed bits the reader needs (the group bit the daemon reads the
// maildrop with; the owner's on a key).
func Create(path, tmp string, perm fs.FileMode) (*File, error) {
	dir := filepath.Dir(path)
	var f *os.File
	var err error
	if tmp == "" {
		f, err = os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	} else {
		f, err = os.OpenFile(filepath.Join(dir, tmp), os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	}
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &File{File: f, path: path, tmp: f.Name()}, nil
}

// Commit makes the written bytes the content of path: fsync, close,
// rename (Replace, Unique) or link (NoReplace), then fsync the directory.
// On an error the temporary file is gone; with NoReplace and Unique path is
// too, so that a caller that retries finds nothing half-made and leaves no
// duplicate behind. With Replace, an error from
// the directory fsync leaves the new content in place (the old one is
// gone already), only its durability in doubt.
func (f *File) Commit(mode Mode) (err error) {
	if f.done {
		return errors.New("safeio: commit after commit or abort")
	}
	defer func() {
		if err != nil {
			f.Abort()
		}
	}()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", f.tmp, err)
	}
	switch mode {
	case NoReplace:
		if err := os.Link(f.tmp, f.path); err != nil {
			return err
		}
		os.Remove(f.tmp)
	default:
		if err := os.Rename(f.tmp, f.path); err != nil {
			return err
		}
	}
	f.done = true
	dir := filepath.Dir(f.path)
	err = SyncDir(dir, f.File)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", f.path, cerr)
	}
	if err != nil && mode != Replace {
		os.Remove(f.path)
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Abort closes and removes the temporary file; path is untouched. It does
// nothing after Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.tmp)
}

// WriteFile writes data to path through Create and Commit.
func WriteFile(path string, data []byte, perm fs.FileMode, mode Mode) error {
	f, err := Create(path, "", perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return f.Commit(mode)
}

// SyncDir makes the entries of dir durable: a file created, renamed or
// removed in it survives a crash once this returns. f, when not nil, is a
// file open on the same file system: the sendmail shim writes into a mode
// 1730 directory it may not open for reading (open(2) of a directory needs
// read permission, and fsync needs a descriptor), and then syncfs(2) on f
// commits the whole file system, the rename included.
func SyncDir(dir string, f *os.File) error {
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		return err
	}
	if !errors.Is(err, fs.ErrPermission) || f == nil {
		return err
	}
	return unix.Syncfs(int(f.Fd()))
}
