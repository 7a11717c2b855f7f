package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Source says where a suppression came from. Its string is the JSON contract.
type Source string

// Suppression sources.
const (
	SourceSMTP   Source = "smtp"   // a permanent reply during delivery
	SourceDSN    Source = "dsn"    // an asynchronous bounce
	SourceFBL    Source = "fbl"    // a feedback-loop complaint
	SourceManual Source = "manual" // an operator
)

func (s Source) valid() bool {
	switch s {
	case SourceSMTP, SourceDSN, SourceFBL, SourceManual:
		return true
	}
	return false
}

// Suppression is one entry of the suppression list: an address facteur will not send
// to. Address is stored lower-cased (see addrNorm).
type Suppression struct {
	Address   string    `json:"address"`
	Reason    string    `json:"reason"`   // policy class, e.g. user_unknown
	Response  string    `json:"response"` // the reply or report that caused it
	Source    Source    `json:"source"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Expires   time.Time `json:"expires,omitzero"` // zero: never
	Count     int       `json:"count"`
}

// Active reports whether s still suppresses at now.
func (s Suppression) Active(now time.Time) bool {
	return s.Expires.IsZero() || now.Before(s.Expires)
}

func (s *Suppression) normalize() error {
	s.Address = addrNorm(s.Address)
	if err := checkAddr("suppressed address", s.Address, false); err != nil {
		return err
	}
	if !s.Source.valid() {
		return fmt.Errorf("suppression %s: source %q is not smtp, dsn, fbl or manual: %w", s.Address, s.Source, ErrInvalid)
	}
	s.FirstSeen, s.LastSeen, s.Expires = norm(s.FirstSeen), norm(s.LastSeen), norm(s.Expires)
	return nil
}

func (w *wtx) getSupp(addr string) (Suppression, bool, error) {
	b := w.supp.Get([]byte(addr))
	if b == nil {
		return Suppression{}, false, nil
	}
	var s Suppression
	if err := json.Unmarshal(b, &s); err != nil {
		return Suppression{}, false, fmt.Errorf("suppression %s: corrupt: %w", addr, err)
	}
	return s, true, nil
}

func (w *wtx) putSupp(s Suppression) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("suppression %s: encode: %w", s.Address, err)
	}
	if err := w.supp.Put([]byte(s.Address), b); err != nil {
		return fmt.Errorf("suppression %s: %w", s.Address, err)
	}
	return nil
}

// Suppress adds s to the list, or merges it into the entry for the same address: that
// keeps its FirstSeen, takes LastSeen, Reason, Response, Source and Expires from s, and
// counts one more. s.LastSeen is required (time is the caller's); FirstSeen defaults to
// it. It returns the stored entry.
func (s *Store) Suppress(ctx context.Context, sup Suppression) (Suppression, error) {
	if err := sup.normalize(); err != nil {
		return Suppression{}, fmt.Errorf("suppress: %w", err)
	}
	if sup.LastSeen.IsZero() {
		return Suppression{}, fmt.Errorf("suppress %s: LastSeen is zero: %w", sup.Address, ErrInvalid)
	}
	var out Suppression
	err := s.write(ctx, func(w *wtx) error {
		old, ok, err := w.getSupp(sup.Address)
		if err != nil {
			return reject(err)
		}
		out = sup
		if ok {
			out.FirstSeen = old.FirstSeen
			out.Count = old.Count + 1
		} else {
			out.Count = 1
			if out.FirstSeen.IsZero() || out.FirstSeen.After(out.LastSeen) {
				out.FirstSeen = out.LastSeen
			}
		}
		return w.putSupp(out)
	})
	if err != nil {
		return Suppression{}, fmt.Errorf("suppress: %w", err)
	}
	return out, nil
}

// PutSuppression stores s as given (address lower-cased), replacing any entry: for
// importing a list.
func (s *Store) PutSuppression(ctx context.Context, sup Suppression) error {
	if err := sup.normalize(); err != nil {
		return fmt.Errorf("put suppression: %w", err)
	}
	if sup.Count < 0 {
		return fmt.Errorf("put suppression %s: negative count: %w", sup.Address, ErrInvalid)
	}
	err := s.write(ctx, func(w *wtx) error { return w.putSupp(sup) })
	if err != nil {
		return fmt.Errorf("put suppression: %w", err)
	}
	return nil
}

// Suppressed looks addr up. An entry that expired at or before now counts as absent.
func (s *Store) Suppressed(ctx context.Context, addr string, now time.Time) (Suppression, bool, error) {
	var out Suppression
	var ok bool
	err := s.viewSome(ctx, func(w *wtx) error {
		var err error
		out, ok, err = w.getSupp(addrNorm(addr))
		return err
	}, bucketSupp)
	if err != nil {
		return Suppression{}, false, fmt.Errorf("suppressed: %w", err)
	}
	if !ok || !out.Active(now) {
		return Suppression{}, false, nil
	}
	return out, true, nil
}

// Unsuppress removes addr from the list and reports whether it was there.
func (s *Store) Unsuppress(ctx context.Context, addr string) (bool, error) {
	key := []byte(addrNorm(addr))
	var found bool
	err := s.write(ctx, func(w *wtx) error {
		found = w.supp.Get(key) != nil
		if !found {
			return nil
		}
		return w.supp.Delete(key)
	})
	if err != nil {
		return false, fmt.Errorf("unsuppress %s: %w", addr, err)
	}
	return found, nil
}

// Suppressions returns the whole list, expired entries included, ordered by address.
func (s *Store) Suppressions(ctx context.Context) ([]Suppression, error) {
	var out []Suppression
	err := s.view(ctx, func(w *wtx) error {
		return w.supp.ForEach(func(k, v []byte) error {
			var sup Suppression
			if err := json.Unmarshal(v, &sup); err != nil {
				return fmt.Errorf("suppression %s: corrupt: %w", k, err)
			}
			out = append(out, sup)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("suppressions: %w", err)
	}
	return out, nil
}

// CancelSuppressed moves every non-final recipient equal to addr (compared as addrNorm)
// in any stored message to status suppressed and returns them, for DSNs and the log.
// addr must be on the list and active at now (else ErrNotFound, nothing changes): the
// recipients take the entry's Reason as Class and its Response as LastResponse, so
// `queue show` says why. Messages left with only final recipients are deleted. It
// reads the address index, not the queue.
func (s *Store) CancelSuppressed(ctx context.Context, addr string, now time.Time) ([]Cancelled, error) {
	key := addrNorm(addr)
	if err := checkAddr("address", key, false); err != nil {
		return nil, fmt.Errorf("cancel suppressed: %w", err)
	}
	prefix := addrPrefix(key)
	var out []Cancelled
	err := s.write(ctx, func(w *wtx) error {
		out = nil
		sup, ok, err := w.getSupp(key)
		if err != nil {
			return reject(err)
		}
		if !ok || !sup.Active(now) {
			return reject(fmt.Errorf("no active suppression: %w", ErrNotFound))
		}
		var ids []ID
		c := w.addrs.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			ids = append(ids, ID(k[len(prefix):]))
		}
		for _, id := range ids {
			r, err := w.load(id)
			if err != nil {
				return fmt.Errorf("address index names %s: %w", id, err)
			}
			changed := false
			for i, slot := range r.Rcpts {
				if addrNorm(slot.Address) != key || slot.Status.Final() {
					continue
				}
				if err := w.setRcpt(id, r, i, Suppressed, time.Time{}); err != nil {
					return err
				}
				r.Rcpts[i].Class, r.Rcpts[i].LastResponse = sup.Reason, sup.Response
				out = append(out, Cancelled{ID: id, Sender: r.Sender, Rcpt: slot.Address, IsDSN: r.IsDSN, User: r.User, AuthUser: r.AuthUser})
				changed = true
			}
			if changed {
				if err := w.saveOrRemove(id, r); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cancel suppressed %s: %w", addr, err)
	}
	return out, nil
}
