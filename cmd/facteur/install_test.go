package main

// Tests of facteur install (issue 8 §6): the real binary installs under a
// --root directory; the files, modes and owners it leaves, the unit checked
// by systemd-analyze, dpkg diversions in a dpkg database under the root,
// and PHP mail() and cron's line through the installed shim to a loopback MX.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"facteur/relay/config"
	"facteur/relay/install"
)

// Ids of the facteur user and groups in the etc/passwd and etc/group of a
// test root: unused on the test machine, so that a chown to them shows.
const (
	testUID     = 64101
	testGID     = 64101
	testDropGID = 64102
)

// newInstallRoot returns an empty root; withUsers gives it the passwd and group
// files an image has after useradd --root.
func newInstallRoot(t *testing.T, withUsers bool) string {
	t.Helper()
	root := t.TempDir()
	if withUsers {
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		passwd := fmt.Sprintf("root:x:0:0:root:/root:/bin/bash\nfacteur:x:%d:%d:facteur mail relay:/var/lib/facteur:/usr/sbin/nologin\n", testUID, testGID)
		group := fmt.Sprintf("root:x:0:\nfacteur:x:%d:\nfacteur-drop:x:%d:facteur\n", testGID, testDropGID)
		if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// install runs the built facteur install and returns its stdout.
func runInstall(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := boundedCommand(t, bin, append([]string{"install"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("facteur install %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errb.String())
	}
	checkInstallLines(t, out.String())
	return out.String()
}

// installLineRE is every form a step line takes.
var installLineRE = regexp.MustCompile(`^(dry-run: )?(installing under|create|install|replace|set|symlink|divert|add user|systemctl) |^(kept existing|unchanged|skipped:) `)

func checkInstallLines(t *testing.T, out string) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !installLineRE.MatchString(l) {
			t.Errorf("unexpected output line %q", l)
		}
	}
}

type installWant struct {
	path     string
	kind     fs.FileMode // 0 regular, ModeDir, ModeSymlink
	mode     string      // as install.ModeOctal() prints it
	uid, gid int
	same     string // a file whose bytes it must have
	target   string // for a link
}

func checkInstalled(t *testing.T, root string, want []installWant, owners bool) {
	t.Helper()
	for _, w := range want {
		path := filepath.Join(root, w.path)
		fi, err := os.Lstat(path)
		if err != nil {
			t.Errorf("%s: %v", w.path, err)
			continue
		}
		if fi.Mode().Type() != w.kind {
			t.Errorf("%s: type %v, want %v", w.path, fi.Mode().Type(), w.kind)
			continue
		}
		if w.kind == fs.ModeSymlink {
			if got, _ := os.Readlink(path); got != w.target {
				t.Errorf("%s -> %s, want -> %s", w.path, got, w.target)
			}
			continue
		}
		if got := install.ModeOctal(fi.Mode()); got != w.mode {
			t.Errorf("%s: mode %s, want %s", w.path, got, w.mode)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if owners && (int(st.Uid) != w.uid || int(st.Gid) != w.gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", w.path, st.Uid, st.Gid, w.uid, w.gid)
		}
		if w.same != "" {
			a, _ := os.ReadFile(path)
			b, _ := os.ReadFile(w.same)
			if !bytes.Equal(a, b) {
				t.Errorf("%s: not a copy of %s", w.path, w.same)
			}
		}
	}
}

func TestInstallRoot(t *testing.T) {
	bin, shim := binaries(t)
	root := newInstallRoot(t, true)
	out := runInstall(t, bin, "--root", root, "--no-start")
	asRoot := os.Geteuid() == 0
	checkInstalled(t, root, []installWant{
		{path: "var/lib/facteur", kind: fs.ModeDir, mode: "0710", uid: testUID, gid: testDropGID},
		{path: "var/lib/facteur/maildrop", kind: fs.ModeDir, mode: "1730", uid: testUID, gid: testDropGID},
		{path: "etc/facteur", kind: fs.ModeDir, mode: "0755"},
		{path: "etc/facteur/facteur.yaml", mode: "0640", gid: testDropGID},
		{path: "etc/facteur/policy.yaml", mode: "0640", gid: testDropGID},
		{path: "etc/systemd/system/facteur.service", mode: "0644"},
		{path: "usr/local/sbin/facteur", mode: "0755", same: bin},
		{path: "usr/sbin/sendmail", mode: "2755", gid: testDropGID, same: shim},
		{path: "usr/bin/mailq", kind: fs.ModeSymlink, target: "../sbin/sendmail"},
		{path: "usr/bin/newaliases", kind: fs.ModeSymlink, target: "../sbin/sendmail"},
	}, asRoot)
	for _, want := range []string{
		"kept existing group facteur-drop\n",
		"kept existing user facteur\n",
		"skipped: systemctl daemon-reload && systemctl enable --now facteur (--root)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	// Nothing was at the shim's paths: nothing to divert.
	if strings.Contains(out, "divert") {
		t.Errorf("install diverted in an empty root:\n%s", out)
	}
	if asRoot && strings.Contains(out, "skipped: chown") {
		t.Errorf("root with users in etc/passwd skipped a chown:\n%s", out)
	}
	unit, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/facteur.service"))
	if !bytes.Equal(unit, install.UnitText) {
		t.Errorf("the unit written is not the embedded facteur.service")
	}

	// A second run keeps the admin's config and changes nothing else.
	cfgPath := filepath.Join(root, "etc/facteur/facteur.yaml")
	edited := []byte("hostname: edited.example\n")
	if err := os.WriteFile(cfgPath, edited, 0o640); err != nil {
		t.Fatal(err)
	}
	before := installSnapshot(t, root)
	out = runInstall(t, bin, "--root", root, "--no-start")
	for _, want := range []string{"kept existing " + cfgPath, "kept existing " + filepath.Join(root, "etc/facteur/policy.yaml")} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("second run: no %q in:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "kept existing ") && !strings.HasPrefix(l, "unchanged ") &&
			!strings.HasPrefix(l, "skipped: ") && !strings.HasPrefix(l, "installing under ") {
			t.Errorf("second run changed something: %q", l)
		}
	}
	if got, _ := os.ReadFile(cfgPath); !bytes.Equal(got, edited) {
		t.Errorf("second run rewrote the config: %q", got)
	}
	if diff := installDiff(before, installSnapshot(t, root)); diff != "" {
		t.Errorf("second run changed files:\n%s", diff)
	}
}

// Without the users in the image, the owners are skipped, and so are the
// bits meant for the missing group: no setgid-root shim, no maildrop
// writable by root's group.
func TestInstallRootWithoutUsers(t *testing.T) {
	bin, _ := binaries(t)
	root := newInstallRoot(t, false)
	out := runInstall(t, bin, "--root", root, "--no-start")
	checkInstalled(t, root, []installWant{
		{path: "var/lib/facteur", kind: fs.ModeDir, mode: "0710"},
		{path: "var/lib/facteur/maildrop", kind: fs.ModeDir, mode: "1710"},
		{path: "usr/sbin/sendmail", mode: "0755"},
		{path: "etc/facteur/facteur.yaml", mode: "0640"},
	}, false)
	for _, want := range []string{
		"skipped: groupadd --system facteur-drop (--root: run groupadd --root " + root + " --system facteur-drop in the image)",
		"skipped: useradd --system --home-dir /var/lib/facteur --no-create-home --shell /usr/sbin/nologin --comment 'facteur mail relay' --groups facteur-drop --user-group facteur (--root: run useradd --root " + root + " ... in the image)",
		"skipped: chown facteur:facteur-drop " + filepath.Join(root, "var/lib/facteur") + " (no user facteur, no group facteur-drop in " + filepath.Join(root, "etc") + "); mode 0710",
		"skipped: chown root:facteur-drop " + filepath.Join(root, "usr/sbin/sendmail") + " (no group facteur-drop in " + filepath.Join(root, "etc") + "); mode 0755",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

func TestInstallDryRun(t *testing.T) {
	bin, _ := binaries(t)
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, root string)
	}{
		{"empty root", func(*testing.T, string) {}},
		{"installed root with an edited config", func(t *testing.T, root string) {
			runInstall(t, bin, "--root", root, "--no-start")
			os.WriteFile(filepath.Join(root, "etc/facteur/facteur.yaml"), []byte("hostname: x.example\n"), 0o600)
			os.Chmod(filepath.Join(root, "var/lib/facteur"), 0o755)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newInstallRoot(t, true)
			tc.prepare(t, root)
			before := installSnapshot(t, root)
			out := runInstall(t, bin, "--dry-run", "--root", root)
			if diff := installDiff(before, installSnapshot(t, root)); diff != "" {
				t.Errorf("--dry-run changed files:\n%s\noutput:\n%s", diff, out)
			}
			if !strings.Contains(out, "dry-run: ") {
				t.Errorf("--dry-run printed no step:\n%s", out)
			}
		})
	}
}

// A dry run on this very machine prints what a real install would do and
// touches nothing; an MTA package's sendmail would be diverted.
func TestInstallDryRunSystem(t *testing.T) {
	bin, _ := binaries(t)
	watched := []string{install.Bin, install.Sendmail, install.Config, install.Policy, install.Unit, install.DataDir}
	before := map[string]string{}
	for _, p := range watched {
		before[p] = installStatLine(p)
	}
	out := runInstall(t, bin, "--dry-run")
	for _, p := range watched {
		if got := installStatLine(p); got != before[p] {
			t.Errorf("--dry-run changed %s: %s → %s", p, before[p], got)
		}
	}
	if _, err := exec.LookPath("dpkg-query"); err == nil {
		installOwner := exec.Command("dpkg-query", "--search", install.Sendmail).Run() == nil
		divert := "dry-run: divert " + install.Sendmail + " to " + install.Sendmail + ".distrib"
		if installOwner != strings.Contains(out, divert) {
			t.Errorf("a package owns %s: %v; the dry run diverts it: %v\n%s", install.Sendmail, installOwner, !installOwner, out)
		}
		if installOwner && !strings.Contains(out, "dry-run: install "+install.Sendmail+" from ") {
			t.Errorf("after a diversion the shim is installed, not replaced:\n%s", out)
		}
	}
}

func installStatLine(p string) string {
	fi, err := os.Lstat(p)
	if err != nil {
		return "absent"
	}
	return fmt.Sprintf("%v %d %v", fi.Mode(), fi.Size(), fi.ModTime())
}

// installSnapshot records every file under root: type, mode, owner, content.
func installSnapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		v := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(path)
			v += " -> " + l
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			v += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		rel, _ := filepath.Rel(root, path)
		m[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func installDiff(a, b map[string]string) string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, fmt.Sprintf("%s: %q → %q", k, v, b[k]))
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: new %q", k, v))
		}
	}
	return strings.Join(out, "\n")
}

// systemd-analyze verify --root checks the unit against the root: the
// ExecStart binary must exist there. --recursive-errors=no makes a warning
// about our unit an error, and ignores the system units (sysinit.target...)
// an image under construction does not have yet (systemd 252).
func verifyInstalledUnit(t *testing.T, root string) (string, error) {
	t.Helper()
	need(t, "systemd-analyze")
	// ExecReload's /bin/kill (procps) is part of any Debian image; the
	// test root gets a stand-in, since verify checks it is executable.
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/kill"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := boundedCommand(t, "systemd-analyze", "verify", "--recursive-errors=no", "--root="+root, "facteur.service")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestInstallUnitVerifies(t *testing.T) {
	bin, _ := binaries(t)
	root := newInstallRoot(t, true)
	runInstall(t, bin, "--root", root, "--no-start")
	if out, err := verifyInstalledUnit(t, root); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check can fail: a misspelt directive, or no binary at ExecStart.
	unitPath := filepath.Join(root, "etc/systemd/system/facteur.service")
	for _, tc := range []struct {
		name   string
		break_ func()
	}{
		{"misspelt directive", func() {
			os.WriteFile(unitPath, bytes.Replace(install.UnitText, []byte("ProtectSystem=strict"), []byte("ProtectSytem=strict"), 1), 0o644)
		}},
		{"no binary", func() {
			os.WriteFile(unitPath, install.UnitText, 0o644)
			os.Remove(filepath.Join(root, "usr/local/sbin/facteur"))
		}},
	} {
		tc.break_()
		if out, err := verifyInstalledUnit(t, root); err == nil {
			t.Errorf("%s: systemd-analyze verify passed:\n%s", tc.name, out)
		}
	}
}

// systemd-analyze security rates the unit's sandbox from 0 (locked down)
// to 10; 1.7 is what this unit scores on systemd 252 (a service that must
// bind port 25 and reach the Internet cannot reach 0). The bound keeps a
// hardening directive from being dropped unnoticed.
func TestInstallUnitExposure(t *testing.T) {
	bin, _ := binaries(t)
	root := newInstallRoot(t, true)
	runInstall(t, bin, "--root", root, "--no-start")
	if out, err := verifyInstalledUnit(t, root); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	out, err := boundedCommand(t, "systemd-analyze", "security", "--offline=true", "--root="+root, "facteur.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for facteur.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	level, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil || level > 2.0 {
		t.Errorf("exposure level %s, want at most 2.0:\n%s", m[1], out)
	}
	t.Logf("systemd-analyze security: exposure %s", m[1])
}

// A user running install on the system gets exit status 1 and the reason
// (relay/install's TestInstallNeedsRoot checks the refusal itself).
func TestInstallNeedsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		return
	}
	bin, _ := binaries(t)
	dir, err := os.MkdirTemp("", "facteur-install-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	installCopyFile(t, bin, filepath.Join(dir, "facteur"), 0o755)
	cmd := boundedCommand(t, filepath.Join(dir, "facteur"), "install", "--no-start")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "must run as root") {
		t.Errorf("as nobody: %v\n%s", err, out)
	}
}

func installCopyFile(t *testing.T, from, to string, mode fs.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

func TestInstallShimLookup(t *testing.T) {
	bin, shim := binaries(t)
	if err := install.CheckShim(shim); err != nil {
		t.Fatalf("the built shim is not recognised: %v", err)
	}
	if err := install.CheckShim(bin); err == nil {
		t.Fatalf("facteur itself is taken for the shim")
	}
	// facteur alone in its directory: no shim, said so, the rest installed.
	dir := t.TempDir()
	installCopyFile(t, bin, filepath.Join(dir, "facteur"), 0o755)
	root := newInstallRoot(t, true)
	out := runInstall(t, filepath.Join(dir, "facteur"), "--root", root, "--no-start")
	if !strings.Contains(out, "skipped: sendmail shim: no sendmail shim: ") {
		t.Errorf("missing shim not reported:\n%s", out)
	}
	if _, err := os.Lstat(filepath.Join(root, install.Sendmail)); err == nil {
		t.Errorf("a shim was installed without one")
	}
	if _, err := os.Stat(filepath.Join(root, install.Bin)); err != nil {
		t.Errorf("facteur not installed without a shim: %v", err)
	}
	// --shim names it; something else than the shim is refused.
	out = runInstall(t, filepath.Join(dir, "facteur"), "--root", root, "--no-start", "--shim", shim)
	if !strings.Contains(out, "install "+filepath.Join(root, install.Sendmail)+" from "+shim) {
		t.Errorf("--shim not installed:\n%s", out)
	}
	cmd := boundedCommand(t, filepath.Join(dir, "facteur"), "install", "--root", root, "--shim", "/bin/sh")
	if msg, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(msg), "is not facteur's cmd/sendmail") {
		t.Errorf("--shim /bin/sh: %v\n%s", err, msg)
	}
}

// An image with a dpkg database and an MTA package: its sendmail and mailq
// are diverted (kept as .distrib, recorded by dpkg), then replaced.
func TestInstallDivertsPackageFiles(t *testing.T) {
	need(t, "dpkg-divert", "dpkg-query")
	bin, shim := binaries(t)
	root := newInstallRoot(t, true)
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "usr/sbin", "usr/bin"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	status := "Package: exim4-daemon-light\nStatus: install ok installed\nPriority: optional\nSection: mail\nMaintainer: t <t@example.org>\nArchitecture: amd64\nVersion: 4.96-15\nDescription: test MTA\n\n"
	list := "/.\n/usr\n/usr/sbin\n/usr/sbin/sendmail\n/usr/bin\n/usr/bin/mailq\n"
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte(status), 0o644)
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/info/exim4-daemon-light.list"), []byte(list), 0o644)
	exim := []byte("#!/bin/sh\necho exim\n")
	os.WriteFile(filepath.Join(root, "usr/sbin/sendmail"), exim, 0o755)
	os.Symlink("exim4", filepath.Join(root, "usr/bin/mailq"))

	out := runInstall(t, bin, "--root", root, "--no-start")
	for _, p := range []string{install.Sendmail, "/usr/bin/mailq"} {
		if !strings.Contains(out, "divert "+p+" to "+p+".distrib (dpkg-divert --root="+root+" --local --rename --add "+p+")\n") {
			t.Errorf("%s not diverted:\n%s", p, out)
		}
	}
	if strings.Contains(out, "divert /usr/bin/newaliases") {
		t.Errorf("diverted a path that did not exist:\n%s", out)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "usr/sbin/sendmail.distrib")); !bytes.Equal(got, exim) {
		t.Errorf("the MTA's sendmail was not kept: %q", got)
	}
	if got, _ := os.Readlink(filepath.Join(root, "usr/bin/mailq.distrib")); got != "exim4" {
		t.Errorf("the MTA's mailq was not kept: %q", got)
	}
	checkInstalled(t, root, []installWant{
		{path: "usr/sbin/sendmail", mode: "2755", gid: testDropGID, same: shim},
		{path: "usr/bin/mailq", kind: fs.ModeSymlink, target: "../sbin/sendmail"},
	}, os.Geteuid() == 0)
	list2, err := boundedCommand(t, "dpkg-divert", "--root="+root, "--list").CombinedOutput()
	if err != nil || !strings.Contains(string(list2), "local diversion of /usr/sbin/sendmail to /usr/sbin/sendmail.distrib") ||
		!strings.Contains(string(list2), "local diversion of /usr/bin/mailq to /usr/bin/mailq.distrib") {
		t.Errorf("dpkg-divert --list: %v\n%s", err, list2)
	}

	// Again: the diversions are ours already.
	out = runInstall(t, bin, "--root", root, "--no-start")
	if strings.Contains(out, "divert ") || !strings.Contains(out, "kept existing diversion of /usr/sbin/sendmail\n") {
		t.Errorf("second run:\n%s", out)
	}
}

// Issue 8's check: PHP mail() and cron's sendmail line through the
// installed shim reach a loopback MX; mailq works through its link.
func TestInstalledShimClients(t *testing.T) {
	need(t, "php")
	bin, _ := binaries(t)
	root := newInstallRoot(t, true)
	runInstall(t, bin, "--root", root, "--no-start")
	r := startRelay(t, relayOpts{})
	sendmail := filepath.Join(root, install.Sendmail)
	// Root runs the shim here, so FACTEUR_CONFIG is honoured even though
	// it is setgid.
	env := []string{"FACTEUR_CONFIG=" + r.config}
	runTool(t, env, "", "php", "-d", "sendmail_path="+sendmail+" -t -i", "-r",
		`mail("ivan@example.org", "Commande", "Merci\nligne 2\n", "From: shop@example.com");`)
	runTool(t, env, "Cron <root@web1> /usr/local/bin/backup\n\nbackup done\n", sendmail, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root")
	msgs := r.wait(2)
	byRcpt := map[string][]byte{}
	for _, m := range msgs {
		byRcpt[m.Rcpts[0]] = m.Body
	}
	if !bytes.Contains(byRcpt["ivan@example.org"], []byte("Merci\r\nligne 2\r\n")) {
		t.Errorf("PHP mail() through the installed shim: %q", byRcpt)
	}
	if !bytes.Contains(byRcpt["ops@example.org"], []byte("backup done")) {
		t.Errorf("cron's mail to root through the installed shim: %q", byRcpt)
	}
	runTool(t, env, "", filepath.Join(root, "usr/bin/mailq"))
}

// The install on a running system (no --root): groupadd, useradd,
// dpkg-divert of this machine's MTA and the owners, then the installed
// daemon and shim at work, in private mount and network namespaces where
// /etc, /usr and /var are overlays thrown away afterwards, so that the test
// machine is left as it was (and port 25 is the namespace's own).
func TestInstallSystemInOverlay(t *testing.T) {
	need(t, "unshare", "dpkg-divert", "getent", "setpriv", "ip", "bash")
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount overlays: skipping (cmd/facteur)")
	}
	bin, shim := binaries(t)
	tmp := t.TempDir()
	// The trace (set -x) and the daemon's pid go to files: a run that
	// does not end is reported with the step it stood at.
	script := `set -e
exec 9>"$TMP/trace"
BASH_XTRACEFD=9
set -x
for d in etc usr var; do
	mkdir -p "$TMP/$d.upper" "$TMP/$d.work"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$TMP/$d.upper,workdir=$TMP/$d.work" "/$d"
done
echo "== mounted"
sendmail_owner=$(dpkg-query --search /usr/sbin/sendmail 2>/dev/null || true)
echo "== owner $sendmail_owner"
"$BIN" install --no-start --hostname web1.example.com --root-alias ops@example.org
echo "== state"
getent group facteur-drop | cut -d: -f1,4
id -nG facteur
getent passwd facteur | cut -d: -f6,7
stat -c '%n %a %U:%G' /var/lib/facteur /var/lib/facteur/maildrop /usr/sbin/sendmail /usr/local/sbin/facteur /etc/facteur/facteur.yaml /etc/facteur/policy.yaml /etc/systemd/system/facteur.service
readlink /usr/bin/mailq /usr/bin/newaliases
cmp /usr/sbin/sendmail "$SHIM" && echo "shim is the built shim"
dpkg-divert --list | sort
echo "== again"
"$BIN" install --no-start --hostname web1.example.com --root-alias ops@example.org
echo "== run"
ip link set lo up
# www-data (PHP) while the daemon is down: the setgid shim writes into the
# maildrop.
printf 'Subject: dropped\n\nwhile down\n' | setpriv --reuid=www-data --regid=www-data --clear-groups /usr/sbin/sendmail -i ops@example.org
echo "maildrop files: $(find /var/lib/facteur/maildrop -maxdepth 1 -type f | wc -l)"
# The daemon as the unit runs it: user facteur with its groups, no
# capability but CAP_NET_BIND_SERVICE, the installed config. Its log exists
# before it starts: bash opens a background job's redirection in the child,
# and on a loaded machine the lines after the & can run first; tail -f then
# found no file and gave up at once, the steps below ran against a daemon
# still starting, queue list failed, set -e ended the script, and the
# daemon, never stopped, held the test's output open until go test's
# timeout (a loaded run, 2026-12-07).
: >"$TMP/daemon.log"
setpriv --reuid=facteur --regid=facteur --init-groups --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service --bounding-set=-all,+net_bind_service /usr/local/sbin/facteur serve -config /etc/facteur/facteur.yaml 2>>"$TMP/daemon.log" &
pid=$!
echo $pid >"$TMP/daemon.pid"
# However the script ends from here (set -e included), the daemon is
# stopped and its log printed: left running, it would hold the test's
# output pipe open for ever.
trap 'kill $pid 2>/dev/null || true; wait $pid || true; echo "== log"; cat "$TMP/daemon.log"' EXIT
# tail -f waits on the file, not on a clock; timeout only bounds a daemon
# that never picks up. --foreground keeps it in the script's process group,
# which the test kills at the end; its stderr is not the test's pipe.
if grep -m1 -q ' received ' <(timeout --foreground 60 tail -n +1 -f "$TMP/daemon.log" 2>/dev/null); then
	echo "picked up from the maildrop"
else
	echo "nothing picked up from the maildrop within 60 s"
	exit 1
fi
printf 'Subject: live\n\nover SMTP\n' | setpriv --reuid=www-data --regid=www-data --clear-groups /usr/sbin/sendmail -i bob@example.org
/usr/local/sbin/facteur queue list -config /etc/facteur/facteur.yaml
echo "maildrop files: $(find /var/lib/facteur/maildrop -maxdepth 1 -type f | wc -l)"
`
	out, err := runScriptBounded(t, tmp, installScriptTimeout, script, "TMP="+tmp, "BIN="+bin, "SHIM="+shim)
	if !strings.Contains(out, "== mounted") {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot mount overlays: %v\n%s", err, out)
		}
		t.Skipf("cannot mount overlays here (%v): skipping (cmd/facteur)\n%s", err, out)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	_, rest, _ := strings.Cut(out, "== owner ")
	ownerLine, rest, _ := strings.Cut(rest, "\n")
	first, rest, _ := strings.Cut(rest, "== state\n")
	state, rest, _ := strings.Cut(rest, "== again\n")
	again, run, _ := strings.Cut(rest, "== run\n")
	checkInstallLines(t, first)
	checkInstallLines(t, again)
	for _, want := range []string{
		"create group facteur-drop (groupadd --system facteur-drop)\n",
		"create user facteur (useradd --system ",
		"create directory /var/lib/facteur (0710 facteur:facteur-drop)\n",
		"skipped: systemctl daemon-reload && systemctl enable --now facteur (--no-start)\n",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("first run: no %q in:\n%s", want, first)
		}
	}
	for _, want := range []string{
		"facteur-drop:facteur\n",
		"/var/lib/facteur:/usr/sbin/nologin\n",
		"/var/lib/facteur 710 facteur:facteur-drop\n",
		"/var/lib/facteur/maildrop 1730 facteur:facteur-drop\n",
		"/usr/sbin/sendmail 2755 root:facteur-drop\n",
		"/usr/local/sbin/facteur 755 root:root\n",
		"/etc/facteur/facteur.yaml 640 root:facteur-drop\n",
		"/etc/facteur/policy.yaml 640 root:facteur-drop\n",
		"/etc/systemd/system/facteur.service 644 root:root\n",
		"../sbin/sendmail\n../sbin/sendmail\n",
		"shim is the built shim\n",
	} {
		if !strings.Contains(state, want) {
			t.Errorf("after install: no %q in:\n%s", want, state)
		}
	}
	if !regexp.MustCompile(`(?m)^facteur( \S+)* facteur-drop`).MatchString(state) && !regexp.MustCompile(`(?m)^facteur-drop( \S+)* facteur`).MatchString(state) {
		t.Errorf("user facteur not in groups facteur and facteur-drop:\n%s", state)
	}
	if strings.TrimSpace(ownerLine) != "" {
		// An MTA package owns sendmail here: it is kept as .distrib.
		if !strings.Contains(state, "local diversion of /usr/sbin/sendmail to /usr/sbin/sendmail.distrib") {
			t.Errorf("%s: not diverted:\n%s", ownerLine, state)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(again), "\n") {
		if !strings.HasPrefix(l, "kept existing ") && !strings.HasPrefix(l, "unchanged ") && !strings.HasPrefix(l, "skipped: ") {
			t.Errorf("second run changed something: %q\n%s", l, again)
		}
	}
	// What was installed works together as the unit would run it: the
	// shim as www-data writes into the maildrop, the daemon as facteur
	// (not root, only CAP_NET_BIND_SERVICE) reads the 0640 config, binds
	// port 25, ingests the maildrop and takes the shim's SMTP submission.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`maildrop files: 1\npicked up from the maildrop\n`),
		regexp.MustCompile(` started listen=\[127\.0\.0\.1:25\] `),
		// Both known by the kernel as www-data (issue 11 §1): the maildrop
		// file's owner, then SO_PEERCRED on DATA_DIR/public/submit.sock.
		regexp.MustCompile(` received from=<www-data@web1\.example\.com> .* proto=local uid=33 user=www-data .*rcpt=<ops@example\.org>`),
		regexp.MustCompile(` received from=<www-data@web1\.example\.com> .* proto=local uid=33 user=www-data .*rcpt=<bob@example\.org>`),
		regexp.MustCompile(`(?m)^maildrop files: 0$`),
	} {
		if !want.MatchString(run) {
			t.Errorf("installed system: no %s in:\n%s", want, run)
		}
	}
}

// Issue 11 §4: install writes an admin token only with --tcp-admin, in a
// file only root and facteur read, named by the config; the unit has
// resource ceilings (§3).
func TestInstallTCPAdminToken(t *testing.T) {
	bin, _ := binaries(t)
	asRoot := os.Geteuid() == 0
	for _, tc := range []struct {
		name      string
		args      []string
		wantToken bool
	}{
		{"default: no token", nil, false},
		{"--tcp-admin", []string{"--tcp-admin"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newInstallRoot(t, true)
			out := runInstall(t, bin, append([]string{"--root", root, "--no-start"}, tc.args...)...)
			tokPath := filepath.Join(root, "etc/facteur/admin.token")
			cfgText, err := os.ReadFile(filepath.Join(root, "etc/facteur/facteur.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			c, err := config.Parse(install.Config, cfgText)
			if err != nil {
				t.Fatal(err)
			}
			_, err = os.Stat(tokPath)
			if !tc.wantToken {
				if err == nil || c.AdminTokenFile != "" || c.AdminToken != "" {
					t.Errorf("a token without --tcp-admin: stat %v, admin_token_file %q", err, c.AdminTokenFile)
				}
				return
			}
			if err != nil {
				t.Fatalf("no token file: %v\n%s", err, out)
			}
			checkInstalled(t, root, []installWant{{path: "etc/facteur/admin.token", mode: "0600", uid: testUID, gid: testGID}}, asRoot)
			tok, _ := os.ReadFile(tokPath)
			if len(strings.TrimSpace(string(tok))) != 64 {
				t.Errorf("token %q is not 32 random bytes in hex", tok)
			}
			if strings.Contains(out, strings.TrimSpace(string(tok))) {
				t.Errorf("install printed the token")
			}
			if c.AdminTokenFile != install.AdminToken {
				t.Errorf("admin_token_file %q, want %s", c.AdminTokenFile, install.AdminToken)
			}
			// A second run keeps the token.
			runInstall(t, bin, append([]string{"--root", root, "--no-start"}, tc.args...)...)
			if again, _ := os.ReadFile(tokPath); !bytes.Equal(again, tok) {
				t.Errorf("a second run changed the token")
			}
		})
	}
	for _, l := range []string{"MemoryMax=", "LimitNOFILE=", "TasksMax="} {
		if !bytes.Contains(install.UnitText, []byte("\n"+l)) {
			t.Errorf("the unit sets no %s", l)
		}
	}
}

// TestInstallRootAliasAndHostname: install writes --root-alias into the new
// config, warns loudly (stderr) when root has no alias or the host name is
// not fully qualified, refuses a bad address, and never waits for an answer
// when not run on a terminal.
func TestInstallRootAliasAndHostname(t *testing.T) {
	bin, _ := binaries(t)
	run := func(args ...string) (string, string, error) {
		cmd := boundedCommand(t, bin, append([]string{"install", "--no-start"}, args...)...)
		cmd.Stdin = strings.NewReader("") // not a terminal: no question
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	root := newInstallRoot(t, true)
	_, stderr, err := run("--root", root, "--hostname", "vm")
	if err != nil {
		t.Fatal(err, stderr)
	}
	for _, want := range []string{`WARNING: hostname "vm" is not fully qualified`, "WARNING: root has no alias", "--root-alias"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("no %q in stderr:\n%s", want, stderr)
		}
	}
	root = newInstallRoot(t, true)
	_, stderr, err = run("--root", root, "--hostname", "web1.example.com", "--root-alias", "ops@example.org")
	if err != nil {
		t.Fatal(err, stderr)
	}
	if strings.Contains(stderr, "WARNING") {
		t.Errorf("warnings with a FQDN and a root alias:\n%s", stderr)
	}
	c, err := config.Load(filepath.Join(root, "etc/facteur/facteur.yaml"))
	if err != nil || c.Aliases["root"] != "ops@example.org" {
		t.Errorf("installed config: %v %+v", err, c)
	}
	// /etc/aliases giving root an address is enough.
	root = newInstallRoot(t, true)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/aliases"), []byte("postmaster: root\nroot: admin@example.org\n"), 0o644)
	if _, stderr, err = run("--root", root, "--hostname", "web1.example.com"); err != nil || strings.Contains(stderr, "root has no alias") {
		t.Errorf("with /etc/aliases: %v\n%s", err, stderr)
	}
	if _, stderr, err = run("--root", newInstallRoot(t, true), "--hostname", "web1.example.com", "--root-alias", "bob@@example.org"); err == nil || !strings.Contains(stderr, "--root-alias") {
		t.Errorf("bad --root-alias accepted: %v\n%s", err, stderr)
	}
}
