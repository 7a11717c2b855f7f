package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.yaml.in/yaml/v4"

	"facteur/strictyaml"
)

// The file schema. Every field is a pointer (or a nil-able slice/map) so that a key the file
// does not set differs from a key set to zero: that is what makes the overlay key by key
// (issue 5 §1). Only the leaf types Duration, rateValue and fileSchedule have custom
// unmarshalers, and none calls node.Decode, so KnownFields stays in force (go-yaml issue 460).

type fileDoc struct {
	// Standalone: this file is a complete policy (what `policy show` prints), not an overlay
	// on the built-in one. It makes show → check → show an exact round trip.
	Standalone  *bool                    `yaml:"standalone,omitempty" json:"standalone,omitempty"`
	Defaults    *fileKnobs               `yaml:"defaults,omitempty" json:"defaults,omitempty"`
	Suppression *fileSuppression         `yaml:"suppression,omitempty" json:"suppression,omitempty"`
	Rules       []fileRule               `yaml:"rules,omitempty" json:"rules,omitempty"`
	Providers   map[string]*fileProvider `yaml:"providers,omitempty" json:"providers,omitempty"`
}

type fileKnobs struct {
	Connections           *int          `yaml:"connections,omitempty" json:"connections,omitempty"`
	MessagesPerConnection *int          `yaml:"messages_per_connection,omitempty" json:"messages_per_connection,omitempty"`
	RecipientsPerMessage  *int          `yaml:"recipients_per_message,omitempty" json:"recipients_per_message,omitempty"`
	Rate                  *rateValue    `yaml:"rate,omitempty" json:"rate,omitempty"`
	Retry                 *fileSchedule `yaml:"retry,omitempty" json:"retry,omitempty"`
	MaxLifetime           *Duration     `yaml:"max_lifetime,omitempty" json:"max_lifetime,omitempty"`
	Backoff               *fileBackoff  `yaml:"backoff,omitempty" json:"backoff,omitempty"`
	Throttle              *fileThrottle `yaml:"throttle,omitempty" json:"throttle,omitempty"`
}

type fileBackoff struct {
	Initial *Duration `yaml:"initial,omitempty" json:"initial,omitempty"`
	Max     *Duration `yaml:"max,omitempty" json:"max,omitempty"`
}

type fileThrottle struct {
	Factor        *int       `yaml:"factor,omitempty" json:"factor,omitempty"`
	RecoverAfter  *Duration  `yaml:"recover_after,omitempty" json:"recover_after,omitempty"`
	Cooldown      *Duration  `yaml:"cooldown,omitempty" json:"cooldown,omitempty"`
	Min           *rateValue `yaml:"min,omitempty" json:"min,omitempty"`
	FromUnlimited *rateValue `yaml:"from_unlimited,omitempty" json:"from_unlimited,omitempty"`
}

type fileProvider struct {
	Domains   *[]string `yaml:"domains,omitempty" json:"domains,omitempty"`
	MX        *[]string `yaml:"mx,omitempty" json:"mx,omitempty"`
	Group     *string   `yaml:"group,omitempty" json:"group,omitempty"`
	fileKnobs `yaml:",inline"`
	Rules     []fileRule `yaml:"rules,omitempty" json:"rules,omitempty"`
}

type fileRule struct {
	Name     string    `yaml:"name" json:"name"`
	Code     string    `yaml:"code,omitempty" json:"code,omitempty"`
	Enhanced string    `yaml:"enhanced,omitempty" json:"enhanced,omitempty"`
	Match    string    `yaml:"match,omitempty" json:"match,omitempty"`
	Unless   string    `yaml:"unless,omitempty" json:"unless,omitempty"`
	Class    string    `yaml:"class,omitempty" json:"class,omitempty"`
	Action   string    `yaml:"action,omitempty" json:"action,omitempty"`
	Duration *Duration `yaml:"duration,omitempty" json:"duration,omitempty"`
	// Scope: ip (default) or provider (issue 17 §2).
	Scope string `yaml:"scope,omitempty" json:"scope,omitempty"`
	// Disabled removes the built-in rule of the same name (a file cannot delete otherwise).
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
}

type fileSuppression struct {
	MailboxFull *fileMailboxFull `yaml:"mailbox_full,omitempty" json:"mailbox_full,omitempty"`
}

type fileMailboxFull struct {
	Count  *int      `yaml:"count,omitempty" json:"count,omitempty"`
	Span   *Duration `yaml:"span,omitempty" json:"span,omitempty"`
	Window *Duration `yaml:"window,omitempty" json:"window,omitempty"`
}

// fileSchedule is `retry:`, either a list of intervals (the last one repeats) or
// `{every: 4h, for: 48h}`.
type fileSchedule Schedule

type everyFor struct {
	Every Duration `yaml:"every" json:"every"`
	For   Duration `yaml:"for" json:"for"`
}

// UnmarshalYAML reads the two forms by hand, without node.Decode (see above), and refuses
// unknown keys itself.
func (s *fileSchedule) UnmarshalYAML(node *yaml.Node) error {
	var out Schedule
	switch node.Kind {
	case yaml.SequenceNode:
		if len(node.Content) == 0 {
			return errors.New("bad retry: empty list")
		}
		for i, item := range node.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("bad retry: item %d is not a duration", i+1)
			}
			d, err := ParseDuration(item.Value)
			if err != nil {
				return fmt.Errorf("bad retry item %d: %w", i+1, err)
			}
			out.Intervals = append(out.Intervals, d)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("bad retry: %s is not a duration", k.Value)
			}
			d, err := ParseDuration(v.Value)
			if err != nil {
				return fmt.Errorf("bad retry %s: %w", k.Value, err)
			}
			switch k.Value {
			case "every":
				out.Every = d
			case "for":
				out.For = d
			default:
				return fmt.Errorf("unknown key %q in retry (want every, for)", k.Value)
			}
		}
		if out.Every <= 0 {
			return errors.New("bad retry: every must be set and positive")
		}
	default:
		return errors.New("bad retry: want a list of intervals or {every: 4h, for: 48h}")
	}
	*s = fileSchedule(out)
	return nil
}

func (s fileSchedule) export() any {
	if len(s.Intervals) > 0 {
		out := make([]string, len(s.Intervals))
		for i, d := range s.Intervals {
			out[i] = FormatDuration(d)
		}
		return out
	}
	return everyFor{Every: Duration(s.Every), For: Duration(s.For)}
}

func (s fileSchedule) MarshalYAML() (any, error) { return s.export(), nil }

func (s fileSchedule) MarshalJSON() ([]byte, error) { return json.Marshal(s.export()) }

// Error is one problem in a policy file, with its position: `FILE:LINE: unknown key "prot" in
// providers.yahoo`. Key is the dotted path of the setting (`providers.yahoo.rules[2].match`).
// It is the error type of every facteur YAML file (facteur/strictyaml).
type Error = strictyaml.Error

// Errors is every problem found in a policy (Parse reports all of them, not the first).
// errors.As(err, &*Error) finds the first one.
type Errors = strictyaml.Errors

// source is one decoded document with the position of each key, for error messages.
type source struct {
	*strictyaml.Doc
	doc fileDoc
}

// decode reads one policy document strictly. An empty document (or only comments) is an empty
// overlay.
func decode(name string, data []byte) (*source, error) {
	src := &source{}
	d, err := strictyaml.Decode(name, data, &src.doc, nil)
	if err != nil {
		return nil, err
	}
	src.Doc = d
	return src, nil
}

// exportDoc writes a resolved policy in the file schema, every provider with its effective
// knobs, marked standalone.
func exportDoc(p *Policy) fileDoc {
	t := true
	doc := fileDoc{Standalone: &t, Defaults: exportKnobs(p.Defaults), Providers: map[string]*fileProvider{}}
	mf := p.Suppression.MailboxFull
	span, window := Duration(mf.Span), Duration(mf.Window)
	doc.Suppression = &fileSuppression{MailboxFull: &fileMailboxFull{Count: &mf.Count, Span: &span, Window: &window}}
	doc.Rules = exportRules(p.Rules)
	for _, pr := range p.Providers {
		fp := &fileProvider{fileKnobs: *exportKnobs(pr.Knobs), Rules: exportRules(pr.Rules)}
		if pr.Name != DefaultProvider {
			d, m := pr.Domains, pr.MX
			fp.Domains, fp.MX = &d, &m
		}
		if pr.Group != "" {
			g := pr.Group
			fp.Group = &g
		}
		doc.Providers[pr.Name] = fp
	}
	return doc
}

func exportKnobs(k Knobs) *fileKnobs {
	c, mpc, rpm := k.Connections, k.MessagesPerConnection, k.RecipientsPerMessage
	r := rateValue(k.Rate)
	sched := fileSchedule(k.Retry)
	life := Duration(k.MaxLifetime)
	bi, bm := Duration(k.Backoff.Initial), Duration(k.Backoff.Max)
	f := k.Throttle.Factor
	ra, cd := Duration(k.Throttle.RecoverAfter), Duration(k.Throttle.Cooldown)
	mn, fu := rateValue(k.Throttle.Min), rateValue(k.Throttle.FromUnlimited)
	return &fileKnobs{
		Connections: &c, MessagesPerConnection: &mpc, RecipientsPerMessage: &rpm,
		Rate: &r, Retry: &sched, MaxLifetime: &life,
		Backoff:  &fileBackoff{Initial: &bi, Max: &bm},
		Throttle: &fileThrottle{Factor: &f, RecoverAfter: &ra, Cooldown: &cd, Min: &mn, FromUnlimited: &fu},
	}
}

func exportRules(rules []Rule) []fileRule {
	var out []fileRule
	for _, r := range rules {
		fr := fileRule{Name: r.Name, Code: r.Code, Enhanced: r.Enhanced, Class: string(r.Class), Action: string(r.Action), Scope: r.Scope}
		if r.Match != nil {
			fr.Match = r.Match.String()
		}
		if r.Unless != nil {
			fr.Unless = r.Unless.String()
		}
		if r.Duration > 0 {
			d := Duration(r.Duration)
			fr.Duration = &d
		}
		out = append(out, fr)
	}
	return out
}

// durationOr returns *d or def.
func durationOr(d *Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return time.Duration(*d)
}
