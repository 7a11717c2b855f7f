package policy

import "slices"

// Overlay: a policy file changes only the keys it sets over the built-in policy.

// overlay sets in dst every key src sets.
func overlay(dst, src *fileDoc) {
	if src.Defaults != nil {
		if dst.Defaults == nil {
			dst.Defaults = &fileKnobs{}
		}
		overlayKnobs(dst.Defaults, src.Defaults)
	}
	if s := src.Suppression; s != nil && s.MailboxFull != nil {
		if dst.Suppression == nil {
			dst.Suppression = &fileSuppression{}
		}
		if dst.Suppression.MailboxFull == nil {
			dst.Suppression.MailboxFull = &fileMailboxFull{}
		}
		d, m := dst.Suppression.MailboxFull, s.MailboxFull
		set(&d.Count, m.Count)
		set(&d.Span, m.Span)
		set(&d.Window, m.Window)
	}
	dst.Rules = overlayRules(dst.Rules, src.Rules)
	for name, p := range src.Providers {
		if dst.Providers == nil {
			dst.Providers = map[string]*fileProvider{}
		}
		d := dst.Providers[name]
		if d == nil {
			d = &fileProvider{}
			dst.Providers[name] = d
		}
		if p == nil {
			continue
		}
		set(&d.Domains, p.Domains)
		set(&d.MX, p.MX)
		set(&d.Group, p.Group)
		overlayKnobs(&d.fileKnobs, &p.fileKnobs)
		d.Rules = overlayRules(d.Rules, p.Rules)
	}
}

func set[T any](dst **T, src *T) {
	if src != nil {
		*dst = src
	}
}

// own gives *dst a struct of its own, a copy of the one it shares with the
// layer below (or a new one), so that setting its fields changes this layer
// alone. Every nested block of the knobs (backoff, throttle) overlays so.
func own[T any](dst **T) {
	if *dst == nil {
		*dst = new(T)
		return
	}
	c := **dst
	*dst = &c
}

func overlayKnobs(dst, src *fileKnobs) {
	set(&dst.Connections, src.Connections)
	set(&dst.MessagesPerConnection, src.MessagesPerConnection)
	set(&dst.RecipientsPerMessage, src.RecipientsPerMessage)
	set(&dst.Rate, src.Rate)
	set(&dst.Retry, src.Retry)
	set(&dst.MaxLifetime, src.MaxLifetime)
	if b := src.Backoff; b != nil {
		own(&dst.Backoff)
		set(&dst.Backoff.Initial, b.Initial)
		set(&dst.Backoff.Max, b.Max)
	}
	if t := src.Throttle; t != nil {
		own(&dst.Throttle)
		set(&dst.Throttle.Factor, t.Factor)
		set(&dst.Throttle.RecoverAfter, t.RecoverAfter)
		set(&dst.Throttle.Cooldown, t.Cooldown)
		set(&dst.Throttle.Min, t.Min)
		set(&dst.Throttle.FromUnlimited, t.FromUnlimited)
	}
}

// overlayRules replaces rules of the same name in place, removes disabled ones, and puts new
// rules first: an ops rule is more specific than the shipped ones.
func overlayRules(dst, src []fileRule) []fileRule {
	out := slices.Clone(dst)
	var fresh []fileRule
	for _, r := range src {
		i := slices.IndexFunc(out, func(o fileRule) bool { return o.Name == r.Name })
		switch {
		case i >= 0 && r.Disabled:
			out = slices.Delete(out, i, i+1)
		case i >= 0:
			out[i] = r
		case !r.Disabled:
			fresh = append(fresh, r)
		}
	}
	return append(fresh, out...)
}
