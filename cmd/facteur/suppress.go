package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"facteur/queue"
	"facteur/relay/address"
	"facteur/relay/admin"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/scheduler"
)

// facteur suppress (issue 7 §4) and the daemon's /suppressions endpoint.
// Every subcommand goes through the daemon when it runs, so that adding an
// address cancels its queued mail with DSNs and logs `suppressed`; when it
// is down they open the queue database directly and do the same there (the
// DSNs are queued and leave at the next start).

const suppressUsage = `usage: facteur suppress list [--json] [--all]
       facteur suppress add ADDR [--reason R]
       facteur suppress remove ADDR
       facteur suppress import FILE     (CSV as export writes it, "-" for stdin)
       facteur suppress export          (CSV on stdout)`

// csvHeader is the column order of `suppress export`: every field of
// queue.Suppression, so that import restores the list exactly.
var csvHeader = []string{"address", "reason", "response", "source", "first_seen", "last_seen", "expires", "count"}

// manualReason is the reason of `suppress add` without --reason.
const manualReason = "manual"

// suppressResult answers POST /suppressions and POST /bounces.
type suppressResult struct {
	Suppressed []queue.Suppression `json:"suppressed"`
	// Cancelled counts the queued recipients moved to status suppressed.
	Cancelled int `json:"cancelled"`
}

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
	*reason = manualReason
	switch sub {
	case "list":
		asJSON = fs.Bool("json", false, "print JSON")
		all = fs.Bool("all", false, "include expired entries")
	case "add":
		reason = fs.String("reason", manualReason, "the reason recorded")
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
	c := newAdminClient(cfg)
	switch sub {
	case "list":
		list, err := fetchSuppressions(ctx, cfg, c)
		if err != nil {
			return failErr(err)
		}
		if !*all {
			now := time.Now()
			active := list[:0]
			for _, s := range list {
				if s.Active(now) {
					active = append(active, s)
				}
			}
			list = active
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
		writeSuppressions(os.Stdout, list)
		return 0
	case "export":
		list, err := fetchSuppressions(ctx, cfg, c)
		if err != nil {
			return failErr(err)
		}
		if err := writeCSV(os.Stdout, list); err != nil {
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
		fmt.Printf("suppressed %s (%s); %d queued recipient%s cancelled\n", strings.ToLower(addr), r, res.Cancelled, plural(res.Cancelled))
		return 0
	case "remove":
		addr := strings.TrimSpace(pos[0])
		err := c.do("DELETE", "/suppressions/"+url.PathEscape(addr), nil, nil, nil)
		if errors.Is(err, errDaemonDown) {
			err = offlineUnsuppress(ctx, cfg, addr)
		}
		if err != nil {
			return failErr(fmt.Errorf("suppress remove: %w", err))
		}
		fmt.Printf("%s removed from the suppression list\n", strings.ToLower(addr))
		return 0
	case "import":
		list, err := readImport(pos[0])
		if err != nil {
			return failErr(err)
		}
		res, err := postSuppressions(ctx, cfg, c, list, true)
		if err != nil {
			return failErr(fmt.Errorf("suppress import %s: %w", pos[0], err))
		}
		fmt.Printf("imported %d suppression%s; %d queued recipient%s cancelled\n", len(res.Suppressed), plural(len(res.Suppressed)), res.Cancelled, plural(res.Cancelled))
		return 0
	}
	return 2
}

// fetchSuppressions returns the whole list, expired entries included, from
// the daemon or, when it is down, from the database.
func fetchSuppressions(ctx context.Context, cfg *config.Config, c *adminClient) ([]queue.Suppression, error) {
	var list []queue.Suppression
	err := c.do("GET", "/suppressions", nil, nil, &list)
	if errors.Is(err, errDaemonDown) {
		store, err := openStore(cfg, false)
		if err != nil || store == nil {
			return []queue.Suppression{}, err
		}
		defer store.Close()
		list, err = store.Suppressions(ctx)
		if err != nil {
			return nil, err
		}
	} else if err != nil {
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
func postSuppressions(ctx context.Context, cfg *config.Config, c *adminClient, list []queue.Suppression, replace bool) (suppressResult, error) {
	var q url.Values
	if replace {
		q = url.Values{"mode": {"import"}}
	}
	var res suppressResult
	err := c.do("POST", "/suppressions", q, list, &res)
	if !errors.Is(err, errDaemonDown) {
		return res, err
	}
	store, err := openStore(cfg, true)
	if err != nil {
		return res, err
	}
	defer store.Close()
	return applySuppressions(ctx, store, list, replace, time.Now(), nil, func(addr, why string, now time.Time) (int, error) {
		return offlineCancel(ctx, cfg, store, addr, why, now)
	})
}

func offlineUnsuppress(ctx context.Context, cfg *config.Config, addr string) error {
	store, err := openStore(cfg, false)
	if err != nil {
		return err
	}
	found := false
	if store != nil {
		defer store.Close()
		if found, err = store.Unsuppress(ctx, addr); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("%s is not suppressed", strings.ToLower(addr))
	}
	return nil
}

// canceller cancels the queued mail to a newly suppressed address and says
// how many recipients it cancelled.
type canceller func(addr, why string, now time.Time) (int, error)

// applySuppressions stores list and then cancels the queued mail to each
// entry active at now. replace stores each entry as given (import); else
// each is merged into the existing one (Store.Suppress: first_seen kept,
// count incremented). Missing times default to now, a missing source to
// manual and a missing reason to "manual". added, when not nil, sees each
// entry once stored. The stored entries come back.
func applySuppressions(ctx context.Context, store *queue.Store, list []queue.Suppression, replace bool, now time.Time, added func(queue.Suppression), cancel canceller) (suppressResult, error) {
	res := suppressResult{Suppressed: []queue.Suppression{}}
	for _, s := range list {
		if s.Source == "" {
			s.Source = queue.SourceManual
		}
		if s.Reason == "" {
			s.Reason = manualReason
		}
		if s.LastSeen.IsZero() {
			s.LastSeen = now
		}
		if replace {
			if s.FirstSeen.IsZero() {
				s.FirstSeen = s.LastSeen
			}
			if err := store.PutSuppression(ctx, s); err != nil {
				return res, err
			}
			s.Address = strings.ToLower(strings.TrimSpace(s.Address))
		} else {
			stored, err := store.Suppress(ctx, s)
			if err != nil {
				return res, err
			}
			s = stored
		}
		res.Suppressed = append(res.Suppressed, s)
		if added != nil {
			added(s)
		}
	}
	for _, s := range res.Suppressed {
		if !s.Active(now) {
			continue
		}
		n, err := cancel(s.Address, cancelReason(s), now)
		if err != nil {
			return res, err
		}
		res.Cancelled += n
	}
	return res, nil
}

// cancelReason is the text the cancelled recipients' DSNs give.
func cancelReason(s queue.Suppression) string {
	if s.Response != "" {
		return s.Reason + ": " + s.Response
	}
	return s.Reason
}

// offlineCancel does, with the daemon down, what its scheduler does when an
// address is suppressed, with the scheduler's own code (it needs no running
// scheduler): the queued recipients become suppressed and each sender gets
// one DSN, queued for the next start. The event lines go to stderr.
func offlineCancel(ctx context.Context, cfg *config.Config, store *queue.Store, addr, why string, now time.Time) (int, error) {
	s := scheduler.New(scheduler.Options{Hostname: cfg.Hostname, Postmaster: cfg.PostmasterAddress()},
		store, nil, scheduler.EngineShaper{}, nil, maillog.New(os.Stderr, cfg.LogFormat))
	return s.CancelSuppressed(ctx, addr, why, now)
}

// writeSuppressions prints the list as a table.
func writeSuppressions(w io.Writer, list []queue.Suppression) {
	if len(list) == 0 {
		fmt.Fprintln(w, "suppression list is empty")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tREASON\tSOURCE\tFIRST SEEN\tLAST SEEN\tCOUNT\tEXPIRES\tRESPONSE")
	day := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, s := range list {
		resp := s.Response
		if len(resp) > 80 {
			resp = resp[:77] + "..."
		}
		if resp == "" {
			resp = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.Address, s.Reason, s.Source, day(s.FirstSeen), day(s.LastSeen), s.Count, day(s.Expires), resp)
	}
	tw.Flush()
}

// writeCSV writes the export: a header row, then one row per entry with
// every field; times are RFC 3339 with their full precision (UTC), so that
// an import gives back the same values; expires is empty for never.
func writeCSV(w io.Writer, list []queue.Suppression) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, s := range list {
		rec := []string{s.Address, s.Reason, s.Response, string(s.Source), ts(s.FirstSeen), ts(s.LastSeen), ts(s.Expires), strconv.Itoa(s.Count)}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// readImport reads an import file: the CSV of export (columns by header
// name, in any order; only address is required), a list of bare addresses
// one per line (no header), or the JSON of `suppress list --json`. Every
// problem is reported, with its line, and nothing is imported if there is
// one.
func readImport(path string) ([]queue.Suppression, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("suppress import: %w", err)
	}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		var list []queue.Suppression
		if err := json.Unmarshal(t, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var errs []error
		for i, s := range list {
			if err := checkImported(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: entry %d: %w", path, i+1, err))
			}
		}
		return list, errors.Join(errs...)
	}
	return parseCSV(path, data)
}

func parseCSV(path string, data []byte) ([]queue.Suppression, error) {
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty file", path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cols := map[string]int{}
	var first []string
	if len(header) == 1 && strings.Contains(header[0], "@") {
		// A bare list of addresses: no header.
		cols["address"], first = 0, header
	} else {
		for i, name := range header {
			name = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(name, "\ufeff")))
			if !slices.Contains(csvHeader, name) {
				return nil, fmt.Errorf("%s:1: unknown column %q (want %s)", path, name, strings.Join(csvHeader, ","))
			}
			if _, dup := cols[name]; dup {
				return nil, fmt.Errorf("%s:1: column %q twice", path, name)
			}
			cols[name] = i
		}
		if _, ok := cols["address"]; !ok {
			return nil, fmt.Errorf("%s:1: no address column", path)
		}
	}
	var list []queue.Suppression
	var errs []error
	for {
		row, line := first, 1
		if row == nil {
			row, err = cr.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			line, _ = cr.FieldPos(0)
		}
		first = nil
		if len(row) == 1 && strings.TrimSpace(row[0]) == "" {
			continue
		}
		s, rowErrs := parseRow(row, cols)
		for _, e := range rowErrs {
			errs = append(errs, fmt.Errorf("%s:%d: %w", path, line, e))
		}
		list = append(list, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return list, nil
}

// parseRow reads one CSV row; a missing count is 1.
func parseRow(row []string, cols map[string]int) (queue.Suppression, []error) {
	raw := func(name string) string {
		if j, ok := cols[name]; ok && j < len(row) {
			return row[j]
		}
		return ""
	}
	get := func(name string) string { return strings.TrimSpace(raw(name)) }
	// Reason and response are kept byte for byte: an export must import
	// back exactly.
	s := queue.Suppression{
		Address:  get("address"),
		Reason:   raw("reason"),
		Response: raw("response"),
		Source:   queue.Source(get("source")),
		Count:    1,
	}
	var errs []error
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"first_seen", &s.FirstSeen}, {"last_seen", &s.LastSeen}, {"expires", &s.Expires}} {
		v := get(f.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not an RFC 3339 time", f.name, v))
			continue
		}
		*f.dst = t
	}
	if v := get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("count %q is not a whole number", v))
		}
		s.Count = n
	}
	if err := checkImported(s); err != nil {
		errs = append(errs, err)
	}
	return s, errs
}

// checkImported refuses what the store would refuse, before anything is
// written, so that a bad file imports nothing.
func checkImported(s queue.Suppression) error {
	switch {
	case s.Address == "":
		return errors.New("empty address")
	case !strings.Contains(s.Address, "@"):
		return fmt.Errorf("address %q has no @", s.Address)
	case strings.ContainsAny(s.Address, "\x00\r\n \t"):
		return fmt.Errorf("address %q contains white space or control characters", s.Address)
	case s.Source != "" && s.Source != queue.SourceSMTP && s.Source != queue.SourceDSN && s.Source != queue.SourceFBL && s.Source != queue.SourceManual:
		return fmt.Errorf("source %q is not smtp, dsn, fbl or manual", s.Source)
	case s.Count < 0:
		return fmt.Errorf("negative count %d", s.Count)
	case !s.FirstSeen.IsZero() && !s.LastSeen.IsZero() && s.FirstSeen.After(s.LastSeen):
		return fmt.Errorf("first_seen %s is after last_seen %s", s.FirstSeen.Format(time.RFC3339), s.LastSeen.Format(time.RFC3339))
	}
	return nil
}

// The daemon's endpoints.

func (d *endpoints) listSuppressions(w http.ResponseWriter, r *http.Request) {
	list, err := d.store.Suppressions(r.Context())
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	if list == nil {
		list = []queue.Suppression{}
	}
	admin.WriteJSON(w, http.StatusOK, list)
}

// maxImportBody bounds POST /suppressions: about a million entries.
const maxImportBody = 256 << 20

// addSuppressions takes one queue.Suppression or a list; ?mode=import stores
// them as given, else they are merged into existing entries.
func (d *endpoints) addSuppressions(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxImportBody))
	if err != nil {
		admin.WriteError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	var list []queue.Suppression
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		var one queue.Suppression
		err = json.Unmarshal(t, &one)
		list = []queue.Suppression{one}
	} else {
		err = json.Unmarshal(t, &list)
	}
	if err != nil {
		admin.WriteError(w, http.StatusBadRequest, fmt.Errorf("want a suppression or a list of them as JSON: %w", err))
		return
	}
	var errs []error
	for i, s := range list {
		if err := checkImported(s); err != nil {
			errs = append(errs, fmt.Errorf("entry %d: %w", i+1, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		admin.WriteError(w, http.StatusBadRequest, err)
		return
	}
	res, err := d.suppress(r.Context(), list, r.URL.Query().Get("mode") == "import", time.Now())
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, queue.ErrInvalid) {
			code = http.StatusBadRequest
		}
		admin.WriteError(w, code, err)
		return
	}
	admin.WriteJSON(w, http.StatusOK, res)
}

// suppress stores list, logs one `suppressed` line per entry and has the
// scheduler cancel the queued mail to the active ones (it logs each
// cancelled recipient and sends the DSNs).
func (d *endpoints) suppress(ctx context.Context, list []queue.Suppression, replace bool, now time.Time) (suppressResult, error) {
	logIt := func(s queue.Suppression) {
		d.log.Info(maillog.Suppressed, "rcpt", "<"+s.Address+">", "class", s.Reason, "source", string(s.Source), "resp", s.Response)
	}
	return applySuppressions(ctx, d.store, list, replace, now, logIt, func(addr, why string, now time.Time) (int, error) {
		return d.sched.CancelSuppressed(ctx, addr, why, now)
	})
}

func (d *endpoints) removeSuppression(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("addr")
	found, err := d.store.Unsuppress(r.Context(), addr)
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	if !found {
		admin.WriteError(w, http.StatusNotFound, fmt.Errorf("%s is not suppressed", strings.ToLower(addr)))
		return
	}
	admin.WriteJSON(w, http.StatusOK, map[string]string{"removed": strings.ToLower(addr)})
}
