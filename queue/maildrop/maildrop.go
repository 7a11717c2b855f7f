package maildrop

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"facteur/safeio"
)

// Errors callers branch on.
var (
	// ErrCorrupt: the file is not a complete, intact maildrop file (truncated,
	// garbled, not a maildrop file at all, or owned by someone other than the
	// uid it names). Pickup quarantines it.
	ErrCorrupt = errors.New("corrupt maildrop file")
	// ErrVersion: the file announces a format version this package does not
	// read (a newer shim wrote it). Errors wrapping it also match ErrCorrupt.
	ErrVersion = errors.New("unsupported maildrop format version")
	// ErrInvalid: Write was given an envelope it refuses to store (no
	// recipient, a control character in an address, no time...).
	ErrInvalid = errors.New("invalid maildrop envelope")
)

// Version is the format version Write produces and Read accepts.
const Version = 1

// Limits that keep a hostile or broken file from costing unbounded memory or
// producing lines the parser would have to guess about.
const (
	// MaxAddressLen bounds an address in octets; RFC 5321 §4.5.3.1.3 allows
	// a path of 256, UTF-8 (RFC 6531) can triple it.
	MaxAddressLen = 1024
	// MaxRecipients bounds the recipient lines of one file.
	MaxRecipients = 100000
	maxUserLen    = 256
	maxHeaderLen  = MaxRecipients * (MaxAddressLen + 8)
)

const (
	magic       = "facteur-maildrop"
	trailerTag  = "\nfacteur-maildrop-end "
	trailerLen  = len(trailerTag) + 20 + 1 + sha256.Size*2 + 1
	tempPrefix  = "."
	corruptDir  = "corrupt"
	fileMode    = 0o640
	dirMode     = 0o730 | fs.ModeSticky // 1730
	nameTimeFmt = "20060102T150405.000000000"
)

// Envelope is what the shim knew about a message besides its bytes.
type Envelope struct {
	// Sender is the reverse-path without angle brackets, as the shim got it
	// (-f or the login name); "" is the null sender <>. The daemon applies
	// its senders/local_domain rewriting at ingestion.
	Sender string
	// Recipients are the forward-paths without angle brackets; at least one.
	Recipients []string
	// SMTPUTF8: the envelope or the header has UTF-8 (RFC 6531).
	SMTPUTF8 bool
	// EightBitMIME: the body is 8BITMIME (RFC 6152): -B8BITMIME or 8-bit bytes.
	EightBitMIME bool
	// UID and User identify who submitted: the real uid of the shim and its
	// login name ("" if the uid has none).
	UID  int
	User string
	// Time is when the shim accepted the message; it also orders the files.
	Time time.Time
}

// Write stores env and body as a new file in dir and returns its name (not a
// path). The message is durable when Write returns nil: the file is written
// under a dot-prefixed name, fsynced, renamed into place, and the rename is
// made durable. On error nothing is left in dir that List would return.
func Write(dir string, env Envelope, body io.Reader) (name string, err error) {
	if err := env.validate(); err != nil {
		return "", err
	}
	name, err = newName(env.Time)
	if err != nil {
		return "", err
	}
	final := filepath.Join(dir, name)
	// safeio chmods against the umask, which may have removed the group
	// bit the daemon reads with.
	f, err := safeio.Create(final, tempPrefix+name, fileMode)
	if err != nil {
		return "", fmt.Errorf("maildrop write: %w", err)
	}
	defer func() {
		if err != nil {
			f.Abort()
		}
	}()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 64<<10)
	if _, err := w.Write(env.encodeHeader()); err != nil {
		return "", fmt.Errorf("maildrop write %s: %w", f.Name(), err)
	}
	n, err := io.Copy(w, body)
	if err != nil {
		return "", fmt.Errorf("maildrop write %s: %w", f.Name(), err)
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("maildrop write %s: %w", f.Name(), err)
	}
	if _, err := f.Write(trailer(n, h)); err != nil {
		return "", fmt.Errorf("maildrop write %s: %w", f.Name(), err)
	}
	// Unique: the name is new; if only the directory's durability is in
	// doubt the file is removed again, so that the caller's fallback (exit
	// EX_TEMPFAIL, the user retries) leaves no duplicate behind.
	if err := f.Commit(safeio.Unique); err != nil {
		return "", fmt.Errorf("maildrop write %s: %w", final, err)
	}
	return name, nil
}

func trailer(n int64, h hash.Hash) []byte {
	return fmt.Appendf(nil, "%s%020d %x\n", trailerTag, n, h.Sum(nil))
}

// newName returns a file name that sorts by t and is unique across processes
// (pid) and within one (random).
func newName(t time.Time) (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("maildrop name: %w", err)
	}
	ts := strings.Replace(t.UTC().Format(nameTimeFmt), ".", "", 1)
	return fmt.Sprintf("%s-%d-%x", ts, os.Getpid(), r), nil
}

func (e *Envelope) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if e.Time.IsZero() || e.Time.UTC().Year() < 1 || e.Time.UTC().Year() > 9999 {
		return bad("time %v out of range", e.Time)
	}
	if e.UID < 0 || e.UID > 1<<32-1 {
		return bad("uid %d out of range", e.UID)
	}
	if err := checkText(e.User, maxUserLen, true); err != nil {
		return bad("user %q: %v", e.User, err)
	}
	if err := checkText(e.Sender, MaxAddressLen, false); err != nil {
		return bad("sender %q: %v", e.Sender, err)
	}
	if len(e.Recipients) == 0 {
		return bad("no recipient")
	}
	if len(e.Recipients) > MaxRecipients {
		return bad("%d recipients, at most %d", len(e.Recipients), MaxRecipients)
	}
	for _, r := range e.Recipients {
		if r == "" {
			return bad("empty recipient")
		}
		if err := checkText(r, MaxAddressLen, false); err != nil {
			return bad("recipient %q: %v", r, err)
		}
	}
	return nil
}

// checkText accepts valid UTF-8 without control characters (so a value can
// never end or split a header line), and without spaces if noSpace.
func checkText(s string, max int, noSpace bool) error {
	if len(s) > max {
		return fmt.Errorf("longer than %d octets", max)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("control character %U", r)
		}
		if noSpace && r == ' ' {
			return errors.New("space")
		}
	}
	return nil
}

func (e *Envelope) encodeHeader() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %d\n", magic, Version)
	fmt.Fprintf(&b, "time %s\n", e.Time.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "uid %d\n", e.UID)
	fmt.Fprintf(&b, "user %s\n", e.User)
	fmt.Fprintf(&b, "sender <%s>\n", e.Sender)
	b.WriteString("flags")
	if e.EightBitMIME {
		b.WriteString(" 8BITMIME")
	}
	if e.SMTPUTF8 {
		b.WriteString(" SMTPUTF8")
	}
	b.WriteString("\n")
	for _, r := range e.Recipients {
		fmt.Fprintf(&b, "rcpt <%s>\n", r)
	}
	b.WriteString("\n")
	return b.Bytes()
}

// Read returns the envelope and message of the maildrop file at path. Any
// error wrapping ErrCorrupt means the file will never be readable: quarantine
// it. Other errors (permission, I/O) may pass.
func Read(path string) (Envelope, []byte, error) {
	// O_NOFOLLOW: a symlink in the maildrop must not make the daemon read
	// a file the submitter could not.
	// O_NONBLOCK: a FIFO must not make it wait for a writer for ever (it
	// is then found not regular and quarantined); no effect on a file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return Envelope{}, nil, fmt.Errorf("maildrop %s: %w: symbolic link", path, ErrCorrupt)
		}
		return Envelope{}, nil, fmt.Errorf("maildrop read: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("maildrop read: %w", err)
	}
	if !st.Mode().IsRegular() {
		return Envelope{}, nil, fmt.Errorf("maildrop %s: %w: not a regular file", path, ErrCorrupt)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return Envelope{}, nil, fmt.Errorf("maildrop read %s: %w", path, err)
	}
	env, body, err := decode(data)
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("maildrop %s: %w", path, err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 && int(sys.Uid) != env.UID {
		return Envelope{}, nil, fmt.Errorf("maildrop %s: %w: owned by uid %d but claims uid %d", path, ErrCorrupt, sys.Uid, env.UID)
	}
	return env, body, nil
}

// decode parses a whole file. It checks the version first (a newer format
// may lay out its trailer differently), then the trailer's hash and length,
// and only then the header.
func decode(data []byte) (Envelope, []byte, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	var env Envelope
	first, _, ok := bytes.Cut(data, []byte("\n"))
	if !ok || !bytes.HasPrefix(first, []byte(magic+" ")) {
		return env, nil, corrupt("not a maildrop file")
	}
	v, err := strconv.Atoi(string(first[len(magic)+1:]))
	if err != nil || v < 1 {
		return env, nil, corrupt("bad version line %q", first)
	}
	if v != Version {
		return env, nil, fmt.Errorf("%w: %w: version %d, this facteur reads %d", ErrCorrupt, ErrVersion, v, Version)
	}
	if len(data) < trailerLen {
		return env, nil, corrupt("truncated: no trailer")
	}
	content, tr := data[:len(data)-trailerLen], data[len(data)-trailerLen:]
	if !bytes.HasPrefix(tr, []byte(trailerTag)) || tr[len(tr)-1] != '\n' {
		return env, nil, corrupt("truncated: no trailer")
	}
	fields := strings.Split(string(tr[len(trailerTag):len(tr)-1]), " ")
	if len(fields) != 2 || len(fields[0]) != 20 || len(fields[1]) != sha256.Size*2 {
		return env, nil, corrupt("bad trailer")
	}
	bodyLen, err := strconv.ParseUint(fields[0], 10, 63)
	if err != nil {
		return env, nil, corrupt("bad trailer length %q", fields[0])
	}
	want, err := hex.DecodeString(fields[1])
	if err != nil || strings.ToLower(fields[1]) != fields[1] {
		return env, nil, corrupt("bad trailer hash %q", fields[1])
	}
	if got := sha256.Sum256(content); !bytes.Equal(got[:], want) {
		return env, nil, corrupt("checksum mismatch")
	}
	end := bytes.Index(content, []byte("\n\n"))
	if end < 0 || end > maxHeaderLen {
		return env, nil, corrupt("no end of header")
	}
	header, body := content[:end+1], content[end+2:]
	if uint64(len(body)) != bodyLen {
		return env, nil, corrupt("body is %d bytes, trailer says %d", len(body), bodyLen)
	}
	if err := env.decodeHeader(string(header)); err != nil {
		return Envelope{}, nil, corrupt("%v", err)
	}
	return env, body, nil
}

// decodeHeader parses the lines after the version line, in their fixed order.
func (e *Envelope) decodeHeader(h string) error {
	lines := strings.Split(strings.TrimSuffix(h, "\n"), "\n")[1:]
	next := func(key string) (string, error) {
		if len(lines) == 0 {
			return "", fmt.Errorf("missing %s line", key)
		}
		v, ok := strings.CutPrefix(lines[0], key+" ")
		if !ok && lines[0] == key {
			v, ok = "", true
		}
		if !ok {
			return "", fmt.Errorf("want %s line, got %q", key, lines[0])
		}
		lines = lines[1:]
		return v, nil
	}
	angle := func(key, v string) (string, error) {
		a, ok := strings.CutPrefix(v, "<")
		if a, ok2 := strings.CutSuffix(a, ">"); ok && ok2 {
			return a, nil
		}
		return "", fmt.Errorf("%s %q not in angle brackets", key, v)
	}

	v, err := next("time")
	if err != nil {
		return err
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, v); err != nil {
		return fmt.Errorf("bad time %q", v)
	}
	if v, err = next("uid"); err != nil {
		return err
	}
	if e.UID, err = strconv.Atoi(v); err != nil || strconv.Itoa(e.UID) != v {
		return fmt.Errorf("bad uid %q", v)
	}
	if e.User, err = next("user"); err != nil {
		return err
	}
	if v, err = next("sender"); err != nil {
		return err
	}
	if e.Sender, err = angle("sender", v); err != nil {
		return err
	}
	if v, err = next("flags"); err != nil {
		return err
	}
	for _, fl := range strings.Fields(v) {
		switch {
		case fl == "8BITMIME" && !e.EightBitMIME:
			e.EightBitMIME = true
		case fl == "SMTPUTF8" && !e.SMTPUTF8:
			e.SMTPUTF8 = true
		default:
			return fmt.Errorf("unknown or repeated flag %q", fl)
		}
	}
	for len(lines) > 0 {
		if v, err = next("rcpt"); err != nil {
			return err
		}
		r, err := angle("rcpt", v)
		if err != nil {
			return err
		}
		e.Recipients = append(e.Recipients, r)
	}
	// The same rules as Write, so that whatever Read returns, Write takes.
	e.Time = e.Time.UTC()
	if err := e.validate(); err != nil {
		return err
	}
	if !bytes.Equal(e.encodeHeader(), []byte(h+"\n")) {
		return errors.New("header not in canonical form")
	}
	return nil
}

// List returns the paths of the complete files in dir, oldest first (by
// name, which starts with the submission time). Files being written
// (dot-prefixed) and directories are skipped.
func List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("maildrop list: %w", err)
	}
	var paths []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempPrefix) || e.IsDir() {
			continue
		}
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	slices.Sort(paths)
	return paths, nil
}

// Remove deletes an ingested file. Call it only after the queue commit that
// holds the message: the unlink is made durable so that a crash after Remove
// cannot bring the file back for a second ingestion.
func Remove(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("maildrop remove: %w", err)
	}
	if err := safeio.SyncDir(filepath.Dir(path), nil); err != nil {
		return fmt.Errorf("maildrop remove %s: %w", path, err)
	}
	return nil
}

// Quarantine moves a bad file to dir/corrupt/ (created if needed) with a
// NAME.reason file beside it, so that pickup stops trying it and an admin can
// look at it.
func Quarantine(path, reason string) error {
	dir, name := filepath.Split(path)
	qdir := filepath.Join(dir, corruptDir)
	if err := os.MkdirAll(qdir, 0o750); err != nil {
		return fmt.Errorf("maildrop quarantine: %w", err)
	}
	if err := os.WriteFile(filepath.Join(qdir, name+".reason"), []byte(reason+"\n"), 0o640); err != nil {
		return fmt.Errorf("maildrop quarantine %s: %w", path, err)
	}
	if err := os.Rename(path, filepath.Join(qdir, name)); err != nil {
		return fmt.Errorf("maildrop quarantine %s: %w", path, err)
	}
	for _, d := range []string{qdir, filepath.Clean(dir)} {
		if err := safeio.SyncDir(d, nil); err != nil {
			return fmt.Errorf("maildrop quarantine %s: %w", path, err)
		}
	}
	return nil
}

// RemoveStale deletes the temporary files that shims left in dir when they
// died mid-write, if last modified before before (give a live shim time to
// finish: an hour is plenty). It returns how many it removed.
func RemoveStale(dir string, before time.Time) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("maildrop clean: %w", err)
	}
	n := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), tempPrefix) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // renamed into place meanwhile
		}
		if err != nil {
			return n, fmt.Errorf("maildrop clean: %w", err)
		}
		if !info.ModTime().Before(before) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("maildrop clean: %w", err)
		}
		n++
	}
	if n > 0 {
		if err := safeio.SyncDir(dir, nil); err != nil {
			return n, fmt.Errorf("maildrop clean: %w", err)
		}
	}
	return n, nil
}

// Group is the group that owns the maildrop: the shim is installed setgid
// to it, and the daemon's user is a member (Postfix's postdrop group).
const Group = "facteur-drop"

// Init creates dir if needed and gives it the maildrop permissions (mode
// 1730; group gid unless gid is -1). The daemon calls it at start.
func Init(dir string, gid int) error {
	if err := initDir(dir, gid); err != nil {
		return err
	}
	// The quota ledgers (quota.go) live in a directory of the same mode.
	return initDir(filepath.Join(dir, quotaDir), gid)
}

// initDir gives one directory the maildrop's owner group and mode, the same
// steps for the maildrop and for its quota directory.
func initDir(dir string, gid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("maildrop init: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(dir, -1, gid); err != nil {
			return fmt.Errorf("maildrop init: %w", err)
		}
	}
	// Chmod after MkdirAll: the umask applies to MkdirAll, not to Chmod.
	if err := os.Chmod(dir, dirMode); err != nil {
		return fmt.Errorf("maildrop init: %w", err)
	}
	return nil
}
