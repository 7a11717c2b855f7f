package admin

import (
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
	if len(msgs) == 0 {
		if filtered {
			fmt.Fprintln(w, "No queued message matches")
		} else {
			fmt.Fprintln(w, "Mail queue is empty")
		}
		return
	}
	fmt.Fprintf(w, "%-12s %9s %-23s %s\n", "-Queue ID-", "--Size--", "-----Arrival Time------", "-Sender/Recipient-------")
	var total int64
	for _, m := range msgs {
		total += m.Size
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
				line += fmt.Sprintf(", %d attempt%s", r.Attempts, plural(r.Attempts))
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
	fmt.Fprintf(w, "-- %d Kbytes in %d Request%s.\n", (total+1023)/1024, len(msgs), plural(len(msgs)))
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

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
