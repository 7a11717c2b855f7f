package breaker

import (
	"fmt"
	"strings"
)

// Report is the body of the message sent to the `notify` addresses when
// keys trip: who, the figures, where the failures went and what the
// remote servers said, and the commands to act. held is how many messages
// the trip held in the queue.
func Report(hostname string, trips []Trip, action string, held int) string {
	var b strings.Builder
	names := make([]string, len(trips))
	for i, t := range trips {
		names[i] = string(t.Key)
	}
	fmt.Fprintf(&b, "The circuit breaker of facteur on %s stopped %s:\n", hostname, strings.Join(names, " and "))
	fmt.Fprintf(&b, "too many of its recipients failed or were deferred, as when a hacked site\n")
	fmt.Fprintf(&b, "sends to harvested addresses. Stopping it now keeps the server's IP off\n")
	fmt.Fprintf(&b, "the block lists, for every other sender on this machine.\n\n")
	for _, t := range trips {
		fmt.Fprintf(&b, "%s: %s (tripped %s)\n", t.Key, t.Summary(), t.At.UTC().Format("2006-01-02 15:04:05 UTC"))
		if len(t.TopDomains) > 0 {
			fmt.Fprintf(&b, "  top recipient domains of the failures:\n")
			for _, c := range t.TopDomains {
				fmt.Fprintf(&b, "    %6d  %s\n", c.N, c.Value)
			}
		}
		if len(t.TopReplies) > 0 {
			fmt.Fprintf(&b, "  top replies:\n")
			for _, c := range t.TopReplies {
				fmt.Fprintf(&b, "    %6d  %s\n", c.N, c.Value)
			}
		}
		b.WriteString("\n")
	}
	if action == "refuse" {
		fmt.Fprintf(&b, "New mail of this sender is refused with 451 4.7.1 (the client keeps it\n")
		fmt.Fprintf(&b, "and retries); its mail already queued and not yet sent is held (%d messages).\n\n", held)
	} else {
		fmt.Fprintf(&b, "New mail of this sender is accepted and held, as is its mail already\n")
		fmt.Fprintf(&b, "queued and not yet sent (%d messages held now). Other senders are untouched.\n\n", held)
	}
	fmt.Fprintf(&b, "What to do: find and clean the site (the held messages show what it sent),\n")
	fmt.Fprintf(&b, "then decide what becomes of the held mail:\n\n")
	fmt.Fprintf(&b, "  facteur breaker list                        # what is stopped, and why\n")
	fmt.Fprintf(&b, "  facteur queue list                          # held messages show as held\n")
	fmt.Fprintf(&b, "  facteur breaker reset %-20s  # release the held mail and re-arm\n", strings.Join(names, " "))
	fmt.Fprintf(&b, "  facteur breaker reset --delete %-11s  # delete the held mail and re-arm\n", strings.Join(names, " "))
	return b.String()
}
