// Command facteur is the daemon (facteur serve) and its admin CLI.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"facteur/relay/config"
)

// command is one subcommand; run returns the process exit status.
type command struct {
	name    string
	summary string
	run     func(args []string) int
}

// commands is every subcommand, sorted by name: the usage lists them in
// this order.
var commands = []command{
	{"bounce", "bounce parse|ingest: read a bounce or feedback report on stdin", cmdBounce},
	{"breaker", "list the senders the circuit breaker stopped, reset them", cmdBreaker},
	{"classify", "classify an SMTP reply with the policy: class, action, suppression", cmdClassify},
	{"config", "config check: validate the config file and print what is likely wrong", cmdConfig},
	{"dkim", "dkim keygen: generate a signing key and print its DNS TXT record", cmdDKIM},
	{"doctor", "check SPF, DKIM, DMARC, reverse DNS and block lists for a sending domain", cmdDoctor},
	{"install", "set up this Debian/Ubuntu server: user, data dir, config, systemd unit, sendmail shim", cmdInstall},
	{"policy", "check a policy file, show the effective policy, reload it in the daemon", cmdPolicy},
	{"provider", "provider resume NAME: end a provider's suspension or backoff window now", cmdProvider},
	{"providers", "list the providers: limits, connections, queued mail, suspensions", cmdProviders},
	{"queue", "list, show, delete, hold, release or flush queued mail", cmdQueue},
	{"serve", "run the daemon", cmdServe},
	{"status", "one-screen summary of the queue, deliveries and providers", cmdStatus},
	{"suppress", "list, add, remove, import or export suppressed addresses", cmdSuppress},
	{"top", "the senders, users, clients, domains and subjects with the most mail, queued and in the last hour", cmdTop},
	{"version", "print facteur's version, the git commit it was built from and the Go version", cmdVersion},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: facteur COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-18s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery command takes -config FILE (default $FACTEUR_CONFIG, then "+config.DefaultPath+").")
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// subcommandUsage is the usage of the commands whose first argument is a
// subcommand: `facteur policy --help` prints it (exit 0) rather than taking
// --help for an unknown subcommand.
func subcommandUsage(name string) string {
	return map[string]string{
		"queue": queueUsage, "policy": policyUsage, "suppress": suppressUsage, "bounce": bounceUsage,
		"dkim": dkimUsage, "provider": providerUsage, "config": configUsage,
	}[name]
}

// helpShown is set when a command printed its help on -h/--help, so that
// the process exits 0 whatever the command returned.
var helpShown bool

func run(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(os.Stdout)
		return 0
	case "help":
		if len(args) == 1 {
			usage(os.Stdout)
			return 0
		}
		// help CMD [SUB]: the command's own help.
		return run(append(append([]string{}, args[1:]...), "--help"))
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		if len(args) >= 2 && isHelpArg(args[1]) {
			if u := subcommandUsage(c.name); u != "" {
				fmt.Println(u)
				return 0
			}
		}
		code := c.run(args[1:])
		if helpShown {
			return 0
		}
		return code
	}
	fmt.Fprintf(os.Stderr, "facteur: unknown command %q\n", args[0])
	usage(os.Stderr)
	return 2
}

// parseFlags parses flags that may come before or after positional
// arguments (issue 3 §2), as `facteur queue show ID --json` needs; "--" ends
// flags.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			// Asked for: the help goes to stdout and the exit status is 0.
			fs.SetOutput(os.Stdout)
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				helpShown = true
			}
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// newFlags returns a flag set with -config already defined.
func newFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("facteur "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: facteur %s [flags]\nflags:\n", name)
		fs.PrintDefaults()
	}
	cfg := fs.String("config", "", "config file (default $FACTEUR_CONFIG or "+config.DefaultPath+")")
	return fs, cfg
}

// loadConfig finds the config: the flag, then FACTEUR_CONFIG, then the
// default path (which may be absent: defaults then).
func loadConfig(flagValue string) (*config.Config, error) {
	path := flagValue
	if path == "" {
		path = os.Getenv("FACTEUR_CONFIG")
	}
	return config.Load(path)
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "facteur: "+format+"\n", args...)
	return 1
}

func failErr(err error) int {
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		fmt.Fprintln(os.Stderr, "facteur: "+strings.ReplaceAll(msg, "\n", "\nfacteur: "))
		return 1
	}
	return fail("%v", err)
}

var errUsage = errors.New("usage")
