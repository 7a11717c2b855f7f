package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"

	"facteur/policy"
	"facteur/relay/admin/client"
	"facteur/relay/daemon"
)

// facteur providers and facteur provider resume (issue 5 §6). The daemon
// holds the live state (connections, rates); when it is down, the state it
// saved in the queue database (suspensions, backoff levels) is shown and
// changed there, so that ops can resume a provider before starting it.

func cmdProviders(args []string) int {
	fs, cfgPath := newFlags("providers")
	asJSON := fs.Bool("json", false, "print JSON: a list of {name, group, limits, connections, queued, deferred, suspended_until, suspended_reason, throttled_rate, ...}")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 0 {
		fmt.Fprintln(os.Stderr, "usage: facteur providers [--json]")
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	var raw []byte
	err = client.New(cfg).Do("GET", "/providers", nil, nil, &raw)
	if errors.Is(err, client.ErrDaemonDown) {
		fmt.Fprintln(os.Stderr, "facteur: daemon not running: showing the state saved in the database (no live connections)")
		raw, err = daemon.OfflineProviders(context.Background(), cfg)
	}
	if err != nil {
		return failErr(err)
	}
	if *asJSON {
		os.Stdout.Write(raw)
		return 0
	}
	var states []policy.ProviderState
	if err := json.Unmarshal(raw, &states); err != nil {
		return failErr(fmt.Errorf("providers: bad answer from the daemon: %w", err))
	}
	if err := policy.WriteProviders(os.Stdout, states); err != nil {
		return failErr(err)
	}
	return 0
}

const providerUsage = `usage: facteur provider resume NAME`

func cmdProvider(args []string) int {
	if len(args) == 0 || args[0] != "resume" {
		fmt.Fprintln(os.Stderr, providerUsage)
		return 2
	}
	fs, cfgPath := newFlags("provider resume")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	if len(pos) != 1 || pos[0] == "" {
		fmt.Fprintln(os.Stderr, providerUsage)
		return 2
	}
	name := pos[0]
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	err = client.New(cfg).Do("POST", "/providers/"+url.PathEscape(name)+"/resume", nil, nil, nil)
	if errors.Is(err, client.ErrDaemonDown) {
		err = daemon.OfflineResume(context.Background(), cfg, name)
		if err == nil {
			fmt.Fprintln(os.Stderr, "facteur: daemon not running: resumed in the saved state; it applies at the next start")
		}
	}
	if err != nil {
		return failErr(fmt.Errorf("provider resume %s: %w", name, err))
	}
	fmt.Printf("%s resumed\n", name)
	return 0
}
