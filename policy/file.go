package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
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
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Errors is every problem found in a policy (Parse reports all of them, not the first).
// errors.As(err, &*Error) finds the first one.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap exposes each *Error to errors.Is/As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// source is one decoded document with the position of each key, for error messages.
type source struct {
	name string
	doc  fileDoc
	// lines maps a key path ("providers.yahoo.rate") to the line of its key.
	lines map[string]int
	// at maps a node position to its path; keyAt to the path of the mapping holding a key.
	at    map[[2]int]string
	keyAt map[[2]int]string
}

// line returns the line of path, or of its closest parent present in the file.
func (s *source) line(path string) int {
	for {
		if l, ok := s.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

func (s *source) errorf(path, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	return &Error{File: s.name, Line: s.line(path), Key: path, Msg: msg}
}

var fieldNotFoundRE = regexp.MustCompile(`^field (.+) not found in type `)

// decode reads one policy document strictly. An empty document (or only comments) is an empty
// overlay.
func decode(name string, data []byte) (*source, error) {
	src := &source{name: name, lines: map[string]int{}, at: map[[2]int]string{}, keyAt: map[[2]int]string{}}
	if strings.TrimSpace(string(data)) == "" {
		return src, nil
	}
	var root yaml.Node
	if err := yaml.Load(data, &root); err != nil {
		var le *yaml.LoadError
		var les *yaml.LoadErrors
		switch {
		case errors.As(err, &les) && len(les.Errors) == 1 && strings.Contains(les.Errors[0].Message, "no documents"):
			return src, nil
		case errors.As(err, &le):
			return nil, Errors{{File: name, Line: le.Mark.Line, Msg: "syntax error: " + le.Message}}
		}
		return nil, Errors{{File: name, Msg: err.Error()}}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return src, nil
		}
		doc = doc.Content[0]
	}
	if doc.Kind == yaml.ScalarNode && doc.ShortTag() == "!!null" {
		return src, nil
	}
	src.index(doc, "")
	if err := doc.Load(&src.doc, yaml.WithKnownFields()); err != nil {
		var les *yaml.LoadErrors
		if !errors.As(err, &les) {
			return nil, Errors{{File: name, Msg: err.Error()}}
		}
		var out Errors
		for _, le := range les.Errors {
			pos := [2]int{le.Mark.Line, le.Mark.Column}
			e := &Error{File: name, Line: le.Mark.Line}
			if m := fieldNotFoundRE.FindStringSubmatch(le.Message); m != nil {
				parent := src.keyAt[pos]
				e.Key = join(parent, m[1])
				where := parent
				if where == "" {
					where = "the top level"
				}
				e.Msg = fmt.Sprintf("unknown key %q in %s", m[1], where)
			} else {
				e.Key = src.at[pos]
				e.Msg = le.Message
				if e.Key != "" {
					e.Msg = e.Key + ": " + le.Message
				}
			}
			out = append(out, e)
		}
		return nil, out
	}
	return src, nil
}

// index records the path of every node under n.
func (s *source) index(n *yaml.Node, path string) {
	s.at[[2]int{n.Line, n.Column}] = path
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			s.keyAt[[2]int{k.Line, k.Column}] = path
			s.lines[p] = k.Line
			s.index(v, p)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			s.lines[p] = v.Line
			s.index(v, p)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
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
		fr := fileRule{Name: r.Name, Code: r.Code, Enhanced: r.Enhanced, Class: string(r.Class), Action: string(r.Action)}
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
