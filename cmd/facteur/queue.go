package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"

	"facteur/relay/config"
	"flag"
	"fmt"
	"net/url"
	"os"
	"time"

	"facteur/queue"
	"facteur/relay/admin"
)

func init() {
	register("queue", "list, show, delete, hold, release or flush queued mail", cmdQueue)
}

const queueUsage = `usage: facteur queue list [--json] [filters]
       facteur queue show ID [--json]
       facteur queue delete ID | facteur queue delete FILTERS
       facteur queue hold ID | facteur queue hold FILTERS
       facteur queue release ID
       facteur queue flush [ID]
       facteur queue compact     (daemon stopped: give back the space a drained queue left)
filters: --sender ADDR --client-ip IP --domain D --older-than DURATION (e.g. 2h, 3d)`

func cmdQueue(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, queueUsage)
		return 2
	}
	sub := args[0]
	fs, cfgPath := newFlags("queue " + sub)
	asJSON := fs.Bool("json", false, "print JSON")
	sender := fs.String("sender", "", "only messages from this envelope sender")
	clientIP := fs.String("client-ip", "", "only messages submitted from this IP")
	domain := fs.String("domain", "", "only messages with a recipient at this domain")
	olderThan := fs.String("older-than", "", "only messages older than this (e.g. 2h, 3d)")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	c := newAdminClient(cfg)
	filters := url.Values{}
	for k, v := range map[string]string{"sender": *sender, "client_ip": *clientIP, "domain": *domain, "older_than": *olderThan} {
		if v != "" {
			filters.Set(k, v)
		}
	}
	needID := func() (string, bool) {
		if len(pos) != 1 {
			fmt.Fprintln(os.Stderr, queueUsage)
			return "", false
		}
		if _, err := queue.ParseID(pos[0]); err != nil {
			fmt.Fprintf(os.Stderr, "facteur: %v\n", err)
			return "", false
		}
		return pos[0], true
	}
	// get reads from the daemon, or from the database when the daemon is
	// down: like mailq, listing the queue must not need the daemon.
	get := func(path string, q url.Values) ([]byte, error) {
		var raw []byte
		err := c.do("GET", path, q, nil, &raw)
		if errors.Is(err, errDaemonDown) {
			return offlineGet(cfg, path, q)
		}
		return raw, err
	}
	switch sub {
	case "list":
		if !*asJSON {
			filters.Set("format", "text")
		}
		// Streamed from the daemon: the first lines print at once.
		err := c.do("GET", "/queue", filters, nil, os.Stdout)
		if errors.Is(err, errDaemonDown) {
			err = offlineList(cfg, filters, os.Stdout)
		}
		if err != nil {
			return failErr(err)
		}
		return 0
	case "show":
		id, ok := needID()
		if !ok {
			return 2
		}
		var m queue.Message
		raw, err := get("/queue/"+id, nil)
		if err != nil {
			return failErr(err)
		}
		if *asJSON {
			os.Stdout.Write(raw)
			return 0
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return failErr(err)
		}
		admin.FormatQueue(os.Stdout, []queue.Message{m})
		return 0
	case "delete", "hold":
		verb := map[string]string{"delete": "deleted", "hold": "held"}[sub]
		if len(pos) == 0 {
			if len(filters) == 0 {
				fmt.Fprintf(os.Stderr, "facteur: queue %s needs an ID or a filter (--sender, --client-ip, --domain, --older-than)\n", sub)
				return 2
			}
			var res struct{ Count int }
			if err := c.do("POST", "/queue/"+sub, filters, nil, &res); err != nil {
				return failErr(err)
			}
			fmt.Printf("%d message%s %s\n", res.Count, plural(res.Count), verb)
			return 0
		}
		id, ok := needID()
		if !ok {
			return 2
		}
		if err := c.do("POST", "/queue/"+id+"/"+sub, nil, nil, nil); err != nil {
			return failErr(err)
		}
		fmt.Printf("1 message %s\n", verb)
		return 0
	case "release":
		id, ok := needID()
		if !ok {
			return 2
		}
		if err := c.do("POST", "/queue/"+id+"/release", nil, nil, nil); err != nil {
			return failErr(err)
		}
		fmt.Println("1 message released")
		return 0
	case "flush":
		path := "/queue/flush"
		if len(pos) > 0 {
			id, ok := needID()
			if !ok {
				return 2
			}
			path = "/queue/" + id + "/flush"
		}
		var rep admin.FlushReport
		if err := c.do("POST", path, nil, nil, &rep); err != nil {
			return failErr(err)
		}
		if *asJSON {
			json.NewEncoder(os.Stdout).Encode(rep)
			return 0
		}
		fmt.Printf("%d recipient%s due now\n", rep.Flushed, plural(rep.Flushed))
		for _, s := range rep.Skipped {
			fmt.Printf("skipped %s %s: provider %s suspended until %s (%s)\n", s.ID, s.Rcpt, s.Provider, s.Until.Format(time.RFC3339), s.Reason)
		}
		return 0
	case "compact":
		// Offline, like postsuper's maintenance: the file is rewritten with
		// only its live pages (issue 19 §5).
		before, after, err := queue.Compact(dbPath(cfg), queue.Options{})
		if err != nil {
			return failErr(err)
		}
		fmt.Printf("%s: %s -> %s\n", dbPath(cfg), humanBytes(before), humanBytes(after))
		return 0
	default:
		fmt.Fprintln(os.Stderr, queueUsage)
		return 2
	}
}

// humanBytes writes n as ops read a file size.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

var _ = flag.ErrHelp

// offlineGet answers a read of the admin endpoint from the database, with
// the endpoint's own handler, while the daemon is down.
func offlineGet(cfg *config.Config, path string, q url.Values) ([]byte, error) {
	store, err := openStore(cfg, false)
	if err != nil {
		return nil, err
	}
	if store == nil {
		// No database yet: an empty queue, as the daemon would say.
		switch {
		case path != "/queue":
			return nil, fmt.Errorf("%s: %w", strings.TrimPrefix(path, "/queue/"), queue.ErrNotFound)
		case q.Get("format") == "text":
			return []byte("Mail queue is empty\n"), nil
		default:
			return []byte("[]\n"), nil
		}
	}
	defer store.Close()
	pol, err := loadPolicy(cfg)
	if err != nil {
		return nil, err
	}
	srv := &admin.Server{Store: store, Log: slog.New(slog.DiscardHandler), Decorate: func(msgs []queue.Message) { decorate(pol, msgs) }}
	u := path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", u, nil))
	if rec.Code/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(rec.Body.Bytes(), &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("queue: %d", rec.Code)
	}
	return rec.Body.Bytes(), nil
}
