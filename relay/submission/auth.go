package submission

import (
	"crypto/rand"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"facteur/relay/maillog"
)

// SMTP AUTH against brute force (issue 11 §6): each failure is logged in a
// line fail2ban can match (`auth failed client=IP user=NAME mech=PLAIN`);
// after max_auth_failures in a session, or AuthFailuresPerIP in an hour
// from one address, the client gets 421 4.7.0 and is disconnected (Postfix
// logs "SASL PLAIN authentication failed" and counts
// smtpd_client_auth_rate_limit).

var errAuthLimit = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
	Message: "Too many authentication failures, closing connection"}

// authFailures counts failures per client over a sliding hour: per
// address, or, on loopback, per local user (every site of a web server
// connects from 127.0.0.1: one guessing passwords must not lock the others
// out for an hour).
type authFailures struct {
	mu   sync.Mutex // guards byIP
	byIP map[string][]time.Time
}

// add records a failure and returns the count within the last hour.
func (a *authFailures) add(ip string, now time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byIP == nil {
		a.byIP = map[string][]time.Time{}
	}
	if len(a.byIP) > 100000 {
		// Under a wide attack, forget the oldest state rather than grow.
		for k, v := range a.byIP {
			if len(v) == 0 || now.Sub(v[len(v)-1]) > time.Hour {
				delete(a.byIP, k)
			}
		}
	}
	ts := recent(a.byIP[ip], now)
	ts = append(ts, now)
	a.byIP[ip] = ts
	return len(ts)
}

func (a *authFailures) count(ip string, now time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	ts := recent(a.byIP[ip], now)
	if len(ts) == 0 {
		delete(a.byIP, ip)
	} else {
		a.byIP[ip] = ts
	}
	return len(ts)
}

func recent(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= time.Hour {
		i++
	}
	return ts[i:]
}

// authKey is what the hourly failures are counted under: the local user
// for a loopback client the kernel names, else the address.
func (ss *session) authKey() string {
	if ss.clientIP.IsLoopback() {
		if p := ss.localPeer(); p.Known {
			return "uid:" + strconv.Itoa(p.UID)
		}
	}
	return ss.clientIP.String()
}

// authBlocked refuses AUTH from an address over its hourly failures.
func (ss *session) authBlocked() error {
	if ss.s.auth.count(ss.authKey(), ss.s.opts.Clock.Now()) >= ss.s.opts.AuthFailuresPerIP {
		return ss.authCut("per-ip")
	}
	return nil
}

// authFailed logs a failure and answers 535, or 421 and disconnection once
// a limit is reached.
func (ss *session) authFailed(username string) error {
	ss.authFail++
	n := ss.s.auth.add(ss.authKey(), ss.s.opts.Clock.Now())
	ss.s.log.Info(maillog.AuthFailed, "client", ss.client(), "user", username, "mech", sasl.Plain)
	if ss.c != nil {
		ss.c.logged.Store(true) // that line is the log of the 535 (or 421)
	}
	switch {
	case ss.authFail >= ss.s.opts.MaxAuthFailures:
		return ss.authCut("session")
	case n >= ss.s.opts.AuthFailuresPerIP:
		return ss.authCut("per-ip")
	}
	return smtp.ErrAuthFailed
}

func (ss *session) authCut(scope string) error {
	ss.s.log.Warn(maillog.AuthBlocked, "client", ss.client(), "limit", scope, "resp", formatReply(errAuthLimit))
	if ss.c != nil {
		ss.c.logged.Store(true)
		ss.c.closeNow.Store(true)
	}
	return errAuthLimit
}

// dummyHashFor returns a hash of a random password at the cost of users'
// hashes, so that an unknown user costs what a wrong password costs.
func dummyHashFor(users map[string][]byte) []byte {
	cost := 0
	for _, h := range users {
		if c, err := bcrypt.Cost(h); err == nil && c > cost {
			cost = c
		}
	}
	if cost == 0 {
		return dummyHash
	}
	pw := make([]byte, 16)
	rand.Read(pw)
	h, err := bcrypt.GenerateFromPassword(pw, cost)
	if err != nil {
		return dummyHash
	}
	return h
}
