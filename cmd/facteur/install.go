package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"debug/buildinfo"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"facteur/relay/address"
	"facteur/relay/aliases"
	"facteur/relay/config"
	"facteur/safeio"
)

// facteur install (issue 8 §6): set up a Debian/Ubuntu web server the way
// README's "The sendmail shim" section describes by hand.

// Where things go on the installed system. The unit (facteur.service) names
// the same paths; a test checks that they agree.
const (
	installUser      = "facteur"
	installBin       = "/usr/local/sbin/facteur"
	installDataDir   = "/var/lib/facteur"
	installConfigDir = "/etc/facteur"
	installConfig    = "/etc/facteur/facteur.yaml"
	installPolicy    = "/etc/facteur/policy.yaml"
	// installAdminToken is written with --tcp-admin only: the CLI needs no
	// token (it uses the admin socket), scripts over TCP do.
	installAdminToken = "/etc/facteur/admin.token"
	installUnit       = "/etc/systemd/system/facteur.service"
	installSendmail   = "/usr/sbin/sendmail"
	// The mailq and newaliases links are relative, as Debian's MTAs ship
	// them, so that they also resolve inside an image built with --root.
	installLinkTarget = "../sbin/sendmail"
)

// installLinks are the shim's other names; it reads its mode from argv[0].
var installLinks = []string{"/usr/bin/mailq", "/usr/bin/newaliases"}

// shimPackage is the main package of the sendmail shim, as Go records it in
// the binary's build info: it tells our shim from another MTA's sendmail,
// both when looking for the shim to install and when deciding whether what
// is at /usr/sbin/sendmail is already ours.
const shimPackage = "facteur/cmd/sendmail"

//go:embed facteur.service
var installUnitText []byte

const installUsage = `usage: facteur install [--dry-run] [--root DIR] [--no-start] [--shim PATH] [--hostname FQDN] [--root-alias ADDR] [--tcp-admin]

Sets up facteur on a Debian/Ubuntu server: the facteur-drop group and the
facteur user, ` + installDataDir + ` and its maildrop, ` + installBin + `,
the sendmail shim as ` + installSendmail + ` (with mailq and newaliases, diverted
with dpkg-divert from the MTA package they replace), ` + installConfig + `
and ` + installPolicy + ` (never overwritten), the systemd unit, then
systemctl enable --now facteur. Each step is one line on stdout. With
--tcp-admin, a random token in ` + installAdminToken + ` (0600, facteur) lets
scripts use the TCP admin listener; without it, that listener serves only
/metrics and /healthz, and admin actions go through the CLI as root.`

func cmdInstall(args []string) int {
	fs := flag.NewFlagSet("facteur install", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), installUsage)
		fmt.Fprintln(fs.Output(), "\nflags:")
		fs.PrintDefaults()
	}
	dryRun := fs.Bool("dry-run", false, "print each step, change nothing")
	root := fs.String("root", "", "install the files under DIR (an image being built); steps that need the running system are printed as skipped")
	noStart := fs.Bool("no-start", false, "do not run systemctl enable --now facteur")
	shim := fs.String("shim", "", "the sendmail shim binary (default: sendmail next to this facteur binary)")
	hostname := fs.String("hostname", "", "hostname: written in the config, a fully qualified name (default: this machine's host name)")
	rootAlias := fs.String("root-alias", "", "address that gets root's mail (cron, system tools); asked for when run on a terminal")
	tcpAdmin := fs.Bool("tcp-admin", false, "enable admin actions on the TCP admin listener: write a random token to "+installAdminToken+" and name it in the config")
	pos, err := parseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintln(os.Stderr, installUsage)
		return 2
	}
	in, err := newInstaller(installOptions{
		Root: *root, DryRun: *dryRun, NoStart: *noStart, Shim: *shim, Hostname: *hostname,
		RootAlias: *rootAlias, TCPAdmin: *tcpAdmin, Out: os.Stdout, Err: os.Stderr, Euid: os.Geteuid(),
		Ask: askOnTerminal(os.Stdin, os.Stderr),
	})
	if err != nil {
		return fail("install: %v", err)
	}
	if err := in.install(); err != nil {
		return fail("install: %v", err)
	}
	return 0
}

type installOptions struct {
	Root     string // "" or "/": the running system
	DryRun   bool
	NoStart  bool
	Shim     string // "": look next to the running binary
	Hostname string // "": os.Hostname
	// TCPAdmin writes an admin token and names it in the config.
	TCPAdmin bool
	// RootAlias is the address root's mail goes to; "" asks Ask, if any.
	RootAlias string
	// Ask asks the operator a question and returns the answer; nil when
	// not on a terminal: install then never waits for an answer.
	Ask  func(question string) (string, error)
	Out  io.Writer
	Err  io.Writer // the loud warnings; nil: Out
	Euid int
}

// askOnTerminal returns a question asker when in is a terminal, nil
// otherwise (a script, a pipe, a CI job: never block on a prompt).
func askOnTerminal(in *os.File, out io.Writer) func(string) (string, error) {
	if _, err := unix.IoctlGetTermios(int(in.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	r := bufio.NewReader(in)
	return func(q string) (string, error) {
		fmt.Fprint(out, q)
		line, err := r.ReadString('\n')
		if err != nil && line == "" {
			return "", err
		}
		return strings.TrimSpace(line), nil
	}
}

// installer carries out the steps. Paths in its fields are the installed
// system's (/etc/...); real() maps them under the root.
type installer struct {
	root     string
	dryRun   bool
	noStart  bool
	out      io.Writer
	self     string // the running facteur binary
	shim     string // the shim binary to install; "" when there is none
	noShim   string // why there is none
	hostname string
	tcpAdmin bool
	euid     int
	errOut   io.Writer
	// rootAlias is written in a new config; ask asks for it (nil: no terminal).
	rootAlias string
	ask       func(string) (string, error)
	// planned are the user and group names that a dry run on the running
	// system would create: later steps print owners for them as if they
	// existed.
	planned map[string]bool
	// upgraded is set when the binary or the unit replaced a different
	// one, so that a running daemon must restart to use it.
	upgraded bool
	// gone are the paths a dry run would have diverted away: later steps
	// see them absent, as the real run would.
	gone map[string]bool
}

// installHostnameRE is what may go unquoted into the YAML and into EHLO.
var installHostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

func newInstaller(o installOptions) (*installer, error) {
	in := &installer{dryRun: o.DryRun, noStart: o.NoStart, out: o.Out, euid: o.Euid, planned: map[string]bool{}, gone: map[string]bool{},
		errOut: o.Err, rootAlias: o.RootAlias, ask: o.Ask}
	if in.errOut == nil {
		in.errOut = o.Out
	}
	if in.rootAlias != "" {
		if _, err := address.Parse(in.rootAlias, false); err != nil {
			return nil, fmt.Errorf("--root-alias %q: %v (want an address such as ops@example.com)", in.rootAlias, err)
		}
	}
	if o.Root != "" {
		abs, err := filepath.Abs(o.Root)
		if err != nil {
			return nil, fmt.Errorf("--root %s: %w", o.Root, err)
		}
		if abs != "/" {
			in.root = abs
		}
	}
	if in.root == "" && !in.dryRun && in.euid != 0 {
		return nil, errors.New("must run as root to set up this system (--dry-run prints the steps; --root DIR installs the files under DIR)")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the running binary: %w", err)
	}
	if in.self, err = filepath.EvalSymlinks(self); err != nil {
		return nil, fmt.Errorf("finding the running binary: %w", err)
	}
	// The shim is built with facteur (go build -o bin/ ./cmd/facteur
	// ./cmd/sendmail), so it is looked for next to it.
	switch {
	case o.Shim != "":
		if err := checkShim(o.Shim); err != nil {
			return nil, fmt.Errorf("--shim: %w", err)
		}
		in.shim = o.Shim
	default:
		cand := filepath.Join(filepath.Dir(in.self), "sendmail")
		if err := checkShim(cand); err != nil {
			in.noShim = err.Error() + " (build it with go build -o bin/ ./cmd/facteur ./cmd/sendmail, or give --shim PATH)"
		} else {
			in.shim = cand
		}
	}
	in.hostname = o.Hostname
	in.tcpAdmin = o.TCPAdmin
	if in.hostname == "" {
		if in.hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("host name: %w (give --hostname)", err)
		}
	}
	if !installHostnameRE.MatchString(in.hostname) {
		return nil, fmt.Errorf("host name %q is not a DNS name (give --hostname)", in.hostname)
	}
	return in, nil
}

// warn prints a warning the operator must not miss.
func (in *installer) warn(format string, args ...any) {
	fmt.Fprintf(in.errOut, "WARNING: "+format+"\n", args...)
}

// checkShim tells whether path is facteur's sendmail shim.
func checkShim(path string) error {
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

// lstat is os.Lstat of p under the root, as the run so far left it.
func (in *installer) lstat(p string) (fs.FileInfo, error) {
	if in.gone[p] {
		return nil, &fs.PathError{Op: "lstat", Path: in.real(p), Err: fs.ErrNotExist}
	}
	return os.Lstat(in.real(p))
}

func (in *installer) real(p string) string {
	if in.root == "" {
		return p
	}
	return filepath.Join(in.root, p)
}

// act prints a step that changes something; a dry run stops there.
func (in *installer) act(format string, args ...any) bool {
	if in.dryRun {
		fmt.Fprintf(in.out, "dry-run: "+format+"\n", args...)
		return false
	}
	fmt.Fprintf(in.out, format+"\n", args...)
	return true
}

// say prints a step that changes nothing: kept, unchanged, skipped.
func (in *installer) say(format string, args ...any) {
	fmt.Fprintf(in.out, format+"\n", args...)
}

func (in *installer) install() error {
	if in.root != "" {
		in.say("installing under %s", in.root)
	}
	steps := []func() error{
		in.group, in.user, in.dirs, in.binary, in.sendmail, in.configs, in.unit, in.start,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// shellJoin prints a command's arguments so that they can be pasted.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"\\$`;&|<>*?()[]{}#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// runSystemCmd runs a system command, its output in the error.
func runSystemCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (in *installer) group() error {
	if _, ok, err := in.lookupGroup(dropGroup); err != nil {
		return err
	} else if ok {
		in.say("kept existing group %s", dropGroup)
		return nil
	}
	args := []string{"--system", dropGroup}
	if in.root != "" {
		in.say("skipped: groupadd %s (--root: run groupadd --root %s %s in the image)", shellJoin(args), in.root, shellJoin(args))
		return nil
	}
	if !in.act("create group %s (groupadd %s)", dropGroup, shellJoin(args)) {
		in.planned["group:"+dropGroup] = true
		return nil
	}
	return runSystemCmd("groupadd", args...)
}

func (in *installer) user() error {
	_, ok, err := in.lookupUser(installUser)
	if err != nil {
		return err
	}
	if ok {
		in.say("kept existing user %s", installUser)
		return in.membership()
	}
	args := []string{"--system", "--home-dir", installDataDir, "--no-create-home",
		"--shell", "/usr/sbin/nologin", "--comment", "facteur mail relay", "--groups", dropGroup}
	// The unit runs with Group=facteur: the user's own group, unless a
	// group of that name is already there.
	if _, ok, err := in.lookupGroup(installUser); err != nil {
		return err
	} else if ok {
		args = append(args, "--gid", installUser)
	} else {
		args = append(args, "--user-group")
	}
	args = append(args, installUser)
	if in.root != "" {
		in.say("skipped: useradd %s (--root: run useradd --root %s ... in the image)", shellJoin(args), in.root)
		return nil
	}
	if !in.act("create user %s (useradd %s)", installUser, shellJoin(args)) {
		in.planned["user:"+installUser] = true
		in.planned["group:"+installUser] = true
		return nil
	}
	return runSystemCmd("useradd", args...)
}

// membership adds an existing facteur user to facteur-drop, which it needs
// to read the maildrop files.
func (in *installer) membership() error {
	if in.root != "" {
		return nil // group files under a root are the image builder's
	}
	u, err := user.Lookup(installUser)
	if err != nil {
		return fmt.Errorf("user %s: %w", installUser, err)
	}
	g, err := user.LookupGroup(dropGroup)
	if err != nil {
		if in.planned["group:"+dropGroup] {
			in.act("add user %s to group %s (usermod --append --groups %s %s)", installUser, dropGroup, dropGroup, installUser)
			return nil
		}
		return fmt.Errorf("group %s: %w", dropGroup, err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return fmt.Errorf("groups of %s: %w", installUser, err)
	}
	if slices.Contains(gids, g.Gid) {
		return nil
	}
	if !in.act("add user %s to group %s (usermod --append --groups %s %s)", installUser, dropGroup, dropGroup, installUser) {
		return nil
	}
	return runSystemCmd("usermod", "--append", "--groups", dropGroup, installUser)
}

// lookupUser finds a user of the installed system: the running one's
// (os/user, NSS included), or the root's etc/passwd.
func (in *installer) lookupUser(name string) (int, bool, error) {
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

func (in *installer) lookupGroup(name string) (int, bool, error) {
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

// installOwner is a wanted owner and mode.
type installOwner struct {
	user, group string
	mode        fs.FileMode // permission bits plus ModeSetgid, ModeSticky
}

func (o installOwner) String() string {
	return fmt.Sprintf("%s %s:%s", modeOctal(o.mode), o.user, o.group)
}

// modeOctal writes a mode as chmod(1) does: 2755, 1730, 0640.
func modeOctal(m fs.FileMode) string {
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

// installIDs is an installOwner with numeric ids, and what could not be applied.
type installIDs struct {
	uid, gid int // -1: leave as is
	mode     fs.FileMode
	skipped  string // why the owner cannot be given: printed as skipped
	planned  bool   // the owner is created by an earlier step of this dry run
}

// resolve turns names into ids. A name that does not exist (yet) leaves
// that id alone, and a group that cannot be given also drops the setgid and
// group-write bits meant for it: a shim setgid to root, or a maildrop
// writable by root's group, would be worse than none.
func (in *installer) resolve(o installOwner) (installIDs, error) {
	r := installIDs{uid: -1, gid: -1, mode: o.mode}
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
func (r installIDs) matches(fi fs.FileInfo) bool {
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
		return modeOctal(fi.Mode())
	}
	return fmt.Sprintf("%s %d:%d", modeOctal(fi.Mode()), st.Uid, st.Gid)
}

// apply chowns, then chmods: chown(2) clears the setgid bit.
// shown is the name printed: path may be the temporary file renamed there.
func (in *installer) apply(path, shown string, o installOwner, r installIDs) error {
	if r.skipped != "" {
		in.say("skipped: chown %s:%s %s (%s); mode %s", o.user, o.group, shown, r.skipped, modeOctal(r.mode))
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

func (in *installer) dirs() error {
	for _, d := range []struct {
		path string
		o    installOwner
	}{
		{installDataDir, installOwner{installUser, dropGroup, 0o710}},
		// README "The sendmail shim": group write and search, no group
		// read, sticky; the same as maildrop.Init.
		{installDataDir + "/maildrop", installOwner{installUser, dropGroup, fs.ModeSticky | 0o730}},
		{installConfigDir, installOwner{"root", "root", 0o755}},
	} {
		if err := in.dir(d.path, d.o); err != nil {
			return err
		}
	}
	return nil
}

func (in *installer) dir(p string, o installOwner) error {
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
func (in *installer) installFile(p string, data []byte, from string, o installOwner) (replaced bool, err error) {
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
func (in *installer) writeNew(p string, data []byte, o installOwner) error {
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

func (in *installer) binary() error {
	data, err := os.ReadFile(in.self)
	if err != nil {
		return fmt.Errorf("reading the running binary: %w", err)
	}
	replaced, err := in.installFile(installBin, data, in.self, installOwner{"root", "root", 0o755})
	in.upgraded = in.upgraded || replaced
	return err
}

// sendmail installs the shim as /usr/sbin/sendmail with its two links,
// each diverted first when an MTA package owns what is there.
func (in *installer) sendmail() error {
	if in.shim == "" {
		in.say("skipped: sendmail shim: %s", in.noShim)
		return nil
	}
	data, err := os.ReadFile(in.shim)
	if err != nil {
		return fmt.Errorf("reading the shim: %w", err)
	}
	if err := in.divert(installSendmail); err != nil {
		return err
	}
	// root:facteur-drop 2755: any user may run it; setgid, it can write
	// into the 1730 maildrop and read the 0640 config.
	if _, err := in.installFile(installSendmail, data, in.shim, installOwner{"root", dropGroup, fs.ModeSetgid | 0o755}); err != nil {
		return err
	}
	for _, l := range installLinks {
		if err := in.divert(l); err != nil {
			return err
		}
		if err := in.link(l); err != nil {
			return err
		}
	}
	return nil
}

func (in *installer) link(p string) error {
	path := in.real(p)
	fi, err := in.lstat(p)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		if t, err := os.Readlink(path); err == nil && t == installLinkTarget {
			in.say("unchanged %s -> %s", path, installLinkTarget)
			return nil
		}
	case err == nil && fi.IsDir():
		return fmt.Errorf("%s is a directory", path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if !in.act("symlink %s -> %s", path, installLinkTarget) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// Link beside, then rename over: the name never goes missing.
	tmp := filepath.Join(filepath.Dir(path), ".facteur-install-"+filepath.Base(path))
	os.Remove(tmp)
	if err := os.Symlink(installLinkTarget, tmp); err != nil {
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
func (in *installer) divert(p string) error {
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
func (in *installer) isOurs(p string, fi fs.FileInfo) bool {
	path := in.real(p)
	if fi.Mode()&fs.ModeSymlink != 0 {
		t, err := os.Readlink(path)
		return err == nil && (t == installLinkTarget || t == installSendmail)
	}
	return isShim(path)
}

func (in *installer) configs() error {
	o := installOwner{"root", dropGroup, 0o640}
	if !strings.Contains(in.hostname, ".") {
		in.warn("hostname %q is not fully qualified: it names this server in EHLO, Received and Message-ID, and mail to root@%s cannot be answered; give install --hostname web1.example.com (a name whose A record is this server)", in.hostname, in.hostname)
	}
	_, err := in.lstat(installConfig)
	newConfig := errors.Is(err, fs.ErrNotExist)
	if newConfig && in.rootAlias == "" && in.ask != nil && !in.dryRun && !in.rootHasAlias() {
		for {
			a, err := in.ask("Address for root's mail (cron, system tools; empty: keep it in /var/mail/root): ")
			if err != nil || a == "" {
				break
			}
			if _, err := address.Parse(a, false); err != nil {
				fmt.Fprintf(in.errOut, "%q: %v\n", a, err)
				continue
			}
			in.rootAlias = a
			break
		}
	}
	if in.tcpAdmin {
		// Readable by root and the daemon only: 0600, the daemon's user's,
		// as the daemon requires of every secret file.
		tok := make([]byte, 32)
		if _, err := rand.Read(tok); err != nil {
			return err
		}
		if err := in.writeNew(installAdminToken, []byte(hex.EncodeToString(tok)+"\n"), installOwner{installUser, installUser, 0o600}); err != nil {
			return err
		}
	}
	text := installConfigText(in.hostname, in.rootAlias)
	if in.tcpAdmin {
		text = strings.Replace(text, installAdminLine, installAdminLine+installTokenLine, 1)
	}
	if err := in.writeNew(installConfig, []byte(text), o); err != nil {
		return err
	}
	if err := in.writeNew(installPolicy, []byte(installPolicyText), o); err != nil {
		return err
	}
	if !in.rootHasAlias() && !(newConfig && in.rootAlias != "") {
		in.warn("root has no alias: cron's and the system's mail to root stays in /var/mail/root on this server, where nobody may read it; give install --root-alias you@example.com, or set aliases: {root: you@example.com} in %s, or root: in /etc/aliases", installConfig)
	}
	return nil
}

// rootHasAlias reports whether the installed config or /etc/aliases gives
// root an address.
func (in *installer) rootHasAlias() bool {
	if c, err := config.Load(in.real(installConfig)); err == nil {
		if _, ok := c.Aliases["root"]; ok {
			return true
		}
	}
	m, _, err := aliases.Load(in.real(aliases.DefaultPath))
	if err != nil {
		return false
	}
	_, ok := m["root"]
	return ok
}

// The config's admin lines: the TCP listener, and with --tcp-admin the
// token that opens admin actions on it.
const (
	installAdminLine = "admin: 127.0.0.1:8025            # TCP: /metrics and /healthz; admin actions: the CLI (socket in data_dir/private/)\n"
	installTokenLine = "admin_token_file: " + installAdminToken + "   # with it, the TCP listener serves admin actions too (Bearer token)\n"
)

func (in *installer) unit() error {
	replaced, err := in.installFile(installUnit, installUnitText, "", installOwner{"root", "root", 0o644})
	in.upgraded = in.upgraded || replaced
	return err
}

func (in *installer) start() error {
	const what = "systemctl daemon-reload && systemctl enable --now facteur"
	switch {
	case in.root != "":
		in.say("skipped: %s (--root)", what)
		return nil
	case in.noStart:
		in.say("skipped: %s (--no-start)", what)
		return nil
	}
	// sd_booted(3): without it, systemctl cannot start anything (a
	// container, a chroot).
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		in.say("skipped: %s (systemd is not running here: start %s serve -config %s yourself)", what, installBin, installConfig)
		return nil
	}
	steps := [][]string{{"daemon-reload"}, {"enable", "--now", "facteur"}}
	if in.upgraded {
		// enable --now leaves a running daemon on the old binary or unit.
		steps = append(steps, []string{"try-restart", "facteur"})
	}
	for _, s := range steps {
		if !in.act("systemctl %s", strings.Join(s, " ")) {
			continue
		}
		if err := runSystemCmd("systemctl", s...); err != nil {
			return err
		}
	}
	return nil
}

// installConfigText is the config install writes: the defaults spelt out, plus
// the abuse guards a shared web server wants (issue 8 §3), which are off by
// default so that a bulk sender or a benchmark does not trip them.
func installConfigText(hostname, rootAlias string) string {
	rootBlock := `# Mail to root (cron, system tools) goes to root's mailbox, /var/mail/root,
# unless root has an alias here or in /etc/aliases: give it a real address.
# aliases:
#   root: ops@example.com
`
	if rootAlias != "" {
		rootBlock = `# Mail to root (cron, system tools) goes to this address (install --root-alias).
aliases:
  root: ` + rootAlias + `
`
	}
	return `# facteur configuration, written by facteur install; it is never overwritten.
# Every key and its default: man 5 facteur.yaml. After a change:
# systemctl restart facteur (the policy file alone: systemctl reload facteur).
hostname: ` + hostname + `        # EHLO name; make its A record and the IP's PTR agree
listen: [127.0.0.1:25]           # local apps only (PHP, cron through the sendmail shim)
` + installAdminLine + `data_dir: ` + installDataDir + `
policy: ` + installPolicy + `

# Abuse guards for a shared web server: a compromised site must not fill the
# queue. Past a rate limit the client gets 451 4.7.1 (and a log line); past
# the queue size or the free-disk floor new mail gets 452 4.3.1, and mail
# already accepted is still delivered.
limits:
  per_client_ip: 100/h           # messages per hour from one client IP
  per_sender: 100/h              # per envelope sender
  per_user: 200/h                # per authenticated submission user
max_queue_messages: 10000
min_free_disk: 512MiB

# Circuit breaker: a sender (local user such as www-data, authenticated
# user, sender domain) whose recipients bounce or are deferred too often in
# an hour is stopped, its mail held, and root is told, before the server's
# IP lands on a block list. Release: facteur breaker reset SENDER.
breaker:
  window: 1h
  min_recipients: 20
  max_failed: 0.25
  max_deferred: 0.5
  action: hold
  notify: []                     # empty: root, through its alias
  per: [user, sender_domain]

` + rootBlock + `
# PHP mail() without -f sends as the web server's user: map it to an
# address of a domain whose SPF, DKIM and DMARC allow this server.
# senders:
#   www-data: noreply@example.com

# DKIM signing: facteur dkim keygen -domain example.com -selector s1 \
#   -out /etc/facteur/dkim/example.com.s1.key, publish the TXT record it
#   prints, then:
# dkim:
#   - domain: example.com
#     selector: s1
#     key: /etc/facteur/dkim/example.com.s1.key
`
}

// installPolicyText is an overlay that changes nothing: the built-in policy
// applies, and the file shows where to change it.
const installPolicyText = `# facteur provider policy overlay, written by facteur install; it is never
# overwritten. Empty: the built-in policy applies (facteur policy show prints
# it). A key set here changes only that key of the built-in policy; check
# with facteur policy check ` + installPolicy + `, apply with
# systemctl reload facteur. Every key: man 5 facteur-policy.
#
# providers:
#   microsoft:
#     rate: 500/h                # slower than the built-in 1000/h
#   intranet:                    # a new provider
#     domains: [corp.example]
#     connections: 2
#   yahoo:
#     rules:
#       - name: yahoo-tss-deferral
#         disabled: true         # remove a built-in rule by name
`
