package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"facteur/queue"
	"facteur/relay/address"
	"facteur/relay/admin"
	"facteur/relay/admin/client"
	"facteur/relay/config"
	"facteur/relay/suppress"
)

// facteur suppress (issue 7 §4); the logic, and the daemon's /suppressions
// endpoints, are relay/suppress'.
// Every subcommand goes through the daemon when it runs, so that adding an
// address cancels its queued mail with DSNs and logs `suppressed`; when it
// is down they open the queue database directly and do the same there (the
// DSNs are queued and leave at the next start).

const suppressUsage = `usage: facteur suppress list [--json] [--all]
       facteur suppress add ADDR [--reason R]
       facteur suppress remove ADDR
       facteur suppress import FILE     (CSV as export writes it, "-" for stdin)
       facteur suppress export          (CSV on stdout)`

func cmdSuppress(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, suppressUsage)
		return 2
	}
	sub := args[0]
	fs, cfgPath := newFlags("suppress " + sub)
	// Each subcommand defines only the flags it takes, so that its --help
	// shows those and any other is refused.
	asJSON, all, reason := new(bool), new(bool), new(string)
	*reason = suppress.ManualReason
	switch sub {
	case "list":
		asJSON = fs.Bool("json", false, "print JSON")
		all = fs.Bool("all", false, "include expired entries")
	case "add":
		reason = fs.String("reason", suppress.ManualReason, "the reason recorded")
	}
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	wantArgs := map[string]int{"list": 0, "export": 0, "add": 1, "remove": 1, "import": 1}
	n, known := wantArgs[sub]
	if !known {
		fmt.Fprintf(os.Stderr, "facteur: unknown suppress command %q\n%s\n", sub, suppressUsage)
		return 2
	}
	if len(pos) != n {
		fmt.Fprintln(os.Stderr, suppressUsage)
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	ctx := context.Background()
	c := client.New(cfg)
	switch sub {
	case "list":
		list, err := fetchSuppressions(ctx, cfg, c)
		if err != nil {
			return failErr(err)
		}
		if !*all {
			list = suppress.Active(list, time.Now())
		}
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(list); err != nil {
				return failErr(err)
			}
			return 0
		}
		suppress.WriteTable(os.Stdout, list)
		return 0
	case "export":
		list, err := fetchSuppressions(ctx, cfg, c)
		if err != nil {
			return failErr(err)
		}
		if err := suppress.WriteCSV(os.Stdout, list); err != nil {
			return failErr(err)
		}
		return 0
	case "add":
		addr := strings.TrimSpace(pos[0])
		if _, err := address.Check(addr); err != nil {
			return fail("suppress add %q: %v", pos[0], err)
		}
		r := strings.TrimSpace(*reason)
		if r == "" || strings.ContainsAny(r, "\r\n") {
			return fail("suppress add: --reason must be one non-empty line")
		}
		sup := queue.Suppression{Address: addr, Reason: r, Source: queue.SourceManual}
		res, err := postSuppressions(ctx, cfg, c, []queue.Suppression{sup}, false)
		if err != nil {
			return failErr(fmt.Errorf("suppress add %s: %w", addr, err))
		}
		fmt.Printf("suppressed %s (%s); %d queued recipient%s cancelled\n", strings.ToLower(addr), r, res.Cancelled, admin.Plural(res.Cancelled))
		return 0
	case "remove":
		addr := strings.TrimSpace(pos[0])
		err := c.Do("DELETE", "/suppressions/"+url.PathEscape(addr), nil, nil, nil)
		if errors.Is(err, client.ErrDaemonDown) {
			err = localSuppressions(cfg).Remove(ctx, addr)
		}
		if err != nil {
			return failErr(fmt.Errorf("suppress remove: %w", err))
		}
		fmt.Printf("%s removed from the suppression list\n", strings.ToLower(addr))
		return 0
	case "import":
		var data []byte
		if pos[0] == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(pos[0])
		}
		if err != nil {
			return failErr(fmt.Errorf("suppress import: %w", err))
		}
		list, err := suppress.ParseImport(pos[0], data)
		if err != nil {
			return failErr(err)
		}
		res, err := postSuppressions(ctx, cfg, c, list, true)
		if err != nil {
			return failErr(fmt.Errorf("suppress import %s: %w", pos[0], err))
		}
		fmt.Printf("imported %d suppression%s; %d queued recipient%s cancelled\n", len(res.Suppressed), admin.Plural(len(res.Suppressed)), res.Cancelled, admin.Plural(res.Cancelled))
		return 0
	}
	return 2
}

// localSuppressions is the list in the database, for when the daemon is
// down; the event lines go to stderr.
func localSuppressions(cfg *config.Config) suppress.Local {
	return suppress.Local{Config: cfg, Open: func(create bool) (*queue.Store, error) { return admin.OpenStore(cfg, create) }, LogTo: os.Stderr}
}

// fetchSuppressions returns the whole list, expired entries included, from
// the daemon or, when it is down, from the database.
func fetchSuppressions(ctx context.Context, cfg *config.Config, c *client.Client) ([]queue.Suppression, error) {
	var list []queue.Suppression
	err := c.Do("GET", "/suppressions", nil, nil, &list)
	if errors.Is(err, client.ErrDaemonDown) {
		list, err = localSuppressions(cfg).List(ctx)
	}
	if err != nil {
		return nil, err
	}
	if list == nil {
		list = []queue.Suppression{}
	}
	return list, nil
}

// postSuppressions adds (merging with existing entries) or imports
// (replacing them, times and counts as given) through the daemon, or
// directly when it is down.
func postSuppressions(ctx context.Context, cfg *config.Config, c *client.Client, list []queue.Suppression, replace bool) (suppress.Result, error) {
	var q url.Values
	if replace {
		q = url.Values{"mode": {"import"}}
	}
	var res suppress.Result
	err := c.Do("POST", "/suppressions", q, list, &res)
	if errors.Is(err, client.ErrDaemonDown) {
		return localSuppressions(cfg).Add(ctx, list, replace, time.Now())
	}
	return res, err
}
