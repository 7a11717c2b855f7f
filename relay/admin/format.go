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
	if len(msgs) == 0 {
		fmt.Fprintln(w, "Mail queue is empty")
		return
	}
	fmt.Fprintf(w, "%-12s %9s %-20s %s\n", "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")
	var total int64
	for _, m := range msgs {
		total += m.Size
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
	fmt.Fprintf(w, "-- %d Kbytes in %d Request%s.\n", (total+1023)/1024, len(msgs), plural(len(msgs)))
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
