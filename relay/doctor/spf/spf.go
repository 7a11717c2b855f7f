package spf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"facteur/relay/resolver"
)

// Result is the outcome of check_host() (RFC 7208 §2.6). Its strings are
// the RFC's and the JSON contract.
type Result string

// The results of RFC 7208 §2.6.
const (
	Pass      Result = "pass"
	Fail      Result = "fail"
	SoftFail  Result = "softfail"
	Neutral   Result = "neutral"
	None      Result = "none"
	PermError Result = "permerror"
	TempError Result = "temperror"
)

// Processing limits of RFC 7208 §4.6.4.
const (
	// MaxLookups is the number of DNS-querying terms (include, a, mx,
	// ptr, exists, redirect) one evaluation may use, nested ones included.
	MaxLookups = 10
	// MaxVoidLookups is the number of lookups answering NXDOMAIN or no
	// record that one evaluation tolerates.
	MaxVoidLookups = 2
	// maxNames caps the MX exchangers of one mx term (more is a
	// permerror) and the PTR names one ptr term checks (more are ignored).
	maxNames = 10
)

// Query is the input of check_host(): who connects, for which domain.
type Query struct {
	IP     netip.Addr // the client: the relay's outbound address
	Domain string     // the domain whose policy is evaluated (MAIL FROM's)
	// Sender is the MAIL FROM address; empty means postmaster@Domain, as
	// for a null reverse-path (RFC 7208 §2.4).
	Sender string
	Helo   string // the EHLO name, for the %{h} macro
}

// Outcome is check_host()'s result with what the doctor reports about it.
type Outcome struct {
	Result Result
	// Record is the SPF record of Domain ("" when there is none).
	Record string
	// Match is the term that decided, through includes and redirects:
	// "include:_spf.example.net → ip4:192.0.2.0/24". Empty when no term
	// matched (neutral by default) or on an error.
	Match string
	// Reason says why the result is permerror, temperror or none.
	Reason string
	// Lookups and VoidLookups count what the evaluation used, against
	// MaxLookups and MaxVoidLookups.
	Lookups     int
	VoidLookups int
}

// CheckHost evaluates the SPF policy of q.Domain for q.IP as a receiver would
// (RFC 7208 §4): includes and redirects recursively, every mechanism,
// qualifiers, macros, and the lookup limits. DNS errors never escape: they
// become temperror, as the RFC prescribes.
func CheckHost(ctx context.Context, dns DNS, q Query) Outcome {
	e := &eval{ctx: ctx, dns: dns, ip: q.IP.Unmap(), helo: q.Helo}
	e.sender = q.Sender
	if e.sender == "" {
		e.sender = "postmaster@" + q.Domain
	}
	local, dom, ok := strings.Cut(e.sender, "@")
	if !ok {
		// RFC 7208 §4.3: a sender without a local-part is treated as
		// postmaster@sender.
		local, dom = "postmaster", e.sender
	}
	e.local, e.senderDomain = local, dom

	out := Outcome{}
	v, err := e.checkHost(strings.TrimSuffix(q.Domain, "."), &out.Record)
	out.Lookups, out.VoidLookups = e.lookups, e.voids
	var se *evalError
	switch {
	case errors.As(err, &se):
		out.Result, out.Reason = se.result, se.msg
	case err != nil:
		out.Result, out.Reason = TempError, err.Error()
	default:
		out.Result, out.Match, out.Reason = v.result, v.match, v.reason
	}
	return out
}

// evalError ends an evaluation with permerror or temperror.
type evalError struct {
	result Result
	msg    string
}

func (e *evalError) Error() string { return string(e.result) + ": " + e.msg }

func permErr(format string, args ...any) error {
	return &evalError{PermError, fmt.Sprintf(format, args...)}
}

func tempErr(format string, args ...any) error {
	return &evalError{TempError, fmt.Sprintf(format, args...)}
}

// verdict is the result of one check_host() call that did not end in an
// error.
type verdict struct {
	result Result
	match  string // the deciding term, with the path through includes
	reason string // for none: why
}

type eval struct {
	ctx                context.Context
	dns                DNS
	ip                 netip.Addr
	sender, local      string
	senderDomain, helo string
	lookups, voids     int
	stack              []string // domains being evaluated, outermost first
	ptrNames           []string // the client's validated PTR names, for %{p}
	ptrDone            bool     // ptrNames was computed
}

// checkHost is RFC 7208 §4 for one domain. record, when not nil, receives
// the record found.
func (e *eval) checkHost(domain string, record *string) (verdict, error) {
	domain = strings.ToLower(domain)
	// §4.3: a malformed domain has no policy.
	if !validDomain(domain) {
		return verdict{result: None, reason: fmt.Sprintf("%q is not a fully qualified domain name", domain)}, nil
	}
	if slices.Contains(e.stack, domain) {
		// The lookup limit would stop a loop too; naming it is clearer.
		return verdict{}, permErr("loop: %s → %s", strings.Join(e.stack, " → "), domain)
	}
	e.stack = append(e.stack, domain)
	defer func() { e.stack = e.stack[:len(e.stack)-1] }()

	txts, err := e.dns.LookupTXT(e.ctx, domain)
	switch {
	case errors.Is(err, resolver.ErrNXDomain):
		return verdict{result: None, reason: domain + " does not exist"}, nil
	case errors.Is(err, resolver.ErrInvalidName):
		// §4.3 again: a name DNS cannot carry (a domain literal such as
		// "[192.0.2.1]") is malformed.
		return verdict{result: None, reason: fmt.Sprintf("%q is not a domain name DNS can look up", domain)}, nil
	case err != nil:
		return verdict{}, e.dnsErr(err)
	}
	var recs []string
	for _, t := range txts {
		if IsRecord(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return verdict{result: None, reason: "no SPF record at " + domain}, nil
	case 1:
	default:
		return verdict{}, permErr("%s publishes %d SPF records; exactly one is allowed (RFC 7208 §4.5)", domain, len(recs))
	}
	if record != nil {
		*record = recs[0]
	}
	rec, err := parse(recs[0])
	if err != nil {
		return verdict{}, permErr("%s: %v", domain, err)
	}

	for _, m := range rec.mechanisms {
		match, sub, err := e.mechanism(domain, m)
		if err != nil {
			return verdict{}, err
		}
		if match {
			term := m.String()
			if sub != "" {
				term += " → " + sub
			}
			return verdict{result: m.qualifier, match: term}, nil
		}
	}
	// §6.1: redirect applies only when nothing matched (an "all" always
	// matches, so a record with one never gets here).
	if rec.redirect != "" {
		if err := e.count(); err != nil {
			return verdict{}, err
		}
		target, err := e.expandDomain(rec.redirect, domain)
		if err != nil {
			return verdict{}, err
		}
		v, err := e.checkHost(target, nil)
		if err != nil {
			return verdict{}, err
		}
		if v.result == None {
			return verdict{}, permErr("redirect=%s: %s", target, v.reason)
		}
		v.match = "redirect=" + target + arrow(v.match)
		return v, nil
	}
	return verdict{result: Neutral}, nil
}

func arrow(s string) string {
	if s == "" {
		return ""
	}
	return " → " + s
}

// dnsErr turns a lookup error into temperror (anything but the permanent
// resolver sentinels, which callers handle before).
func (e *eval) dnsErr(err error) error {
	return tempErr("%v", err)
}

// count charges one DNS-querying term (§4.6.4).
func (e *eval) count() error {
	e.lookups++
	if e.lookups > MaxLookups {
		return permErr("more than %d DNS lookups (include, a, mx, ptr, exists, redirect), the limit of RFC 7208 §4.6.4", MaxLookups)
	}
	return nil
}

// void charges a lookup that found nothing (§4.6.4).
func (e *eval) void() error {
	e.voids++
	if e.voids > MaxVoidLookups {
		return permErr("more than %d lookups found no record (void lookups, RFC 7208 §4.6.4)", MaxVoidLookups)
	}
	return nil
}

// isVoid says whether a lookup found no record (NXDOMAIN, a name DNS
// cannot hold, or an empty answer): what §4.6.4 counts as a void lookup.
// The a and mx mechanisms and the address lookups all judge it here.
func isVoid(err error, n int) bool {
	return errors.Is(err, resolver.ErrNXDomain) || errors.Is(err, resolver.ErrInvalidName) || err == nil && n == 0
}

// mechanism evaluates one directive; sub is the path below an include.
func (e *eval) mechanism(domain string, m directive) (match bool, sub string, err error) {
	switch m.kind {
	case "all":
		return true, "", nil
	case "ip4", "ip6":
		return m.prefix.Contains(e.ip), "", nil
	case "include":
		if err := e.count(); err != nil {
			return false, "", err
		}
		target, err := e.expandDomain(m.domain, domain)
		if err != nil {
			return false, "", err
		}
		v, err := e.checkHost(target, nil)
		if err != nil {
			return false, "", err
		}
		// §5.2: only pass matches; none is an error in the including
		// domain's record.
		switch v.result {
		case Pass:
			return true, v.match, nil
		case None:
			return false, "", permErr("include:%s: %s", target, v.reason)
		}
		return false, "", nil
	case "a":
		if err := e.count(); err != nil {
			return false, "", err
		}
		target, err := e.targetOrSelf(m, domain)
		if err != nil {
			return false, "", err
		}
		addrs, err := e.addrs(target, true)
		if err != nil {
			return false, "", err
		}
		return m.cidrMatch(e.ip, addrs), "", nil
	case "mx":
		if err := e.count(); err != nil {
			return false, "", err
		}
		target, err := e.targetOrSelf(m, domain)
		if err != nil {
			return false, "", err
		}
		names, err := e.dns.LookupMX(e.ctx, target)
		switch {
		case isVoid(err, len(names)):
			return false, "", e.void()
		case err != nil:
			return false, "", e.dnsErr(err)
		}
		if len(names) > maxNames {
			return false, "", permErr("mx:%s has %d exchangers; at most %d may be evaluated (RFC 7208 §4.6.4)", target, len(names), maxNames)
		}
		for _, n := range names {
			addrs, err := e.addrs(n, false)
			if err != nil {
				return false, "", err
			}
			if m.cidrMatch(e.ip, addrs) {
				return true, "", nil
			}
		}
		return false, "", nil
	case "ptr":
		if err := e.count(); err != nil {
			return false, "", err
		}
		target, err := e.targetOrSelf(m, domain)
		if err != nil {
			return false, "", err
		}
		for _, name := range e.validatedNames() {
			if name == target || strings.HasSuffix(name, "."+target) {
				return true, "", nil
			}
		}
		return false, "", nil
	case "exists":
		if err := e.count(); err != nil {
			return false, "", err
		}
		target, err := e.expandDomain(m.domain, domain)
		if err != nil {
			return false, "", err
		}
		// §5.7: always an A query, whatever the client's family.
		addrs, err := e.dns.LookupA(e.ctx, target)
		switch {
		case isVoid(err, len(addrs)):
			return false, "", e.void()
		case err != nil:
			return false, "", e.dnsErr(err)
		}
		return true, "", nil
	}
	return false, "", permErr("unknown mechanism %q", m.kind)
}

func (e *eval) targetOrSelf(m directive, domain string) (string, error) {
	if m.domain == "" {
		return domain, nil
	}
	return e.expandDomain(m.domain, domain)
}

// addrs looks up the addresses of name in the client's family. With
// voidCounts the lookup is a mechanism's own (a), so an empty answer is a
// void lookup; an MX exchanger's addresses are not.
func (e *eval) addrs(name string, voidCounts bool) ([]netip.Addr, error) {
	var addrs []netip.Addr
	var err error
	if e.ip.Is4() {
		addrs, err = e.dns.LookupA(e.ctx, name)
	} else {
		addrs, err = e.dns.LookupAAAA(e.ctx, name)
	}
	switch {
	case isVoid(err, len(addrs)):
		if voidCounts {
			return nil, e.void()
		}
		return nil, nil
	case err != nil:
		return nil, e.dnsErr(err)
	}
	return addrs, nil
}

// validatedNames are the PTR names of the client that resolve back to it
// (§5.5). DNS errors only make the list shorter: "If a DNS error occurs
// while doing the PTR RR lookup, then this mechanism fails to match".
func (e *eval) validatedNames() []string {
	names, err := e.dns.LookupPTR(e.ctx, e.ip)
	if err != nil {
		return nil
	}
	if len(names) > maxNames {
		names = names[:maxNames]
	}
	var out []string
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		addrs, err := e.addrs(n, false)
		if err != nil {
			continue
		}
		if slices.Contains(addrs, e.ip) {
			out = append(out, n)
		}
	}
	return out
}

// cidrMatch reports whether ip is in one of addrs widened to the term's
// prefix length for ip's family.
func (m directive) cidrMatch(ip netip.Addr, addrs []netip.Addr) bool {
	bits := m.cidr6
	if ip.Is4() {
		bits = m.cidr4
	}
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() != ip.Is4() {
			continue
		}
		p, err := a.Prefix(bits)
		if err == nil && p.Contains(ip) {
			return true
		}
	}
	return false
}
