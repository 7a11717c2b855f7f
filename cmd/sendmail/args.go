package main

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Exit codes from sysexits.h.
const (
	exOK          = 0
	exUsage       = 64 // bad command line
	exDataErr     = 65 // bad input data
	exNoUser      = 67 // recipient refused (suppressed, unknown)
	exUnavailable = 69 // the daemon refused or is down
	exSoftware    = 70 // internal error
	exCantCreat   = 73 // maildrop missing or not writable
	exTempFail    = 75 // could not store the message anywhere
	exNoPerm      = 77 // permission denied
	exConfig      = 78 // configuration error
)

// exitError is an error with the sysexits code the shim exits with.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func failf(code int, format string, args ...any) *exitError {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

type mode int

const (
	modeDeliver mode = iota // -bm, the default
	modeQueue               // -bp, mailq
	modeSMTP                // -bs
	modeAliases             // -bi, -bI, -I, newaliases
)

// options is the parsed command line.
type options struct {
	mode       mode
	extract    bool // -t
	ignoreDots bool // -i, -oi
	sender     string
	senderSet  bool
	fullName   string
	body       string // "", "8BITMIME" or "7BIT" (-B)
	verbose    bool
	ignored    []string // accepted and ignored, reported with -v
	recipients []string
}

// takesValue lists the options followed by a value, in the same word
// ("-fme") or the next ("-f me"), as sendmail's getopt string says.
const takesValue = "BbFfNoRrV"

// parseArgs parses a sendmail command line by hand, as getopt(3) would with
// GNU permutation (options and recipients may mix; "--" ends options):
// "-ti", "-oi", "-f addr", "-faddr", "-FCronDaemon" and "-B8BITMIME" are
// understood. Options that could make the shim read or write a file of the
// caller's choosing, or run as a queue runner or daemon, are refused, since a
// PHP application may pass attacker-chosen words (CVE-2016-10033).
func parseArgs(args []string) (*options, error) {
	o := &options{}
	switch filepath.Base(args[0]) {
	case "mailq":
		o.mode = modeQueue
	case "newaliases":
		o.mode = modeAliases
	}
	endOpts := false
	for i := 1; i < len(args); i++ {
		a := args[i]
		if endOpts || len(a) < 2 || a[0] != '-' {
			if a == "-" && !endOpts {
				return nil, failf(exUsage, "option \"-\" is not supported")
			}
			o.recipients = append(o.recipients, a)
			continue
		}
		if a == "--" {
			endOpts = true
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			if strings.IndexByte(takesValue, c) < 0 {
				if err := o.flag(c, a); err != nil {
					return nil, err
				}
				continue
			}
			v := a[j+1:]
			if v == "" {
				if i+1 >= len(args) {
					return nil, failf(exUsage, "option -%c needs a value", c)
				}
				i++
				v = args[i]
			}
			if err := o.option(c, v); err != nil {
				return nil, err
			}
			break
		}
	}
	return o, nil
}

// flag handles an option without a value.
func (o *options) flag(c byte, word string) error {
	switch c {
	case 't':
		o.extract = true
	case 'i':
		o.ignoreDots = true
	case 'v':
		o.verbose = true
	case 'm':
		// "me too": send to the sender if in an alias expansion; obsolete.
		o.ignored = append(o.ignored, "-m")
	case 'I':
		o.mode = modeAliases
	case 'C':
		return failf(exUsage, "option -C (configuration file) refused: the config is found through FACTEUR_CONFIG or %s only", defaultConfigPath)
	case 'X':
		return failf(exUsage, "option -X (traffic log file) refused: the shim writes no file of the caller's choosing")
	case 'O':
		return failf(exUsage, "option -O (set configuration option) refused: the config is found through FACTEUR_CONFIG or %s only", defaultConfigPath)
	case 'q':
		return failf(exUsage, "option %s refused: use facteur queue flush to run the queue", word)
	default:
		return failf(exUsage, "unknown option -%c (in %q); see sendmail(8) of facteur for what is supported", c, word)
	}
	return nil
}

// option handles an option with its value.
func (o *options) option(c byte, v string) error {
	switch c {
	case 'f', 'r':
		if o.senderSet {
			return failf(exUsage, "more than one sender (-f/-r) given")
		}
		s, err := checkSender(v)
		if err != nil {
			return failf(exUsage, "bad sender -%c %q: %v", c, v, err)
		}
		o.sender, o.senderSet = s, true
	case 'F':
		// The name goes into a From: header: no line breaks, no controls.
		if err := checkText(v, 256); err != nil {
			return failf(exUsage, "bad full name -F %q: %v", v, err)
		}
		o.fullName = v
	case 'B':
		switch u := strings.ToUpper(v); u {
		case "8BITMIME", "7BIT":
			o.body = u
		default:
			return failf(exUsage, "bad body type -B%s: want 8BITMIME or 7BIT", v)
		}
	case 'b':
		switch v {
		case "m":
			o.mode = modeDeliver
		case "p":
			o.mode = modeQueue
		case "s":
			o.mode = modeSMTP
		case "i", "I":
			o.mode = modeAliases
		case "d", "D":
			return failf(exUsage, "option -b%s (run as a daemon) refused: run facteur serve", v)
		default:
			return failf(exUsage, "option -b%s is not supported (supported: -bm, -bp, -bs, -bi)", v)
		}
	case 'o':
		switch {
		case v == "i":
			o.ignoreDots = true
		case v == "em", v == "ee", v == "ep", v == "eq", v == "ew",
			v == "di", v == "db", v == "dq", v == "m":
			// Error reporting and delivery modes: facteur always queues
			// and reports through its exit code and DSNs.
			o.ignored = append(o.ignored, "-o"+v)
		case strings.HasPrefix(v, "Q"):
			return failf(exUsage, "option -o%s (queue directory) refused: the shim writes no file of the caller's choosing", v)
		case strings.HasPrefix(v, "A"):
			return failf(exUsage, "option -o%s (alias file) refused: aliases live in the facteur config", v)
		default:
			return failf(exUsage, "option -o%s is not supported", v)
		}
	case 'N', 'R', 'V':
		// DSN NOTIFY, RET and ENVID: the daemon's own DSN policy applies.
		o.ignored = append(o.ignored, fmt.Sprintf("-%c %s", c, v))
	}
	return nil
}

// checkText accepts valid UTF-8 without control characters.
func checkText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("longer than %d octets", max)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("control character %U", r)
		}
	}
	return nil
}
