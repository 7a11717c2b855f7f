package queue

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// ID names one queued message: 12 characters of [0-9A-Z], fixed width. The first 9 are
// the arrival time in Unix milliseconds in base 36, the last 3 a per-millisecond sequence,
// so IDs sort by arrival as strings and as bbolt keys, and a grep for one matches nothing
// else.
type ID string

const (
	idLen       = 12
	idTimeLen   = 9
	idSeqLen    = idLen - idTimeLen
	idDigits    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	idSeqSpace  = 36 * 36 * 36        // sequences per millisecond
	idMaxMillis = 101559956668416 - 1 // 36^9 - 1 ms after 1970: year 5188
	idSeqStart  = idSeqSpace / 2      // a millisecond starts its sequence below this

	// idMaxStepBack is how far back the clock may step while IDs stay increasing.
	idMaxStepBack = time.Second
)

// idGen makes IDs unique within the process. It is package state, not Store state,
// because NewID is a function: two stores in one process (tests, a migration) must still
// never hand out the same ID. mu guards ms and seq.
var idGen struct {
	mu  sync.Mutex
	ms  int64 // millisecond of the last ID
	seq int64 // sequence of the last ID within ms
}

// NewID returns a fresh ID for a message arriving at now. IDs from one process are
// strictly increasing while now repeats or steps back by less than idMaxStepBack: the
// generator then stays on the last millisecond and counts up, borrowing the next
// millisecond when 46,656 IDs were handed out in one. A larger step back (an operator
// fixing a clock that ran ahead) is followed, so IDs go back to telling the arrival
// time; order is lost across that step only. Each new millisecond starts its sequence
// at a random point so that IDs from two processes, or from both sides of a step back,
// are unlikely to collide; Enqueue still checks and draws again if one is stored.
func NewID(now time.Time) ID {
	ms := now.UnixMilli()
	ms = max(ms, 0)
	ms = min(ms, idMaxMillis)

	idGen.mu.Lock()
	var seq int64
	switch {
	case ms > idGen.ms, ms < idGen.ms-idMaxStepBack.Milliseconds():
		seq = rand.Int64N(idSeqStart)
	case idGen.seq+1 < idSeqSpace:
		ms, seq = idGen.ms, idGen.seq+1
	default:
		ms, seq = idGen.ms+1, rand.Int64N(idSeqStart)
	}
	idGen.ms, idGen.seq = ms, seq
	idGen.mu.Unlock()

	var b [idLen]byte
	for i := idTimeLen - 1; i >= 0; i-- {
		b[i] = idDigits[ms%36]
		ms /= 36
	}
	for i := idLen - 1; i >= idTimeLen; i-- {
		b[i] = idDigits[seq%36]
		seq /= 36
	}
	return ID(b[:])
}

// ParseID checks that s is a well-formed ID. Lower-case letters are accepted and
// upper-cased, so an operator may type an ID in either case.
func ParseID(s string) (ID, error) {
	if len(s) != idLen {
		return "", fmt.Errorf("queue id %q: want %d characters, got %d", s, idLen, len(s))
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'Z':
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		default:
			return "", fmt.Errorf("queue id %q: character %q at %d is not in [0-9A-Z]", s, c, i)
		}
	}
	return ID(b), nil
}

// Time returns the arrival millisecond encoded in id, or the zero time if id is malformed.
func (id ID) Time() time.Time {
	p, err := ParseID(string(id))
	if err != nil {
		return time.Time{}
	}
	var ms int64
	for i := range idTimeLen {
		c := p[i]
		d := int64(c - '0')
		if c >= 'A' {
			d = int64(c-'A') + 10
		}
		ms = ms*36 + d
	}
	return time.UnixMilli(ms).UTC()
}
