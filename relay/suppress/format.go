package suppress

// The list's formats: the table of `suppress list`, the CSV of `suppress
// export`, and what `suppress import` reads.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"facteur/queue"
)

// CSVHeader is the column order of `suppress export`: every field of
// queue.Suppression, so that import restores the list exactly.
var CSVHeader = []string{"address", "reason", "response", "source", "first_seen", "last_seen", "expires", "count"}

// WriteCSV writes the export: a header row, then one row per entry with
// every field; times are RFC 3339 with their full precision (UTC), so that
// an import gives back the same values; expires is empty for never.
func WriteCSV(w io.Writer, list []queue.Suppression) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
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

// WriteTable prints the list as `suppress list` shows it: a table.
func WriteTable(w io.Writer, list []queue.Suppression) {
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

// ParseImport reads an import file's data (path names it in errors): the
// CSV of export (columns by header name, in any order; only address is
// required), a list of bare addresses one per line (no header), or the
// JSON of `suppress list --json`. Every problem is reported, with its
// line, and nothing is imported if there is one.
func ParseImport(path string, data []byte) ([]queue.Suppression, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		var list []queue.Suppression
		if err := json.Unmarshal(t, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var errs []error
		for i, s := range list {
			if err := Check(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: entry %d: %w", path, i+1, err))
			}
		}
		return list, errors.Join(errs...)
	}
	return ParseCSV(path, data)
}

// ParseCSV reads the CSV of export, or a bare list of addresses.
func ParseCSV(path string, data []byte) ([]queue.Suppression, error) {
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
			if !slices.Contains(CSVHeader, name) {
				return nil, fmt.Errorf("%s:1: unknown column %q (want %s)", path, name, strings.Join(CSVHeader, ","))
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
	if err := Check(s); err != nil {
		errs = append(errs, err)
	}
	return s, errs
}

// Check refuses what the store would refuse, before anything is written,
// so that a bad file or request imports nothing.
func Check(s queue.Suppression) error {
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
