package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"facteur/relay/admin"
	"facteur/relay/admin/client"
	"facteur/relay/cluster"
	"facteur/relay/config"
	"facteur/relay/daemon"
)

func cmdStatus(args []string) int {
	fs, cfgPath := newFlags("status")
	asJSON := fs.Bool("json", false, "print JSON")
	top := fs.Bool("top", false, "also show the top senders, users, clients, domains and subjects (facteur top)")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(os.Stderr, "facteur status: unexpected argument %q\n", pos[0])
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	var raw []byte
	if err := client.New(cfg).Do("GET", "/status", nil, nil, &raw); err != nil {
		return failErr(err)
	}
	if *asJSON && !*top {
		os.Stdout.Write(raw)
		return 0
	}
	if *top {
		defer func() { printTop(cfg, 10, *asJSON) }()
		if *asJSON {
			os.Stdout.Write(raw)
			return 0
		}
	}
	var st daemon.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return failErr(err)
	}
	fmt.Printf("facteur on %s at %s\n\n", cfg.Hostname, st.Now.Local().Format(admin.TextTime))
	oldest := "none"
	if st.Oldest != nil {
		oldest = fmt.Sprintf("%s (%s ago)", st.Oldest.Local().Format(admin.TextTime), time.Since(*st.Oldest).Round(time.Second))
	}
	fmt.Printf("queue: %d message%s, oldest %s", st.Messages, admin.Plural(st.Messages), oldest)
	if st.Alarm {
		fmt.Print("   ALARM: queue deeper or older than queue_alarm")
	}
	fmt.Println()
	if len(st.Queue) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  provider\tstatus\trecipients")
		for _, q := range st.Queue {
			fmt.Fprintf(tw, "  %s\t%s\t%d\n", q.Provider, q.Status, q.Count)
		}
		tw.Flush()
	}
	lh := st.LastHour
	fmt.Printf("\nlast hour: %d delivered, %d deferred, %d bounced, %d expired, %d suppressed\n",
		lh["delivered"], lh["deferred"], lh["bounced"], lh["expired"], lh["suppressed"])
	for _, b := range st.Breaker {
		fmt.Printf("\nbreaker: %s stopped since %s, %s, %d message%s held (facteur breaker reset %s)\n",
			b.Key, b.At.Local().Format(admin.TextTime), b.Summary(), b.Held, admin.Plural(b.Held), b.Key)
	}
	printClusterStatus(st.Cluster)
	for _, x := range st.Dead {
		fmt.Printf("\ndead: %s, next probe %s (in %s): %s\n", x.Dest, x.Until.Local().Format(time.DateTime), time.Until(x.Until).Round(time.Second), strings.TrimSpace(x.Reason))
	}
	for _, p := range st.Pools {
		fmt.Printf("\npool %s (overflow: %s):\n", p.Name, p.Overflow)
		for _, ip := range p.IPs {
			line := "  " + ip.Addr
			if ip.EHLO != "" {
				line += " (" + ip.EHLO + ")"
			}
			if ip.WarmupDay != nil {
				line += fmt.Sprintf("  warm-up day %d, %d a day per provider", *ip.WarmupDay, *ip.WarmupCap)
			} else {
				line += "  warm"
			}
			if len(ip.SuspendedAt) > 0 {
				line += "  suspended at " + strings.Join(ip.SuspendedAt, ", ")
			}
			fmt.Println(line)
		}
	}
	if len(st.Suspended) == 0 {
		fmt.Println("\nno provider suspended")
		return 0
	}
	fmt.Println("\nsuspended:")
	for _, s := range st.Suspended {
		fmt.Printf("  %s until %s (in %s): %s\n", s.Provider, s.Until.Local().Format(admin.TextTime), time.Until(s.Until).Round(time.Second), strings.TrimSpace(s.Reason))
	}
	return 0
}

// cmdTop is `facteur top`: who is sending all this mail (the screen that
// finds the hacked site), from the daemon or, when it is down, the queue.
func cmdTop(args []string) int {
	fs, cfgPath := newFlags("top")
	asJSON := fs.Bool("json", false, "print JSON")
	n := fs.Int("n", 10, "entries per table")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) > 0 || *n <= 0 {
		fmt.Fprintln(os.Stderr, "usage: facteur top [-n N] [--json]")
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	return printTop(cfg, *n, *asJSON)
}

func printTop(cfg *config.Config, n int, asJSON bool) int {
	qc := &queueClient{cfg: cfg, c: client.New(cfg)}
	var raw []byte
	if err := qc.do("GET", "/queue/top", url.Values{"n": {strconv.Itoa(n)}}, &raw); err != nil {
		return failErr(err)
	}
	if asJSON {
		os.Stdout.Write(raw)
		return 0
	}
	var rep admin.TopReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return failErr(err)
	}
	if qc.offline {
		fmt.Println("(the daemon is not running: the last hour counts only what is still queued)")
	}
	admin.WriteTop(os.Stdout, rep)
	return 0
}

// printClusterStatus is the cluster part of `facteur status`.
func printClusterStatus(st *cluster.Status) {
	if st == nil {
		return
	}
	link := "up"
	if !st.Up {
		link = "DOWN (this node shapes alone on its share of each limit)"
		if st.LastErr != "" {
			link += ": " + st.LastErr
		}
	}
	fmt.Printf("\ncluster: node %s, redis %s, link %s\n", st.Node, strings.Join(st.Redis, ","), link)
	for _, n := range st.Nodes {
		state := "alive"
		if !n.Alive {
			state = "silent"
		}
		fmt.Printf("  %s\t%s, heartbeat %.1fs ago\n", n.Name, state, n.AgeSeconds)
	}
	if st.Pending > 0 {
		fmt.Printf("  %d change%s waiting for the link\n", st.Pending, admin.Plural(st.Pending))
	}
}
