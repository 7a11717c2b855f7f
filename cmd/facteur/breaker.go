package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"

	"facteur/relay/admin"
	"facteur/relay/admin/client"
	"facteur/relay/daemon"
)

// facteur breaker list and facteur breaker reset (issue 21): the daemon's
// breaker, or with the daemon down its saved state.

const breakerUsage = `usage: facteur breaker list [--json] [--all]
       facteur breaker reset [--delete] SENDER...   (SENDER: user=NAME, auth_user=NAME, sender_domain=DOMAIN)`

func cmdBreaker(args []string) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "reset") {
		fmt.Fprintln(os.Stderr, breakerUsage)
		return 2
	}
	sub := args[0]
	fs, cfgPath := newFlags("breaker " + sub)
	asJSON := fs.Bool("json", false, "list: print JSON")
	all := fs.Bool("all", false, "list: also the figures of every sender watched")
	del := fs.Bool("delete", false, "reset: delete the held mail instead of releasing it")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	if sub == "list" {
		if len(pos) > 0 {
			fmt.Fprintln(os.Stderr, breakerUsage)
			return 2
		}
		var raw []byte
		err := client.New(cfg).Do("GET", "/breaker", nil, nil, &raw)
		if errors.Is(err, client.ErrDaemonDown) {
			raw, err = daemon.OfflineBreaker(cfg, "GET", "/breaker", nil)
		}
		if err != nil {
			return failErr(err)
		}
		if *asJSON {
			os.Stdout.Write(raw)
			return 0
		}
		var l daemon.BreakerListing
		if err := json.Unmarshal(raw, &l); err != nil {
			return failErr(err)
		}
		printBreaker(l, *all)
		return 0
	}
	if len(pos) == 0 {
		fmt.Fprintln(os.Stderr, breakerUsage)
		return 2
	}
	req := daemon.BreakerResetRequest{Senders: pos, Delete: *del}
	var raw []byte
	err = client.New(cfg).Do("POST", "/breaker/reset", nil, req, &raw)
	if errors.Is(err, client.ErrDaemonDown) {
		raw, err = daemon.OfflineBreaker(cfg, "POST", "/breaker/reset", req)
	}
	if err != nil {
		return failErr(err)
	}
	var res daemon.BreakerResetResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return failErr(err)
	}
	for _, k := range res.Reset {
		fmt.Printf("%s reset: the breaker is armed again\n", k)
	}
	if *del {
		fmt.Printf("%d held message%s deleted\n", res.Deleted, admin.Plural(res.Deleted))
	} else {
		fmt.Printf("%d held message%s released\n", res.Released, admin.Plural(res.Released))
	}
	return 0
}

func printBreaker(l daemon.BreakerListing, all bool) {
	if !l.Enabled {
		fmt.Println("the circuit breaker is off (no breaker: block in the config)")
		return
	}
	if len(l.Tripped) == 0 {
		fmt.Println("no sender stopped by the circuit breaker")
	} else {
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SENDER\tSTOPPED SINCE\tFIGURES\tHELD")
		for _, e := range l.Tripped {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", e.Key, e.At.Local().Format("2006-01-02 15:04:05 MST"), e.Summary(), e.Held)
		}
		tw.Flush()
		fmt.Println("\nfacteur breaker reset SENDER releases its held mail (--delete deletes it) and re-arms the breaker.")
	}
	if all {
		sort.Slice(l.Watched, func(i, j int) bool { return l.Watched[i].Recipients > l.Watched[j].Recipients })
		fmt.Println("\nwatched in the window:")
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SENDER\tRECIPIENTS\tFAILED\tDEFERRED")
		for _, f := range l.Watched {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", f.Key, f.Recipients, f.Failed, f.Deferred)
		}
		tw.Flush()
	}
}
