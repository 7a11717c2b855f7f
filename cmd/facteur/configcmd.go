package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

func init() {
	register("config", "config check: validate the config file and print what is likely wrong", cmdConfig)
}

const configUsage = `usage: facteur config check [-config FILE]`

// cmdConfig checks a config as the daemon would load it: errors (exit 1)
// with file, line and key, then warnings (the daemon logs them at start).
func cmdConfig(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, configUsage)
		return 2
	}
	if isHelpArg(args[0]) {
		fmt.Println(configUsage)
		return 0
	}
	if args[0] != "check" {
		fmt.Fprintf(os.Stderr, "facteur: unknown config command %q\n%s\n", args[0], configUsage)
		return 2
	}
	fs, cfgPath := newFlags("config check")
	pos, err := parseFlags(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintln(os.Stderr, configUsage)
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	if _, err := loadPolicy(cfg); err != nil {
		return failErr(err)
	}
	name := cfg.File
	if name == "" {
		name = "(no config file: the built-in defaults)"
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(os.Stderr, "WARNING: "+w)
	}
	fmt.Printf("%s: ok\n", name)
	return 0
}
