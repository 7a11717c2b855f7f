package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/admin/client"
	"facteur/relay/config"
	"facteur/relay/daemon"
)

const queueUsage = `usage: facteur queue list [--json] [ID...] [FILTERS]
       facteur queue show ID [--json] [--body]
       facteur queue delete  ID... | - | FILTERS | --all
       facteur queue hold    ID... | - | FILTERS | --all
       facteur queue release ID... | - | FILTERS | --all
       facteur queue flush   [ID... | - | FILTERS]      (nothing: the whole queue)
       facteur queue compact     (daemon stopped: give back the space a drained queue left)
FILTERS (all of those given must match):
  --sender ADDR        envelope sender; * matches any run of characters (*@example.com), <> the null sender
  --client-ip IP|CIDR  the client that submitted it (127.0.0.3, 10.0.0.0/8)
  --user NAME          the local account that submitted it (www-data)
  --domain D           a recipient at domain D
  --provider P         a recipient at provider P (facteur providers)
  --status S           a recipient in status S (queued, deferred, held, ...)
  --older-than D       received more than D ago (90m, 2h, 3d)
  --younger-than D     received less than D ago
IDs may be given several at once, or one per line on standard input with "-".
delete, hold and release need an ID or a filter, or --all for every message.
Run 'facteur queue COMMAND --help' for the flags of one command.`

// queueCmd describes what one queue subcommand takes, so that its --help
// shows only those flags and a flag it cannot take is refused.
type queueCmd struct {
	args    string
	filters bool // takes IDs and the filters
	all     bool // takes --all
	body    bool // takes --body (show)
}

var queueCmds = map[string]queueCmd{
	"list":    {args: "[--json] [ID...] [FILTERS]", filters: true},
	"show":    {args: "ID [--json] [--body]", body: true},
	"delete":  {args: "ID... | - | FILTERS | --all", filters: true, all: true},
	"hold":    {args: "ID... | - | FILTERS | --all", filters: true, all: true},
	"release": {args: "ID... | - | FILTERS | --all", filters: true, all: true},
	"flush":   {args: "[ID... | - | FILTERS]", filters: true},
	"compact": {args: "(the daemon stopped)"},
}

// queueFilterFlags maps each filter flag to its admin query key.
var queueFilterFlags = []struct{ flag, key, help string }{
	{"sender", "sender", "envelope sender; * matches any run of characters, <> the null sender"},
	{"client-ip", "client_ip", "client address or CIDR prefix (10.0.0.0/8)"},
	{"user", "user", "local account that submitted the message"},
	{"domain", "domain", "a recipient at this domain"},
	{"provider", "provider", "a recipient at this provider"},
	{"status", "status", "a recipient in this status (" + statusList() + ")"},
	{"older-than", "older_than", "received more than this long ago (90m, 2h, 3d)"},
	{"younger-than", "younger_than", "received less than this long ago"},
}

func statusList() string {
	var s []string
	for _, st := range queue.Statuses() {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

func cmdQueue(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, queueUsage)
		return 2
	}
	sub := args[0]
	if isHelpArg(sub) {
		fmt.Println(queueUsage)
		return 0
	}
	spec, ok := queueCmds[sub]
	if !ok {
		fmt.Fprintf(os.Stderr, "facteur: unknown queue command %q\n%s\n", sub, queueUsage)
		return 2
	}
	fs, cfgPath := newFlags("queue " + sub)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: facteur queue %s %s\n", sub, spec.args)
		fs.PrintDefaults()
	}
	asJSON := new(bool)
	if sub != "compact" {
		asJSON = fs.Bool("json", false, "print JSON")
	}
	values := map[string]*string{}
	if spec.filters {
		for _, f := range queueFilterFlags {
			values[f.key] = fs.String(f.flag, "", f.help)
		}
	}
	var all, body *bool
	if spec.all {
		all = fs.Bool("all", false, "every message in the queue (needed when no ID or filter is given)")
	}
	if spec.body {
		body = fs.Bool("body", false, "also print the message body as stored (root or admin only)")
	}
	pos, err := parseFlags(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	q := url.Values{}
	for k, v := range values {
		if *v != "" {
			q.Set(k, *v)
		}
	}
	if err := checkFilterValues(q); err != nil {
		fmt.Fprintf(os.Stderr, "facteur: queue %s: %v\n", sub, err)
		return 2
	}
	if sub == "compact" {
		if len(pos) > 0 {
			fmt.Fprintln(os.Stderr, "usage: facteur queue compact")
			return 2
		}
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return failErr(err)
		}
		// Offline, like postsuper's maintenance: the file is rewritten with
		// only its live pages (issue 19 §5).
		before, after, err := queue.Compact(admin.DBPath(cfg), queue.Options{})
		if err != nil {
			return failErr(err)
		}
		fmt.Printf("%s: %s -> %s\n", admin.DBPath(cfg), admin.HumanBytes(before), admin.HumanBytes(after))
		return 0
	}
	var ids []string
	if sub == "show" {
		if len(pos) != 1 {
			fmt.Fprintf(os.Stderr, "facteur: queue show takes exactly one ID\nusage: facteur queue show %s\n", spec.args)
			return 2
		}
		ids = pos
	} else if ids, err = readIDs(pos, os.Stdin); err != nil {
		fmt.Fprintf(os.Stderr, "facteur: queue %s: %v\n", sub, err)
		return 2
	}
	for _, id := range ids {
		if _, err := queue.ParseID(id); err != nil {
			fmt.Fprintf(os.Stderr, "facteur: queue %s: %v\n", sub, err)
			return 2
		}
		q.Add("id", id)
	}
	if all != nil && *all {
		if len(q) > 0 {
			fmt.Fprintf(os.Stderr, "facteur: queue %s: --all selects every message; give it without IDs or filters\n", sub)
			return 2
		}
		q.Set("all", "1")
	}
	if spec.all && len(q) == 0 {
		fmt.Fprintf(os.Stderr, "facteur: queue %s needs a message ID, a filter (--sender, --client-ip, --user, --domain, --provider, --status, --older-than, --younger-than), or --all\n", sub)
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	qc := &queueClient{cfg: cfg, c: client.New(cfg)}
	switch sub {
	case "list":
		return qc.list(q, *asJSON)
	case "show":
		return qc.show(ids[0], *asJSON, *body)
	case "flush":
		var rep admin.FlushReport
		if err := qc.do("POST", "/queue/flush", q, &rep); err != nil {
			return failErr(err)
		}
		if *asJSON {
			json.NewEncoder(os.Stdout).Encode(rep)
			return 0
		}
		if len(q) == 0 {
			// The whole queue: the daemon's flush loop moves it in the
			// background; the count is of the recipients waiting.
			fmt.Printf("queue flushed: %d recipient%s due now\n", rep.Flushed, admin.Plural(rep.Flushed))
		} else {
			fmt.Printf("%d message%s flushed\n", rep.Flushed, admin.Plural(rep.Flushed))
		}
		for _, s := range rep.Skipped {
			fmt.Printf("skipped %s %s: provider %s suspended until %s (%s)\n", s.ID, s.Rcpt, s.Provider, s.Until.Local().Format(admin.TextTime), s.Reason)
		}
		return 0
	case "compact":
		// Offline, like postsuper's maintenance: the file is rewritten with
		// only its live pages (issue 19 §5).
		before, after, err := queue.Compact(admin.DBPath(cfg), queue.Options{})
		if err != nil {
			return failErr(err)
		}
		fmt.Printf("%s: %s -> %s\n", admin.DBPath(cfg), admin.HumanBytes(before), admin.HumanBytes(after))
		return 0
	default:
		var rep admin.BulkReport
		if err := qc.do("POST", "/queue/"+sub, q, &rep); err != nil {
			return failErr(err)
		}
		if *asJSON {
			json.NewEncoder(os.Stdout).Encode(rep)
			return 0
		}
		verb := map[string]string{"delete": "deleted", "hold": "held", "release": "released"}[sub]
		fmt.Printf("%d message%s %s\n", rep.Count, admin.Plural(rep.Count), verb)
		return 0
	}
}

func isHelpArg(s string) bool {
	return s == "-h" || s == "-help" || s == "--help" || s == "help"
}

// checkFilterValues refuses a malformed filter before anything is asked of
// the daemon, with the message the daemon would give.
func checkFilterValues(q url.Values) error {
	if v := q.Get("client_ip"); v != "" {
		if _, err := queue.ParseClientFilter(v); err != nil {
			return errors.New(strings.TrimSuffix(err.Error(), ": "+queue.ErrInvalid.Error()))
		}
	}
	if v := q.Get("status"); v != "" && !queue.Status(v).Valid() {
		return fmt.Errorf("unknown status %q (want one of %s)", v, statusList())
	}
	return nil
}

// readIDs returns the IDs given as arguments, "-" standing for those read
// from stdin (whitespace-separated, as postsuper -d - reads them).
func readIDs(pos []string, stdin io.Reader) ([]string, error) {
	var ids []string
	dash := false
	for _, p := range pos {
		if p != "-" {
			ids = append(ids, p)
			continue
		}
		if dash {
			return nil, errors.New(`"-" given twice`)
		}
		dash = true
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		sc.Split(bufio.ScanWords)
		n := 0
		for sc.Scan() {
			ids = append(ids, sc.Text())
			n++
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading IDs from stdin: %w", err)
		}
		if n == 0 {
			return nil, errors.New("no ID on standard input")
		}
	}
	return ids, nil
}

// queueClient runs a queue request against the daemon, or, when the daemon
// is down, against the database with the endpoint's own handler: like
// mailq and postsuper, the queue tools must not need the daemon.
type queueClient struct {
	cfg     *config.Config
	c       *client.Client
	offline bool // the daemon was down: answered from the database
}

func (qc *queueClient) do(method, path string, q url.Values, out any) error {
	err := qc.c.Do(method, path, q, nil, out)
	if !errors.Is(err, client.ErrDaemonDown) {
		return err
	}
	qc.offline = true
	raw, err := daemon.OfflineDo(qc.cfg, method, path, q)
	if err != nil {
		return err
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = raw
		return nil
	case io.Writer:
		_, err := o.Write(raw)
		return err
	default:
		return json.Unmarshal(raw, out)
	}
}

func (qc *queueClient) list(q url.Values, asJSON bool) int {
	filtered := len(q) > 0
	if !asJSON {
		q.Set("format", "text")
	}
	// Streamed from the daemon: the first lines print at once.
	err := qc.c.Do("GET", "/queue", q, nil, os.Stdout)
	if err == nil {
		return 0
	}
	if !errors.Is(err, client.ErrDaemonDown) {
		return failErr(err)
	}
	qc.offline = true
	waiting := 0
	if !filtered {
		waiting = qc.maildrop(asJSON)
	}
	var w io.Writer = os.Stdout
	if !asJSON && waiting > 0 {
		// The maildrop was listed: an empty queue is not an empty system.
		w = dropWrite{w: w, drop: "Mail queue is empty\n"}
	}
	if err := daemon.OfflineList(qc.cfg, q, w); err != nil {
		return failErr(err)
	}
	return 0
}

// dropWrite passes writes on but one equal to drop.
type dropWrite struct {
	w    io.Writer
	drop string
}

func (d dropWrite) Write(b []byte) (int, error) {
	if string(b) == d.drop {
		return len(b), nil
	}
	return d.w.Write(b)
}

// maildrop lists, with the daemon down, what the shim left in the maildrop
// for it: that mail is not in the queue yet, but it is not lost either, and
// "Mail queue is empty" would be a lie. It returns how many it found.
func (qc *queueClient) maildrop(asJSON bool) int {
	out := os.Stdout
	if asJSON {
		out = os.Stderr
	}
	n, err := admin.WriteMaildrop(out, filepath.Join(qc.cfg.DataDir, "maildrop"), !asJSON)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "facteur: cannot read the maildrop: %v\n", err)
	}
	return n
}

// show prints one message as postcat -q does: envelope, recipients with
// their attempts, the header, and with body the whole message.
func (qc *queueClient) show(id string, asJSON, body bool) int {
	var m queue.Message
	if err := qc.do("GET", "/queue/"+id, nil, &m); err != nil {
		return failErr(err)
	}
	part := "header"
	if body {
		part = "all"
	}
	var raw []byte
	if err := qc.do("GET", "/queue/"+id+"/message", url.Values{"part": {part}}, &raw); err != nil {
		return failErr(err)
	}
	if asJSON {
		out := struct {
			queue.Message
			Header string `json:"header"`
			Body   string `json:"body,omitempty"`
		}{Message: m}
		h := admin.HeaderOf(raw)
		out.Header = string(h)
		if body {
			out.Body = string(raw[len(h):])
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		os.Stdout.Write(append(b, '\n'))
		return 0
	}
	admin.WriteShow(os.Stdout, m, raw, body)
	return 0
}
