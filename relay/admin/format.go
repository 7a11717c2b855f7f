package admin

import (
	"fmt"
	"io"
	"strings"
	"time"

	"facteur/queue"
)

// FormatQueue writes the queue the way mailq does: one block per message,
// then one line per recipient with its status and, when it waits, why.
func FormatQueue(w io.Writer, msgs []queue.Message) {
	q := QueueText{W: w}
	for _, m := range msgs {
		q.Add(m)
	}
	q.End()
}

// QueueText writes FormatQueue's text one message at a time, so that a
// listing streams: Add each message, then End.
type QueueText struct {
	W     io.Writer
	n     int
	total int64
}

// Add writes one message's block (after the header, before the first).
func (q *QueueText) Add(m queue.Message) {
	w := q.W
	if q.n == 0 {
		fmt.Fprintf(w, "%-12s %9s %-20s %s\n", "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")
	}
	q.n++
	q.total += m.Size
	sender := m.Sender
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	fmt.Fprintf(w, "%-12s %9d %-20s %s\n", m.ID, m.Size, m.Created.Local().Format("Mon Jan _2 15:04:05"), sender)
	for _, r := range m.Recipients {
		line := fmt.Sprintf("%-43s %s [%s", "", r.Address, r.Status)
		if r.Provider != "" {
			line += " " + r.Provider
		}
		if r.Attempts > 0 {
			line += fmt.Sprintf(", %d attempts", r.Attempts)
		}
		if !r.NextAttempt.IsZero() && r.Status != queue.Queued {
			line += ", next " + r.NextAttempt.Local().Format(time.DateTime)
		}
		line += "]"
		fmt.Fprintln(w, line)
		if r.LastResponse != "" {
			fmt.Fprintf(w, "%-43s (%s)\n", "", oneLine(r.LastResponse))
		}
	}
	fmt.Fprintln(w)
}

// End writes the totals, or that the queue is empty.
func (q *QueueText) End() {
	if q.n == 0 {
		fmt.Fprintln(q.W, "Mail queue is empty")
		return
	}
	fmt.Fprintf(q.W, "-- %d Kbytes in %d Request%s.\n", (q.total+1023)/1024, q.n, plural(q.n))
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r\n", " ")
	return strings.ReplaceAll(s, "\n", " ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
