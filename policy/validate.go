package policy

import (
	"fmt"
	"maps"
	"slices"
)

// Validation: what one policy document can say on its own, every problem with its position.

// validate checks what one document can say on its own: values, patterns, names.
func (s *source) validate() Errors {
	var errs Errors
	add := func(e *Error) { errs = append(errs, e) }
	if s.doc.Defaults != nil {
		s.validateKnobs("defaults", s.doc.Defaults, add)
	}
	if mf := s.doc.Suppression; mf != nil && mf.MailboxFull != nil {
		if c := mf.MailboxFull.Count; c != nil && *c < 0 {
			add(s.Errorf("suppression.mailbox_full.count", "must be 0 (never) or more, not %d", *c))
		}
		if w := mf.MailboxFull.Window; w != nil && *w <= 0 {
			add(s.Errorf("suppression.mailbox_full.window", "must be positive"))
		}
	}
	s.validateRules("rules", s.doc.Rules, add)
	for _, name := range slices.Sorted(maps.Keys(s.doc.Providers)) {
		pp := "providers." + name
		p := s.doc.Providers[name]
		if !nameRE.MatchString(name) {
			add(s.Errorf(pp, "bad provider name %q: use lower-case letters, digits, - and _", name))
		}
		if p == nil {
			continue
		}
		if p.Group != nil && !nameRE.MatchString(*p.Group) {
			add(s.Errorf(pp+".group", "bad group name %q: use lower-case letters, digits, - and _", *p.Group))
		}
		if name == DefaultProvider && ((p.Domains != nil && len(*p.Domains) > 0) || (p.MX != nil && len(*p.MX) > 0)) {
			add(s.Errorf(pp, "the default provider takes every domain no other provider recognises: it has no domains or mx"))
		}
		if p.Domains != nil {
			for i, d := range *p.Domains {
				if _, err := parseDomainPattern(d, false); err != nil {
					add(s.Errorf(fmt.Sprintf("%s.domains[%d]", pp, i), "%v", err))
				}
			}
		}
		if p.MX != nil {
			for i, d := range *p.MX {
				if _, err := parseDomainPattern(d, true); err != nil {
					add(s.Errorf(fmt.Sprintf("%s.mx[%d]", pp, i), "%v", err))
				}
			}
		}
		s.validateKnobs(pp, &p.fileKnobs, add)
		s.validateRules(pp+".rules", p.Rules, add)
	}
	return errs
}

func (s *source) validateKnobs(path string, k *fileKnobs, add func(*Error)) {
	if k.Connections != nil && *k.Connections < 1 {
		add(s.Errorf(path+".connections", "must be at least 1, not %d", *k.Connections))
	}
	if k.MessagesPerConnection != nil && *k.MessagesPerConnection < 0 {
		add(s.Errorf(path+".messages_per_connection", "must be 0 (no limit) or more, not %d", *k.MessagesPerConnection))
	}
	if k.RecipientsPerMessage != nil && *k.RecipientsPerMessage < 1 {
		add(s.Errorf(path+".recipients_per_message", "must be at least 1, not %d", *k.RecipientsPerMessage))
	}
	if k.Retry != nil {
		for i, d := range k.Retry.Intervals {
			if d <= 0 {
				add(s.Errorf(fmt.Sprintf("%s.retry[%d]", path, i), "a retry interval must be positive"))
			}
		}
	}
	if k.MaxLifetime != nil && *k.MaxLifetime <= 0 {
		add(s.Errorf(path+".max_lifetime", "must be positive"))
	}
	if b := k.Backoff; b != nil {
		if b.Initial != nil && *b.Initial <= 0 {
			add(s.Errorf(path+".backoff.initial", "must be positive"))
		}
		if b.Max != nil && *b.Max <= 0 {
			add(s.Errorf(path+".backoff.max", "must be positive"))
		}
	}
	if t := k.Throttle; t != nil {
		if t.Factor != nil && *t.Factor < 2 {
			add(s.Errorf(path+".throttle.factor", "must be at least 2, not %d", *t.Factor))
		}
		if t.RecoverAfter != nil && *t.RecoverAfter <= 0 {
			add(s.Errorf(path+".throttle.recover_after", "must be positive"))
		}
		if t.Cooldown != nil && *t.Cooldown < 0 {
			add(s.Errorf(path+".throttle.cooldown", "must not be negative"))
		}
		if t.Min != nil && Rate(*t.Min).Unlimited() {
			add(s.Errorf(path+".throttle.min", "must be a rate, not unlimited"))
		}
		if t.FromUnlimited != nil && Rate(*t.FromUnlimited).Unlimited() {
			add(s.Errorf(path+".throttle.from_unlimited", "must be a rate, not unlimited"))
		}
	}
}

func (s *source) validateRules(path string, rules []fileRule, add func(*Error)) {
	seen := map[string]bool{}
	for i, r := range rules {
		rp := fmt.Sprintf("%s[%d]", path, i)
		if r.Name == "" {
			add(s.Errorf(rp+".name", "every rule needs a name (it is logged and lets a file replace it)"))
		} else if seen[r.Name] {
			add(s.Errorf(rp+".name", "duplicate rule name %q", r.Name))
		}
		seen[r.Name] = true
		if r.Disabled {
			continue
		}
		if _, err := compileRule(r); err != nil {
			add(s.Errorf(rp+"."+err.key, "%v", err.err))
		}
	}
}
