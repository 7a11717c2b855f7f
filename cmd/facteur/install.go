package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"facteur/relay/install"
)

// facteur install (issue 8 §6): set up a Debian/Ubuntu web server the way
// README's "The sendmail shim" section describes by hand. The steps are
// relay/install's; this file has the flags, the prompt and the exit status.

const installUsage = `usage: facteur install [--dry-run] [--root DIR] [--no-start] [--shim PATH] [--hostname FQDN] [--root-alias ADDR] [--tcp-admin]

Sets up facteur on a Debian/Ubuntu server: the facteur-drop group and the
facteur user, ` + install.DataDir + ` and its maildrop, ` + install.Bin + `,
the sendmail shim as ` + install.Sendmail + ` (with mailq and newaliases, diverted
with dpkg-divert from the MTA package they replace), ` + install.Config + `
and ` + install.Policy + ` (never overwritten), the systemd unit, then
systemctl enable --now facteur. Each step is one line on stdout. With
--tcp-admin, a random token in ` + install.AdminToken + ` (0600, facteur) lets
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
	tcpAdmin := fs.Bool("tcp-admin", false, "enable admin actions on the TCP admin listener: write a random token to "+install.AdminToken+" and name it in the config")
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
	in, err := install.New(install.Options{
		Root: *root, DryRun: *dryRun, NoStart: *noStart, Shim: *shim, Hostname: *hostname,
		RootAlias: *rootAlias, TCPAdmin: *tcpAdmin, Out: os.Stdout, Err: os.Stderr, Euid: os.Geteuid(),
		Ask: askOnTerminal(os.Stdin, os.Stderr),
	})
	if err != nil {
		return fail("install: %v", err)
	}
	if err := in.Run(); err != nil {
		return fail("install: %v", err)
	}
	return 0
}

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
