package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"

	"facteur/relay/daemon"
)

// canBind says whether an outbound connection can leave from addr: a TCP
// socket bound to it on a free port (what the dialer does) succeeds only
// for an address of this host.
func canBind(addr netip.Addr) error {
	l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		return err
	}
	return l.Close()
}

const configUsage = `usage: facteur config check [-config FILE] [--no-bind-check]`

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
	noBind := fs.Bool("no-bind-check", false, "do not check that delivery.source_ip and the pools' IPs are addresses of this host")
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
	if _, err := daemon.LoadPolicy(cfg); err != nil {
		return failErr(err)
	}
	if !*noBind {
		if err := cfg.CheckBind(canBind); err != nil {
			return failErr(err)
		}
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
