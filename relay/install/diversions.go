package install

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"facteur/queue/maildrop"
	"facteur/safeio"
)

// shimPackage is the main package of the sendmail shim, as Go records it in
// the binary's build info: it tells our shim from another MTA's sendmail,
// both when looking for the shim to install and when deciding whether what
// is at /usr/sbin/sendmail is already ours.
const shimPackage = "facteur/cmd/sendmail"

// CheckShim tells whether path is facteur's sendmail shim.
func CheckShim(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("no sendmail shim: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("no sendmail shim: %s is not an executable file", path)
	}
	if !isShim(path) {
		return fmt.Errorf("no sendmail shim: %s is not facteur's cmd/sendmail", path)
	}
	return nil
}

func isShim(path string) bool {
	bi, err := buildinfo.ReadFile(path)
	return err == nil && bi.Path == shimPackage
}

// sendmail installs the shim as /usr/sbin/sendmail with its two links,
// each diverted first when an MTA package owns what is there.
func (in *Installer) sendmail() error {
	if in.shim == "" {
		in.say("skipped: sendmail shim: %s", in.noShim)
		return nil
	}
	data, err := os.ReadFile(in.shim)
	if err != nil {
		return fmt.Errorf("reading the shim: %w", err)
	}
	if err := in.divert(Sendmail); err != nil {
		return err
	}
	// root:facteur-drop 2755: any user may run it; setgid, it can write
	// into the 1730 maildrop and read the 0640 config.
	if _, err := in.installFile(Sendmail, data, in.shim, owner{"root", maildrop.Group, fs.ModeSetgid | 0o755}); err != nil {
		return err
	}
	for _, l := range Links {
		if err := in.divert(l); err != nil {
			return err
		}
		if err := in.link(l); err != nil {
			return err
		}
	}
	return nil
}

func (in *Installer) link(p string) error {
	path := in.real(p)
	fi, err := in.lstat(p)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		if t, err := os.Readlink(path); err == nil && t == LinkTarget {
			in.say("unchanged %s -> %s", path, LinkTarget)
			return nil
		}
	case err == nil && fi.IsDir():
		return fmt.Errorf("%s is a directory", path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if !in.act("symlink %s -> %s", path, LinkTarget) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// Link beside, then rename over: the name never goes missing.
	tmp := filepath.Join(filepath.Dir(path), ".facteur-install-"+filepath.Base(path))
	os.Remove(tmp)
	if err := os.Symlink(LinkTarget, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return safeio.SyncDir(filepath.Dir(path), nil)
}

// divert moves what an MTA package installed at p aside (p.distrib) and
// tells dpkg, so that the package's upgrades write there and never over the
// shim; removing the diversion later brings it back.
func (in *Installer) divert(p string) error {
	path := in.real(p)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var dpkgRoot []string
	if in.root != "" {
		// An image with a dpkg database is diverted in its own database.
		if _, err := os.Stat(filepath.Join(in.root, "var/lib/dpkg/status")); err != nil {
			if !in.isOurs(p, fi) {
				in.say("skipped: dpkg-divert --local --rename --add %s (no dpkg database under %s): the shim replaces %s", p, in.root, path)
			}
			return nil
		}
		dpkgRoot = []string{"--root=" + in.root}
	} else if _, err := exec.LookPath("dpkg-divert"); err != nil {
		if !in.isOurs(p, fi) {
			in.say("skipped: dpkg-divert (no dpkg on this system): the shim replaces %s", path)
		}
		return nil
	}
	out, err := exec.Command("dpkg-divert", append(dpkgRoot, "--listpackage", p)...).Output()
	if err != nil {
		return fmt.Errorf("dpkg-divert --listpackage %s: %w", p, err)
	}
	if by := strings.TrimSpace(string(out)); by != "" {
		if by != "LOCAL" {
			return fmt.Errorf("%s is diverted by package %s: remove that diversion first", p, by)
		}
		in.say("kept existing diversion of %s", p)
		return nil
	}
	// A file no package owns that is already the shim (or a link to it)
	// is ours from an earlier install: nothing to keep.
	owners, err := exec.Command("dpkg-query", append(dpkgRoot, "--search", p)...).Output()
	owner := err == nil
	if !owner && in.isOurs(p, fi) {
		return nil
	}
	// The facteur package's own file (build/deb) is the shim: diverting
	// it would hide the package's upgrades.
	if owner && strings.HasPrefix(string(owners), "facteur: ") && in.isOurs(p, fi) {
		return nil
	}
	args := append(dpkgRoot, "--local", "--rename", "--add", p)
	if !in.act("divert %s to %s.distrib (dpkg-divert %s)", p, p, strings.Join(args, " ")) {
		in.gone[p] = true
		return nil
	}
	return runSystemCmd("dpkg-divert", args...)
}

// isOurs tells whether what is at p was put there by facteur install.
func (in *Installer) isOurs(p string, fi fs.FileInfo) bool {
	path := in.real(p)
	if fi.Mode()&fs.ModeSymlink != 0 {
		t, err := os.Readlink(path)
		return err == nil && (t == LinkTarget || t == Sendmail)
	}
	return isShim(path)
}
