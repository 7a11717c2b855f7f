package maildrop

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Per-user quota (issue 11 §2). While the daemon is down, the maildrop is
// the only thing a local user fills; without a bound, a hacked site fills
// the disk under the queue. The shim cannot list the maildrop (mode 1730),
// so each user has a ledger, quota/UID, holding "FILES BYTES": the shim
// locks it (flock), checks, adds its file to it, then writes the file; pickup
// recounts every ledger from the files themselves at each scan (under the
// same lock), so a ledger that drifted (a shim killed mid-write reserved
// what it never wrote) is right again at the next scan. The ledger
// directory has the maildrop's mode: users reach it only through the
// setgid shim.

// quotaDir is the ledgers' directory inside the maildrop.
const quotaDir = "quota"

// ErrQuota: the user's files in the maildrop are at the quota.
var ErrQuota = errors.New("maildrop quota exceeded")

// Quota bounds one user's files in the maildrop; 0 is no bound.
type Quota struct {
	Files int
	Bytes int64
}

func (q Quota) none() bool { return q.Files <= 0 && q.Bytes <= 0 }

// usage is a ledger's content.
type usage struct {
	files int
	bytes int64
}

func openLedger(dir string, uid int, create bool) (*os.File, error) {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(filepath.Join(dir, quotaDir, strconv.Itoa(uid)), flag, 0o660)
	if err != nil {
		return nil, err
	}
	if create {
		// The daemon (group facteur-drop) rewrites it; the umask may have
		// taken the group bits.
		f.Chmod(0o660)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func readLedger(f *os.File) usage {
	b, _ := io.ReadAll(io.LimitReader(f, 64))
	fields := strings.Fields(string(b))
	var u usage
	if len(fields) == 2 {
		u.files, _ = strconv.Atoi(fields[0])
		u.bytes, _ = strconv.ParseInt(fields[1], 10, 64)
	}
	return u
}

func writeLedger(f *os.File, u usage) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(fmt.Sprintf("%d %d\n", u.files, u.bytes)), 0)
	return err
}

// WriteQuota is Write under the user's quota: it refuses with ErrQuota when
// one more file of size (about) bodySize would pass it. Root is not
// limited, and a maildrop without a quota directory (an older daemon)
// is written to as before.
func WriteQuota(dir string, env Envelope, body io.Reader, bodySize int64, q Quota) (string, error) {
	if q.none() || env.UID == 0 {
		return Write(dir, env, body)
	}
	f, err := openLedger(dir, env.UID, true)
	if errors.Is(err, fs.ErrNotExist) {
		return Write(dir, env, body)
	}
	if err != nil {
		return "", fmt.Errorf("maildrop quota: %w", err)
	}
	defer f.Close() // also releases the lock
	u := readLedger(f)
	size := bodySize + 1024 // the header and trailer, roughly
	if (q.Files > 0 && u.files+1 > q.Files) || (q.Bytes > 0 && u.bytes+size > q.Bytes) {
		return "", fmt.Errorf("%w: uid %d has %d files, %d bytes waiting (quota %d files, %d bytes)", ErrQuota, env.UID, u.files, u.bytes, q.Files, q.Bytes)
	}
	// Reserved before the file exists: a shim killed during the write
	// (SIGKILL from its own user) leaves a temporary file the shim cannot
	// see again, and nothing recounts while the daemon is down. Counted
	// first, the file is never outside the quota; pickup's recount gives
	// back what a killed shim reserved.
	reserved := usage{files: u.files + 1, bytes: u.bytes + size}
	if err := writeLedger(f, reserved); err != nil {
		return "", fmt.Errorf("maildrop quota: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("maildrop quota: %w", err)
	}
	name, err := Write(dir, env, body)
	if err != nil {
		writeLedger(f, u)
		return "", err
	}
	if fi, err := os.Stat(filepath.Join(dir, name)); err == nil {
		// The estimate becomes the file's real size.
		reserved.bytes += fi.Size() - size
	}
	writeLedger(f, reserved)
	return name, nil
}

// Recount rewrites every ledger in dir from the files present: pickup
// calls it after each scan.
func Recount(dir string) error {
	ents, err := os.ReadDir(filepath.Join(dir, quotaDir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("maildrop recount: %w", err)
	}
	for _, e := range ents {
		uid, err := strconv.Atoi(e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		f, err := openLedger(dir, uid, false)
		if err != nil {
			continue
		}
		u, err := countOwned(dir, uid)
		if err == nil {
			err = writeLedger(f, u)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("maildrop recount: %w", err)
		}
	}
	return nil
}

// countOwned counts the files (complete or being written) of uid in dir.
func countOwned(dir string, uid int) (usage, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return usage{}, err
	}
	var u usage
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid {
			u.files++
			u.bytes += fi.Size()
		}
	}
	return u, nil
}
