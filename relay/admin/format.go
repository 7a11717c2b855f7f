package admin

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"facteur/queue"
)

// TextTime is how the text outputs print a time: local, with its zone, so
// that `queue list` and `status` agree and say which clock they mean.
const TextTime = "2006-01-02 15:04:05 MST"

// FormatQueue writes the queue the way mailq does: one block per message
// (ID, size, arrival, sender, then the client and local user that submitted
// it), then one line per recipient with its status and, when it waits, why.
// filtered says the list was selected by a filter: an empty one then says
// that nothing matched, not that the queue is empty.
func FormatQueue(w io.Writer, msgs []queue.Message, filtered bool) {
	q := QueueText{W: w, Filtered: filtered}
	for _, m := range msgs {
		q.Add(m)
	}
	q.End()
}

// QueueText writes FormatQueue's text one message at a time, so that a
// listing streams: Add each message, then End.
type QueueText struct {
	W io.Writer
	// Filtered: the listing is a filter's selection, so that an empty one
	// says nothing matched rather than that the queue is empty.
	Filtered bool
	n        int
	total    int64
}

// Add writes one message's block (after the header, before the first).
func (q *QueueText) Add(m queue.Message) {
	w := q.W
	if q.n == 0 {
		fmt.Fprintf(w, "%-12s %9s %-23s %s\n", "-Queue ID-", "--Size--", "-----Arrival Time------", "-Sender/Recipient-------")
	}
	q.n++
	q.total += m.Size
	sender := m.Sender
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	fmt.Fprintf(w, "%-12s %9d %-23s %s\n", m.ID, m.Size, m.Created.Local().Format(TextTime), sender)
	fmt.Fprintf(w, "%-46s %s\n", "", submitter(m))
	for _, r := range m.Recipients {
		line := fmt.Sprintf("%-46s %s [%s", "", r.Address, r.Status)
		if r.Provider != "" {
			line += " " + r.Provider
		}
		if r.Attempts > 0 {
			line += fmt.Sprintf(", %d attempt%s", r.Attempts, Plural(r.Attempts))
		}
		if !r.NextAttempt.IsZero() && r.Status != queue.Queued {
			line += ", next " + r.NextAttempt.Local().Format(TextTime)
		}
		line += "]"
		fmt.Fprintln(w, line)
		if r.LastResponse != "" {
			fmt.Fprintf(w, "%-46s (%s)\n", "", oneLine(r.LastResponse))
		}
	}
	fmt.Fprintln(w)
}

// End writes the totals, or that the queue is empty (or that nothing
// matched the filter).
func (q *QueueText) End() {
	if q.n == 0 {
		if q.Filtered {
			fmt.Fprintln(q.W, "No queued message matches")
		} else {
			fmt.Fprintln(q.W, "Mail queue is empty")
		}
		return
	}
	fmt.Fprintf(q.W, "-- %d Kbytes in %d Request%s.\n", (q.total+1023)/1024, q.n, Plural(q.n))
}

// submitter says who handed m in: client IP (or the local pickup), the
// local user when known, the authenticated user when any.
func submitter(m queue.Message) string {
	client := m.ClientIP
	if client == "" {
		client = "local"
	}
	s := "client=" + client
	if m.User != "" {
		s += " user=" + m.User
		if m.UID != nil && strconv.Itoa(*m.UID) != m.User {
			s += fmt.Sprintf(" (uid %d)", *m.UID)
		}
	}
	if m.AuthUser != "" {
		s += " auth=" + m.AuthUser
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r\n", " ")
	return strings.ReplaceAll(s, "\n", " ")
}

// Plural is "s" unless n is 1.
func Plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// WriteShow prints one message as postcat -q does: envelope, recipients with
// their attempts, the header, and with body the whole message.
func WriteShow(w io.Writer, m queue.Message, raw []byte, body bool) {
	fmt.Fprintf(w, "*** ENVELOPE %s ***\n", m.ID)
	fmt.Fprintf(w, "arrival:   %s\n", m.Created.Local().Format(TextTime))
	fmt.Fprintf(w, "size:      %d\n", m.Size)
	sender := m.Sender
	if sender == "" {
		sender = "<> (null sender)"
	}
	fmt.Fprintf(w, "sender:    %s\n", sender)
	client := m.ClientIP
	if client == "" {
		client = "local"
	}
	if m.Helo != "" {
		client += " (helo " + m.Helo + ")"
	}
	fmt.Fprintf(w, "client:    %s\n", client)
	if m.User != "" {
		u := m.User
		if m.UID != nil {
			u += fmt.Sprintf(" (uid %d)", *m.UID)
		}
		fmt.Fprintf(w, "user:      %s\n", u)
	}
	if m.AuthUser != "" {
		fmt.Fprintf(w, "auth:      %s\n", m.AuthUser)
	}
	if !m.Expires.IsZero() {
		fmt.Fprintf(w, "expires:   %s\n", m.Expires.Local().Format(TextTime))
	}
	var flags []string
	if m.SMTPUTF8 {
		flags = append(flags, "SMTPUTF8")
	}
	if m.EightBit {
		flags = append(flags, "8BITMIME")
	}
	if m.IsDSN {
		flags = append(flags, "DSN")
	}
	if len(flags) > 0 {
		fmt.Fprintf(w, "flags:     %s\n", strings.Join(flags, " "))
	}
	for _, r := range m.Recipients {
		line := fmt.Sprintf("recipient: %s [%s", r.Address, r.Status)
		if r.Provider != "" {
			line += " " + r.Provider
		}
		line += fmt.Sprintf(", %d attempt%s", r.Attempts, Plural(r.Attempts))
		if !r.NextAttempt.IsZero() {
			line += ", next " + r.NextAttempt.Local().Format(TextTime)
		}
		fmt.Fprintln(w, line+"]")
		for _, a := range r.History {
			mx := a.MX
			if mx == "" {
				mx = "-"
			}
			fmt.Fprintf(w, "    %s  %s  %s\n", a.At.Local().Format(TextTime), mx, oneLine(a.Response))
		}
		if len(r.History) == 0 && r.LastResponse != "" {
			fmt.Fprintf(w, "    %s\n", oneLine(r.LastResponse))
		}
	}
	h := HeaderOf(raw)
	fmt.Fprintln(w, "*** HEADER ***")
	w.Write(bytes.ReplaceAll(bytes.TrimRight(h, "\r\n"), []byte("\r\n"), []byte("\n")))
	fmt.Fprintln(w)
	if body {
		fmt.Fprintln(w, "*** BODY ***")
		w.Write(bytes.ReplaceAll(raw[len(h):], []byte("\r\n"), []byte("\n")))
		if len(raw) > len(h) && raw[len(raw)-1] != '\n' {
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w, "*** END ***")
}

// HumanBytes writes n as ops read a file size.
func HumanBytes(n int64) string {
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
