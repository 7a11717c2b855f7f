// Package install sets up facteur on a Debian/Ubuntu web server (facteur
// install, issue 8 §6) the way README's "The sendmail shim" section
// describes by hand: the accounts (accounts.go), the directories, files,
// owners and modes (files.go, config.go), the sendmail shim with its
// dpkg diversions (diversions.go), then the systemd unit and its start
// (here). Each step is one line on Options.Out; a dry run prints them and
// changes nothing.
package install

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"facteur/relay/address"
)

// Where things go on the installed system. The unit (facteur.service) names
// the same paths; a test checks that they agree.
const (
	User      = "facteur"
	Bin       = "/usr/local/sbin/facteur"
	DataDir   = "/var/lib/facteur"
	ConfigDir = "/etc/facteur"
	Config    = "/etc/facteur/facteur.yaml"
	Policy    = "/etc/facteur/policy.yaml"
	// AdminToken is written with --tcp-admin only: the CLI needs no
	// token (it uses the admin socket), scripts over TCP do.
	AdminToken = "/etc/facteur/admin.token"
	Unit       = "/etc/systemd/system/facteur.service"
	Sendmail   = "/usr/sbin/sendmail"
	// The mailq and newaliases links are relative, as Debian's MTAs ship
	// them, so that they also resolve inside an image built with --root.
	LinkTarget = "../sbin/sendmail"
)

// Links are the shim's other names; it reads its mode from argv[0].
var Links = []string{"/usr/bin/mailq", "/usr/bin/newaliases"}

// UnitText is the systemd unit install writes to Unit.
//
//go:embed facteur.service
var UnitText []byte

// Options are facteur install's flags, and where it prints.
type Options struct {
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

// Installer carries out the steps. Paths in its fields are the installed
// system's (/etc/...); real() maps them under the root.
type Installer struct {
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

// hostnameRE is what may go unquoted into the YAML and into EHLO.
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// New checks the options and finds the binaries to install.
func New(o Options) (*Installer, error) {
	in := &Installer{dryRun: o.DryRun, noStart: o.NoStart, out: o.Out, euid: o.Euid, planned: map[string]bool{}, gone: map[string]bool{},
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
		if err := CheckShim(o.Shim); err != nil {
			return nil, fmt.Errorf("--shim: %w", err)
		}
		in.shim = o.Shim
	default:
		cand := filepath.Join(filepath.Dir(in.self), "sendmail")
		if err := CheckShim(cand); err != nil {
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
	if !hostnameRE.MatchString(in.hostname) {
		return nil, fmt.Errorf("host name %q is not a DNS name (give --hostname)", in.hostname)
	}
	return in, nil
}

// warn prints a warning the operator must not miss.
func (in *Installer) warn(format string, args ...any) {
	fmt.Fprintf(in.errOut, "WARNING: "+format+"\n", args...)
}

// lstat is os.Lstat of p under the root, as the run so far left it.
func (in *Installer) lstat(p string) (fs.FileInfo, error) {
	if in.gone[p] {
		return nil, &fs.PathError{Op: "lstat", Path: in.real(p), Err: fs.ErrNotExist}
	}
	return os.Lstat(in.real(p))
}

func (in *Installer) real(p string) string {
	if in.root == "" {
		return p
	}
	return filepath.Join(in.root, p)
}

// act prints a step that changes something; a dry run stops there.
func (in *Installer) act(format string, args ...any) bool {
	if in.dryRun {
		fmt.Fprintf(in.out, "dry-run: "+format+"\n", args...)
		return false
	}
	fmt.Fprintf(in.out, format+"\n", args...)
	return true
}

// say prints a step that changes nothing: kept, unchanged, skipped.
func (in *Installer) say(format string, args ...any) {
	fmt.Fprintf(in.out, format+"\n", args...)
}

// Run carries out every step in order, stopping at the first that fails.
func (in *Installer) Run() error {
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

func (in *Installer) unit() error {
	replaced, err := in.installFile(Unit, UnitText, "", owner{"root", "root", 0o644})
	in.upgraded = in.upgraded || replaced
	return err
}

func (in *Installer) start() error {
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
		in.say("skipped: %s (systemd is not running here: start %s serve -config %s yourself)", what, Bin, Config)
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

// configText is the config install writes: the defaults spelt out, plus
// the abuse guards a shared web server wants (issue 8 §3), which are off by
