package install

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"facteur/queue/maildrop"
	"facteur/safeio"
)

// owner is a wanted owner and mode.
type owner struct {
	user, group string
	mode        fs.FileMode // permission bits plus ModeSetgid, ModeSticky
}

func (o owner) String() string {
	return fmt.Sprintf("%s %s:%s", ModeOctal(o.mode), o.user, o.group)
}

// ModeOctal writes a mode as chmod(1) does: 2755, 1730, 0640.
func ModeOctal(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

// ids is an owner with numeric ids, and what could not be applied.
type ids struct {
	uid, gid int // -1: leave as is
	mode     fs.FileMode
	skipped  string // why the owner cannot be given: printed as skipped
	planned  bool   // the owner is created by an earlier step of this dry run
}

// resolve turns names into ids. A name that does not exist (yet) leaves
// that id alone, and a group that cannot be given also drops the setgid and
// group-write bits meant for it: a shim setgid to root, or a maildrop
// writable by root's group, would be worse than none.
func (in *Installer) resolve(o owner) (ids, error) {
	r := ids{uid: -1, gid: -1, mode: o.mode}
	var missing []string
	uid, ok, err := in.lookupUser(o.user)
	if err != nil {
		return r, err
	}
	if ok {
		r.uid = uid
	} else if in.planned["user:"+o.user] {
		r.planned = true
	} else {
		missing = append(missing, "user "+o.user)
	}
	gid, ok, err := in.lookupGroup(o.group)
	if err != nil {
		return r, err
	}
	if ok {
		r.gid = gid
	} else if in.planned["group:"+o.group] {
		r.planned = true
	} else {
		missing = append(missing, "group "+o.group)
		r.mode &^= fs.ModeSetgid | 0o020
	}
	if in.euid != 0 && !in.dryRun && (r.uid >= 0 || r.gid >= 0) {
		// Only root gives files away; a non-root --root run writes them
		// as itself.
		r.uid, r.gid = -1, -1
		r.mode &^= fs.ModeSetgid | 0o020
		r.skipped = "not root"
	}
	if len(missing) > 0 {
		where := "on this system"
		if in.root != "" {
			where = "in " + filepath.Join(in.root, "etc")
		}
		r.skipped = "no " + strings.Join(missing, ", no ") + " " + where
	}
	return r, nil
}

// matches tells whether fi already has the wanted owner and mode.
func (r ids) matches(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || r.planned {
		return false
	}
	modeBits := fs.ModePerm | fs.ModeSetgid | fs.ModeSetuid | fs.ModeSticky
	return fi.Mode()&modeBits == r.mode &&
		(r.uid < 0 || int(st.Uid) == r.uid) && (r.gid < 0 || int(st.Gid) == r.gid)
}

func describeOwner(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ModeOctal(fi.Mode())
	}
	return fmt.Sprintf("%s %d:%d", ModeOctal(fi.Mode()), st.Uid, st.Gid)
}

// apply chowns, then chmods: chown(2) clears the setgid bit.
// shown is the name printed: path may be the temporary file renamed there.
func (in *Installer) apply(path, shown string, o owner, r ids) error {
	if r.skipped != "" {
		in.say("skipped: chown %s:%s %s (%s); mode %s", o.user, o.group, shown, r.skipped, ModeOctal(r.mode))
	}
	if r.uid >= 0 || r.gid >= 0 {
		if err := os.Lchown(path, r.uid, r.gid); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	if err := os.Chmod(path, r.mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return nil
}

func (in *Installer) dirs() error {
	for _, d := range []struct {
		path string
		o    owner
	}{
		{DataDir, owner{User, maildrop.Group, 0o710}},
		// README "The sendmail shim": group write and search, no group
		// read, sticky; the same as maildrop.Init.
		{DataDir + "/maildrop", owner{User, maildrop.Group, fs.ModeSticky | 0o730}},
		{ConfigDir, owner{"root", "root", 0o755}},
	} {
		if err := in.dir(d.path, d.o); err != nil {
			return err
		}
	}
	return nil
}

func (in *Installer) dir(p string, o owner) error {
	path := in.real(p)
	r, err := in.resolve(o)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s exists and is not a directory", path)
	case err == nil && r.matches(fi):
		in.say("kept existing directory %s (%s)", path, describeOwner(fi))
		return nil
	case err == nil:
		if !in.act("set directory %s to %s (was %s)", path, o, describeOwner(fi)) {
			return nil
		}
	case errors.Is(err, fs.ErrNotExist):
		if !in.act("create directory %s (%s)", path, o) {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		// 0700 until apply gives it its owner and mode.
		if err := os.Mkdir(path, 0o700); err != nil {
			return err
		}
	default:
		return err
	}
	return in.apply(path, path, o, r)
}

// installFile puts data at p (under the root) with owner and mode, through
// a temporary file renamed into place: a running binary cannot be opened
// for writing (ETXTBSY), and a reader never sees half a file. It reports
// whether it replaced a different file.
func (in *Installer) installFile(p string, data []byte, from string, o owner) (replaced bool, err error) {
	path := in.real(p)
	r, err := in.resolve(o)
	if err != nil {
		return false, err
	}
	what := path
	if from != "" {
		what = path + " from " + from
	}
	fi, err := in.lstat(p)
	switch {
	case err == nil && fi.Mode().IsRegular():
		old, err := os.ReadFile(path)
		if err != nil {
			return false, err
		}
		if bytes.Equal(old, data) {
			if r.matches(fi) {
				in.say("unchanged %s (%s)", path, describeOwner(fi))
				return false, nil
			}
			if !in.act("set %s to %s (was %s)", path, o, describeOwner(fi)) {
				return false, nil
			}
			return false, in.apply(path, path, o, r)
		}
		if !in.act("replace %s (%s)", what, o) {
			return true, nil
		}
		replaced = true
	case err == nil && fi.IsDir():
		return false, fmt.Errorf("%s is a directory", path)
	case err == nil || errors.Is(err, fs.ErrNotExist):
		// A symlink (or nothing) is replaced by the file.
		if !in.act("install %s (%s)", what, o) {
			return false, nil
		}
	default:
		return false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	f, err := safeio.Create(path, "", 0o600)
	if err != nil {
		return false, err
	}
	defer f.Abort() // a no-op once committed
	if _, err := f.Write(data); err != nil {
		return false, fmt.Errorf("write %s: %w", f.Name(), err)
	}
	// Owner and mode go on before the rename: the name never shows
	// another's.
	if err := in.apply(f.Name(), path, o, r); err != nil {
		return false, err
	}
	return replaced, f.Commit(safeio.Replace)
}

// writeNew writes a config file only when none is there: the admin's file
// always wins.
func (in *Installer) writeNew(p string, data []byte, o owner) error {
	path := in.real(p)
	if _, err := os.Lstat(path); err == nil {
		in.say("kept existing %s", path)
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	_, err := in.installFile(p, data, "", o)
	return err
}

func (in *Installer) binary() error {
	data, err := os.ReadFile(in.self)
	if err != nil {
		return fmt.Errorf("reading the running binary: %w", err)
	}
	replaced, err := in.installFile(Bin, data, in.self, owner{"root", "root", 0o755})
	in.upgraded = in.upgraded || replaced
	return err
}
