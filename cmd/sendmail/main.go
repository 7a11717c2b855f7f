package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"facteur/queue/maildrop"
	"facteur/relay/address"
	"facteur/relay/config"
)

const (
	defaultConfigPath = config.DefaultPath
	exIOErr           = 74 // cannot read the input
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// shim is one invocation.
type shim struct {
	opts   *options
	cfg    *config.Config
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	prog   string
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		args = []string{"sendmail"}
	}
	s := &shim{stdin: stdin, stdout: stdout, stderr: stderr, prog: filepath.Base(args[0])}
	err := s.run(args)
	if err == nil {
		return exOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		ee = &exitError{code: exSoftware, msg: err.Error()}
	}
	fmt.Fprintf(stderr, "%s: %s\n", s.prog, ee.msg)
	return ee.code
}

func (s *shim) run(args []string) error {
	o, err := parseArgs(args)
	if err != nil {
		return err
	}
	s.opts = o
	for _, ig := range o.ignored {
		s.verbosef("option %s accepted and ignored", ig)
	}
	if o.mode != modeDeliver && len(o.recipients) > 0 {
		return failf(exUsage, "recipients given with a mode that takes none (-bp, -bs, -bi)")
	}
	if o.mode == modeAliases {
		// Debian's postinst scripts and tools run newaliases after editing
		// /etc/aliases; they expect success.
		fmt.Fprintf(s.stderr, "%s: facteur keeps no aliases database: aliases live in the aliases: map of the config (%s), read when facteur starts\n", s.prog, s.configPath())
		return nil
	}
	if err := s.loadConfig(); err != nil {
		return err
	}
	switch o.mode {
	case modeQueue:
		return s.mailq()
	case modeSMTP:
		return s.proxySMTP()
	}
	return s.deliver()
}

func (s *shim) verbosef(format string, args ...any) {
	if s.opts != nil && s.opts.verbose {
		fmt.Fprintf(s.stderr, s.prog+": "+format+"\n", args...)
	}
}

// privileged: the shim runs setgid (or setuid), installed so that any user
// can write to the maildrop.
func privileged() bool {
	return os.Getegid() != os.Getgid() || os.Geteuid() != os.Getuid()
}

// configPath is FACTEUR_CONFIG, or the default path. When the shim is
// setgid and the caller is not root, FACTEUR_CONFIG is ignored (Postfix's
// rule for MAIL_CONFIG): a PHP putenv() must not pick the config, and with it
// the data_dir the shim writes into with its group's rights. The config is
// never taken from an argument.
func (s *shim) configPath() string {
	p := os.Getenv("FACTEUR_CONFIG")
	if p == "" {
		return defaultConfigPath
	}
	if privileged() && os.Getuid() != 0 {
		s.verbosef("FACTEUR_CONFIG ignored: set-group-ID and not called by root")
		return defaultConfigPath
	}
	return p
}

func (s *shim) loadConfig() error {
	cfg, err := config.Load(s.configPath())
	if err != nil {
		return failf(exConfig, "%v", err)
	}
	s.cfg = cfg
	return nil
}

// loginName is the name of the real uid, the sender when -f is absent.
func loginName() (*user.User, error) {
	u, err := user.LookupId(strconv.Itoa(os.Getuid()))
	if err != nil {
		return nil, failf(exNoUser, "no login name for uid %d (%v): give a sender with -f", os.Getuid(), err)
	}
	return u, nil
}

// localDomain is what a bare local part gets, as the daemon's cleanup does:
// go-smtp refuses an address without a domain, so the shim qualifies before
// submitting; the daemon still applies aliases and senders to addresses in
// its local domain or host name.
func (s *shim) localDomain() string {
	if s.cfg.LocalDomain != "" {
		return s.cfg.LocalDomain
	}
	return s.cfg.Hostname
}

func (s *shim) qualify(a string) string {
	if a == "" || strings.Contains(a, "@") {
		return a
	}
	return a + "@" + s.localDomain()
}

// headerFrom is the address of the From: field the shim adds: the sender
// after the daemon's `senders` rewriting, so that the From: field and the
// envelope sender agree (DMARC alignment).
func (s *shim) headerFrom(sender string) string {
	local, domain := sender, ""
	if i := strings.LastIndexByte(sender, '@'); i >= 0 {
		local, domain = sender[:i], sender[i+1:]
	}
	if domain == "" || strings.EqualFold(domain, s.cfg.LocalDomain) || strings.EqualFold(domain, s.cfg.Hostname) {
		if to, ok := s.cfg.Senders[local]; ok {
			return to
		}
	}
	return s.qualify(sender)
}

func (s *shim) deliver() error {
	o := s.opts
	raw, err := readMessage(s.stdin, o.ignoreDots, int64(s.cfg.MaxMessageSize))
	if errors.Is(err, errTooBig) {
		return failf(exDataErr, "message larger than max_message_size (%d octets)", s.cfg.MaxMessageSize)
	}
	if err != nil {
		return failf(exIOErr, "reading the message: %v", err)
	}
	u, uerr := loginName()
	sender, fullName := o.sender, o.fullName
	if !o.senderSet {
		if uerr != nil {
			return uerr
		}
		sender = u.Username
		if fullName == "" {
			// Postfix takes the GECOS name too; only the first field.
			fullName, _, _ = strings.Cut(u.Name, ",")
			if checkText(fullName, 256) != nil {
				fullName = ""
			}
		}
	}
	var from string
	if sender != "" {
		from = s.headerFrom(sender)
	}
	p, err := prepare(raw, o.extract, fullName, from)
	if err != nil {
		return err
	}
	for _, r := range o.recipients {
		if err := checkAddress(r); err != nil {
			return failf(exUsage, "bad recipient %q: %v", r, err)
		}
	}
	rcpts := dedupe(s, append(p.recipients, o.recipients...))
	if len(rcpts) == 0 {
		if o.extract {
			return failf(exUsage, "no recipients: none in To:, Cc: or Bcc: and none given as arguments")
		}
		return failf(exUsage, "no recipients given (use -t to read them from the header)")
	}
	if len(rcpts) > s.cfg.MaxRecipients {
		return failf(exUsage, "%d recipients, max_recipients is %d", len(rcpts), s.cfg.MaxRecipients)
	}
	env := maildrop.Envelope{
		Sender:       s.qualify(sender),
		Recipients:   rcpts,
		SMTPUTF8:     !address.IsASCII(sender) || slices.ContainsFunc(rcpts, func(r string) bool { return !address.IsASCII(r) }),
		EightBitMIME: o.body == "8BITMIME" || !address.IsASCII(p.data),
		UID:          os.Getuid(),
		Time:         time.Now(),
	}
	if uerr == nil {
		env.User = u.Username
	}
	return s.submitOrDrop(env, p.data)
}

func dedupe(s *shim, addrs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range addrs {
		q := s.qualify(a)
		key := q
		if i := strings.LastIndexByte(q, '@'); i >= 0 {
			key = q[:i] + strings.ToLower(q[i:])
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, q)
		}
	}
	return out
}

// submitOrDrop hands the message to the daemon; only when the daemon
// cannot be reached does it write it to the maildrop, which the daemon
// ingests when it is back (issue 11 §2: a 4xx is the daemon's decision and
// exits EX_TEMPFAIL, with the reply on stderr and nothing queued).
func (s *shim) submitOrDrop(env maildrop.Envelope, data []byte) error {
	addr, _ := s.daemonAddr()
	socket := filepath.Join(s.cfg.DataDir, "public", "submit.sock")
	var why string
	var refused []refusal
	total := len(env.Recipients)
	// Some recipients refused for good (suppressed, unknown): say which
	// and exit, as sendmail does, with the code of the first, even when the
	// others were accepted.
	printRefused := func() {
		for _, r := range refused {
			fmt.Fprintf(s.stderr, "%s: <%s>: %s\n", s.prog, r.rcpt, formatReply(r.err))
		}
	}
	refusedErr := func() error {
		printRefused()
		return &exitError{code: replyExit(refused[0].err), msg: fmt.Sprintf("%d of %d recipients refused", len(refused), total)}
	}
	res, err := submit(socket, addr, helloName(), env, data)
	var ue *unreachable
	var tr *tempReply
	switch {
	case err == nil:
		if res.reply != "" {
			s.verbosef("submitted: %s", res.reply)
		}
		if refused = res.refused; len(refused) > 0 {
			return refusedErr()
		}
		return nil
	case errors.As(err, &tr):
		refused = tr.refused
		printRefused()
		return &exitError{code: exTempFail, msg: tr.Error() + "; nothing was queued, try again later"}
	case errors.As(err, &ue):
		why = ue.Error()
		env.Recipients, refused = ue.recipients, ue.refused
	default:
		return err
	}
	dir := filepath.Join(s.cfg.DataDir, "maildrop")
	quota := maildrop.Quota{Files: s.cfg.MaildropQuota.Files, Bytes: int64(s.cfg.MaildropQuota.Bytes)}
	name, err := maildrop.WriteQuota(dir, env, bytes.NewReader(data), int64(len(data)), quota)
	switch {
	case err == nil:
		s.verbosef("%s; queued in the maildrop as %s", why, name)
		if len(refused) > 0 {
			return refusedErr()
		}
		return nil
	case errors.Is(err, maildrop.ErrQuota):
		return failf(exTempFail, "%s, and %v", why, err)
	case errors.Is(err, fs.ErrNotExist):
		return failf(exCantCreat, "%s, and the maildrop %s does not exist (is facteur installed?): %v", why, dir, err)
	case errors.Is(err, fs.ErrPermission):
		return failf(exNoPerm, "%s, and the maildrop is not writable (is this program installed setgid facteur-drop?): %v", why, err)
	default:
		return failf(exTempFail, "%s, and the message could not be stored: %v", why, err)
	}
}

// daemonAddr is the first listen address, with an unspecified host
// (0.0.0.0, ::, empty) replaced by loopback.
func (s *shim) daemonAddr() (string, bool) {
	if len(s.cfg.Listen) == 0 {
		return "", false
	}
	host, port, err := net.SplitHostPort(string(s.cfg.Listen[0]))
	if err != nil {
		return "", false
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), true
}

// helloName is the machine's host name for EHLO.
func helloName() string {
	h, err := os.Hostname()
	if err != nil || h == "" || strings.ContainsAny(h, " \t\r\n") {
		return "localhost"
	}
	return h
}
