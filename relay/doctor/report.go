package doctor

import (
	"fmt"
	"io"
	"strings"
)

// checkTitles are the section headings of the text report.
var checkTitles = map[string]string{
	CheckSPF:      "SPF",
	CheckDKIM:     "DKIM",
	CheckDMARC:    "DMARC",
	CheckPTR:      "Reverse DNS (PTR, FCrDNS)",
	CheckDNSBL:    "DNS block lists",
	CheckHostname: "Host name (EHLO)",
	CheckMTASTS:   "MTA-STS (the domain's own MX)",
	CheckDANE:     "DANE (the domain's own MX)",
}

// WriteText writes the report for people: one section per check, each
// finding as "OK|WARN|FAIL  detail" with the fix below it, and a summary
// line.
func WriteText(w io.Writer, fs []Finding) error {
	var b strings.Builder
	prev := ""
	var fails, warns int
	for _, f := range fs {
		if f.Check != prev {
			if prev != "" {
				b.WriteByte('\n')
			}
			title := checkTitles[f.Check]
			if title == "" {
				title = f.Check
			}
			b.WriteString("== " + title + "\n")
			prev = f.Check
		}
		fmt.Fprintf(&b, "%-4s  %s\n", strings.ToUpper(string(f.Status)), f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(&b, "      fix: %s\n", f.Fix)
		}
		switch f.Status {
		case Fail:
			fails++
		case Warn:
			warns++
		}
	}
	b.WriteByte('\n')
	switch {
	case fails == 0 && warns == 0:
		b.WriteString("All checks passed.\n")
	default:
		fmt.Fprintf(&b, "%s, %s.\n", plural(fails, "problem", "problems"), plural(warns, "warning", "warnings"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
