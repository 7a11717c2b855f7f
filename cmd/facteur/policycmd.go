package main

import (
	"errors"
	"fmt"
	"os"

	"facteur/policy"
	"facteur/relay/admin/client"
	"facteur/relay/daemon"
)

// The policy commands of issue 5 §1: validate a file without starting,
// print the effective policy, and ask the daemon to swap in the file.

const policyUsage = `usage: facteur policy check [FILE]     validate FILE (default: the config's policy file)
       facteur policy show [--json]     print the effective policy (file overlaid on the built-in)
       facteur policy reload            make the running daemon load its policy file again`

func cmdPolicy(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, policyUsage)
		return 2
	}
	sub := args[0]
	fs, cfgPath := newFlags("policy " + sub)
	asJSON := new(bool)
	if sub == "show" {
		asJSON = fs.Bool("json", false, "print JSON")
	}
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	switch sub {
	case "check":
		if len(pos) > 1 {
			fmt.Fprintln(os.Stderr, policyUsage)
			return 2
		}
		file := ""
		if len(pos) == 1 {
			file = pos[0]
		} else {
			// No FILE: the one the daemon would load, so that ops can check
			// an edit in place before `policy reload`.
			cfg, err := loadConfig(*cfgPath)
			if err != nil {
				return failErr(err)
			}
			file = cfg.Policy
		}
		return policyCheck(file)
	case "show":
		if len(pos) != 0 {
			fmt.Fprintln(os.Stderr, policyUsage)
			return 2
		}
		p, status := loadConfiguredPolicy(*cfgPath)
		if p == nil {
			return status
		}
		out, err := p.Show(*asJSON)
		if err != nil {
			return failErr(err)
		}
		os.Stdout.Write(out)
		return 0
	case "reload":
		if len(pos) != 0 {
			fmt.Fprintln(os.Stderr, policyUsage)
			return 2
		}
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return failErr(err)
		}
		var res struct {
			Reloaded string `json:"reloaded"`
		}
		if err := client.New(cfg).Do("POST", "/policy/reload", nil, nil, &res); err != nil {
			// The daemon refuses a bad file and keeps the old policy; its
			// error names file:line:key.
			return failErr(fmt.Errorf("policy reload: %w", err))
		}
		what := res.Reloaded
		if what == "" {
			what = policy.BuiltinName
		}
		fmt.Printf("policy reloaded: %s\n", what)
		return 0
	}
	fmt.Fprintf(os.Stderr, "facteur: unknown policy command %q\n%s\n", sub, policyUsage)
	return 2
}

// policyCheck validates file ("" is the built-in policy alone) and prints
// "FILE: ok", or every problem as FILE:LINE: key: message.
func policyCheck(file string) int {
	var err error
	name := file
	if file == "" {
		name = policy.BuiltinName
		_, err = policy.Builtin()
	} else {
		_, err = policy.Load(file)
	}
	if err != nil {
		return printPolicyErrors(err)
	}
	fmt.Printf("%s: ok\n", name)
	return 0
}

// loadConfiguredPolicy loads the config (-config, or $FACTEUR_CONFIG) and
// the policy it names. On failure it prints the error, a policy error one
// line per problem, and returns nil with the exit status: the start that
// classify and policy show share, so that both report a bad file alike.
func loadConfiguredPolicy(cfgPath string) (*policy.Policy, int) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, failErr(err)
	}
	p, err := daemon.LoadPolicy(cfg)
	if err != nil {
		return nil, printPolicyErrors(err)
	}
	return p, 0
}

// printPolicyErrors writes each policy problem on its own line, without the
// "facteur:" prefix, so that the lines start with file:line like a compiler's
// and editors can jump to them.
func printPolicyErrors(err error) int {
	var errs policy.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(os.Stderr, e.Error())
		}
		return 1
	}
	var one *policy.Error
	if errors.As(err, &one) {
		fmt.Fprintln(os.Stderr, one.Error())
		return 1
	}
	return failErr(err)
}
