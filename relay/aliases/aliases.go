// Package aliases reads /etc/aliases in Debian's format (aliases(5)) for
// cleanup's alias expansion: `name: addr, addr`, comments, continuation
// lines. facteur delivers to addresses and to local mailboxes only, so an
// entry piping to a command, including a file, or writing to a file is
// refused with a message naming file:line, and the rest of the file still
// applies. It owns the file format, not the expansion (relay/cleanup).
package aliases

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Problem is an entry that was skipped, with where and why.
type Problem struct {
	File string
	Line int
	Name string
	Msg  string
}

func (p Problem) Error() string {
	return fmt.Sprintf("%s:%d: alias %q: %s", p.File, p.Line, p.Name, p.Msg)
}

// DefaultPath is where Debian keeps the aliases.
const DefaultPath = "/etc/aliases"

// Load reads path. A missing file is no alias and no error (a host without
// an MTA may have none). The map is name (lower-cased) -> comma-separated
// targets, the form of the config's aliases: key.
func Load(path string) (map[string]string, []Problem, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("aliases: %w", err)
	}
	m, probs := Parse(path, data)
	return m, probs, nil
}

// Parse reads the aliases(5) format: a line starting with whitespace
// continues the previous one, '#' starts a comment line, names end with ':'
// and are case-insensitive; a name listed twice keeps its first entry (as
// postalias warns and does).
func Parse(name string, data []byte) (map[string]string, []Problem) {
	out := map[string]string{}
	var probs []Problem
	type entry struct {
		line int
		text string
	}
	var entries []entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
			continue
		case line[0] == ' ' || line[0] == '\t':
			if len(entries) == 0 {
				probs = append(probs, Problem{name, n, "", "continuation line with nothing to continue"})
				continue
			}
			entries[len(entries)-1].text += " " + trimmed
		default:
			entries = append(entries, entry{n, line})
		}
	}
	for _, e := range entries {
		key, val, ok := strings.Cut(e.text, ":")
		key = strings.ToLower(strings.TrimSpace(key))
		if !ok || key == "" || strings.ContainsAny(key, " \t@\"") {
			probs = append(probs, Problem{name, e.line, key, "want NAME: ADDRESS, ADDRESS"})
			continue
		}
		if _, dup := out[key]; dup {
			probs = append(probs, Problem{name, e.line, key, "listed twice; the first entry is used"})
			continue
		}
		var targets []string
		bad := ""
		for _, t := range splitTargets(val) {
			switch {
			case strings.HasPrefix(t, "|") || strings.HasPrefix(t, `"|`):
				bad = "delivery to a command (" + t + ") is not supported: facteur relays to addresses; point it at an address"
			case strings.HasPrefix(strings.ToLower(t), ":include:"):
				bad = "include files (" + t + ") are not supported: list the addresses here"
			case strings.HasPrefix(t, "/") || strings.HasPrefix(t, `"/`):
				bad = "delivery to a file (" + t + ") is not supported: point it at an address"
			}
			targets = append(targets, t)
		}
		if bad != "" {
			probs = append(probs, Problem{name, e.line, key, bad})
			continue
		}
		if len(targets) == 0 {
			probs = append(probs, Problem{name, e.line, key, "no target"})
			continue
		}
		out[key] = strings.Join(targets, ", ")
	}
	return out, probs
}

// splitTargets splits at commas outside quotes.
func splitTargets(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			if t := strings.TrimSpace(cur.String()); t != "" {
				out = append(out, t)
			}
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	if t := strings.TrimSpace(cur.String()); t != "" {
		out = append(out, t)
	}
	return out
}

// Merge returns the file's aliases overlaid by the config's: an alias in
// the config wins over the same name in /etc/aliases.
func Merge(file, config map[string]string) map[string]string {
	out := make(map[string]string, len(file)+len(config))
	for k, v := range file {
		out[k] = v
	}
	for k, v := range config {
		out[strings.ToLower(k)] = v
	}
	return out
}
