package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"facteur/queue/maildrop"
)

func (in *Installer) group() error {
	if _, ok, err := in.lookupGroup(maildrop.Group); err != nil {
		return err
	} else if ok {
		in.say("kept existing group %s", maildrop.Group)
		return nil
	}
	args := []string{"--system", maildrop.Group}
	if in.root != "" {
		in.say("skipped: groupadd %s (--root: run groupadd --root %s %s in the image)", shellJoin(args), in.root, shellJoin(args))
		return nil
	}
	if !in.act("create group %s (groupadd %s)", maildrop.Group, shellJoin(args)) {
		in.planned["group:"+maildrop.Group] = true
		return nil
	}
	return runSystemCmd("groupadd", args...)
}

func (in *Installer) user() error {
	_, ok, err := in.lookupUser(User)
	if err != nil {
		return err
	}
	if ok {
		in.say("kept existing user %s", User)
		return in.membership()
	}
	args := []string{"--system", "--home-dir", DataDir, "--no-create-home",
		"--shell", "/usr/sbin/nologin", "--comment", "facteur mail relay", "--groups", maildrop.Group}
	// The unit runs with Group=facteur: the user's own group, unless a
	// group of that name is already there.
	if _, ok, err := in.lookupGroup(User); err != nil {
		return err
	} else if ok {
		args = append(args, "--gid", User)
	} else {
		args = append(args, "--user-group")
	}
	args = append(args, User)
	if in.root != "" {
		in.say("skipped: useradd %s (--root: run useradd --root %s ... in the image)", shellJoin(args), in.root)
		return nil
	}
	if !in.act("create user %s (useradd %s)", User, shellJoin(args)) {
		in.planned["user:"+User] = true
		in.planned["group:"+User] = true
		return nil
	}
	return runSystemCmd("useradd", args...)
}

// membership adds an existing facteur user to facteur-drop, which it needs
// to read the maildrop files.
func (in *Installer) membership() error {
	if in.root != "" {
		return nil // group files under a root are the image builder's
	}
	u, err := user.Lookup(User)
	if err != nil {
		return fmt.Errorf("user %s: %w", User, err)
	}
	g, err := user.LookupGroup(maildrop.Group)
	if err != nil {
		if in.planned["group:"+maildrop.Group] {
			in.act("add user %s to group %s (usermod --append --groups %s %s)", User, maildrop.Group, maildrop.Group, User)
			return nil
		}
		return fmt.Errorf("group %s: %w", maildrop.Group, err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return fmt.Errorf("groups of %s: %w", User, err)
	}
	if slices.Contains(gids, g.Gid) {
		return nil
	}
	if !in.act("add user %s to group %s (usermod --append --groups %s %s)", User, maildrop.Group, maildrop.Group, User) {
		return nil
	}
	return runSystemCmd("usermod", "--append", "--groups", maildrop.Group, User)
}

// lookupUser finds a user of the installed system: the running one's
// (os/user, NSS included), or the root's etc/passwd.
func (in *Installer) lookupUser(name string) (int, bool, error) {
	if name == "root" {
		return 0, true, nil
	}
	if in.root == "" {
		u, err := user.Lookup(name)
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return -1, false, nil
		}
		if err != nil {
			return -1, false, fmt.Errorf("user %s: %w", name, err)
		}
		id, err := strconv.Atoi(u.Uid)
		return id, err == nil, err
	}
	return lookupIDFile(filepath.Join(in.root, "etc/passwd"), name)
}

func (in *Installer) lookupGroup(name string) (int, bool, error) {
	if name == "root" {
		return 0, true, nil
	}
	if in.root == "" {
		g, err := user.LookupGroup(name)
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return -1, false, nil
		}
		if err != nil {
			return -1, false, fmt.Errorf("group %s: %w", name, err)
		}
		id, err := strconv.Atoi(g.Gid)
		return id, err == nil, err
	}
	return lookupIDFile(filepath.Join(in.root, "etc/group"), name)
}

// lookupIDFile reads the id of name from a passwd(5) or group(5) file
// (name:x:id:...). A missing file is "no such name": an image without its
// etc yet.
func lookupIDFile(path, name string) (int, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, false, nil
	}
	if err != nil {
		return -1, false, err
	}
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 || f[0] != name {
			continue
		}
		id, err := strconv.Atoi(f[2])
		if err != nil || id < 0 {
			return -1, false, fmt.Errorf("%s:%d: bad id %q for %s", path, i+1, f[2], name)
		}
		return id, true, nil
	}
	return -1, false, nil
}
