package policy

import (
	"fmt"
	"strings"
	"time"
)

// DefaultProvider is the provider of every domain no other provider recognises. Its limits and
// suspensions apply per destination domain (issue 5 §2).
const DefaultProvider = "default"

// Policy is a resolved, validated policy: every provider's knobs have the defaults merged in.
// A Policy is immutable once returned; share it freely and replace it with Engine.Swap.
type Policy struct {
	// Name says where the policy came from (BuiltinName, or the file overlaid on it).
	Name        string
	Defaults    Knobs
	Suppression Suppression
	// Rules are the top-level rules, tried after the provider's own.
	Rules []Rule
	// Providers is sorted by name and includes DefaultProvider.
	Providers []*Provider

	byName map[string]*Provider
	exact  map[string]*Provider
	wild   []domainPattern
	mx     []domainPattern
}

// Provider is one mailbox provider (or DefaultProvider).
type Provider struct {
	Name string
	// Group names a reputation group shared with other providers (orange, sfr and laposte
	// share Vade's filter): a suspension or throttle of one applies to all.
	Group   string
	Domains []string
	MX      []string
	Knobs   Knobs
	Rules   []Rule
}

// Knobs are the shaping settings of a provider (issue 5 §3).
type Knobs struct {
	// Connections is the maximum of simultaneous connections per source IP.
	Connections int
	// MessagesPerConnection: QUIT and reconnect after this many (0: no limit).
	MessagesPerConnection int
	// RecipientsPerMessage: split a message's recipients into transactions of this size.
	RecipientsPerMessage int
	// Rate is messages per period per source IP; zero is unlimited.
	Rate Rate
	// Retry is the schedule of a deferred recipient.
	Retry Schedule
	// MaxLifetime: a recipient still undelivered this long after queueing expires.
	MaxLifetime time.Duration
	Backoff     BackoffKnobs
	Throttle    ThrottleKnobs
}

// Schedule is a retry schedule: Intervals (the last repeats) or Every for For.
type Schedule struct {
	Intervals []time.Duration
	Every     time.Duration
	// For bounds the lifetime under this schedule (0: MaxLifetime alone).
	For time.Duration
}

// String writes the schedule as in the policy file.
func (s Schedule) String() string {
	if len(s.Intervals) > 0 {
		parts := make([]string, len(s.Intervals))
		for i, d := range s.Intervals {
			parts[i] = FormatDuration(d)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprintf("{every: %s, for: %s}", FormatDuration(s.Every), FormatDuration(s.For))
}

// BackoffKnobs drive the Backoff action: the first window is Initial, each further failure
// doubles it, up to Max.
type BackoffKnobs struct {
	Initial time.Duration
	Max     time.Duration
}

// ThrottleKnobs drive the Throttle action.
type ThrottleKnobs struct {
	// Factor divides the rate at each throttle step.
	Factor int
	// RecoverAfter: after this long without a new throttle reply, a delivery steps the rate
	// back up by one level.
	RecoverAfter time.Duration
	// Cooldown: throttle replies within this time of the last step do not divide again
	// (parallel connections report the same event).
	Cooldown time.Duration
	// Min is the floor of a throttled rate.
	Min Rate
	// FromUnlimited is the rate a provider with no rate limit is throttled from.
	FromUnlimited Rate
}

// Suppression holds the policy side of issue 7 §3.
type Suppression struct {
	MailboxFull MailboxFullKnobs
}

// MailboxFullKnobs: suppress a full mailbox after Count bounces spread over at least Span,
// counting bounces of the last Window.
type MailboxFullKnobs struct {
	Count  int
	Span   time.Duration
	Window time.Duration
}

// Provider returns the provider named name, or DefaultProvider's for an unknown name.
func (p *Policy) Provider(name string) *Provider {
	if pr := p.byName[name]; pr != nil {
		return pr
	}
	return p.byName[DefaultProvider]
}

// Lookup returns the provider named name, and whether there is one.
func (p *Policy) Lookup(name string) (*Provider, bool) {
	pr, ok := p.byName[name]
	return pr, ok
}

// Group returns the names of the providers in group g, sorted (nil for an unknown group).
func (p *Policy) Group(g string) []string {
	var out []string
	for _, pr := range p.Providers {
		if g != "" && pr.Group == g {
			out = append(out, pr.Name)
		}
	}
	return out
}
