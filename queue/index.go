package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketSenders: lower-cased envelope sender, byte-reversed | 0x00 | ID -> "". One key
// per stored message (the null sender is the empty string: key 0x00 | ID), written by
// putNew and deleted by remove in the transaction that stores or removes the message.
// Reversed so that the operator's main question, a hacked site's mail
// (`--sender '*@hacked.example'`), is a prefix scan; an exact address is the prefix
// with its 0x00 (issue 19 §3: filtered listings read an index when one exists).
var bucketSenders = []byte("senders")

var (
	// metaSendersDone is set once every stored message has its key in bucketSenders: at
	// creation of a new database, or when BuildIndexes finished on one made before the
	// index. Listings use the index only then; it is never unset.
	metaSendersDone = []byte("index/senders/done")
	// metaSendersAt is the last ID BuildIndexes indexed, so that a stop half-way
	// resumes there.
	metaSendersAt = []byte("index/senders/at")
)

// senderKeyPrefix is the reversed, lower-cased sender: what every key of the
// sender's messages starts with. ToLower as globMatch does, so that the index and the
// walk select the same messages.
func senderKeyPrefix(sender string) []byte {
	l := strings.ToLower(sender)
	k := make([]byte, len(l), len(l)+1+idLen)
	for i := range len(l) {
		k[len(l)-1-i] = l[i]
	}
	return k
}

func senderKey(sender string, id ID) []byte {
	k := senderKeyPrefix(sender)
	k = append(k, 0)
	return append(k, id...)
}

// senderIndexPrefix returns the index prefix that selects exactly the messages
// whose sender matches pattern (Filter.Sender), or false when the index cannot
// serve it: only an exact address, "<>", or a single leading '*' followed by a
// literal suffix ("*@hacked.example") are prefixes of the reversed sender. A '*'
// elsewhere ("wp-*", "*@*.example") falls back to the walk, as does a bare "*"
// (every message: the walk is cheaper than the index and a lookup each).
func senderIndexPrefix(pattern string) ([]byte, bool) {
	switch {
	case pattern == "":
		return nil, false
	case pattern == "<>":
		return []byte{0}, true
	case strings.IndexByte(pattern, 0) >= 0:
		// No stored sender holds a NUL (checkAddr); the walk finds nothing either.
		return nil, false
	case !strings.Contains(pattern, "*"):
		return append(senderKeyPrefix(pattern), 0), true
	}
	suffix, ok := strings.CutPrefix(pattern, "*")
	if !ok || suffix == "" || strings.Contains(suffix, "*") {
		return nil, false
	}
	return senderKeyPrefix(suffix), true
}

// sendersComplete reports whether the sender index covers every stored message.
// meta is nil in a read-only view of a database no daemon has opened yet.
func sendersComplete(meta *bolt.Bucket) bool {
	return meta != nil && meta.Get(metaSendersDone) != nil
}

// indexBatch is how many messages one transaction of BuildIndexes indexes: a few
// milliseconds of work, so that the Enqueue calls sharing its commit barely wait. A
// variable so that tests build in several batches with few messages.
var indexBatch = 1000

// BuildIndexes fills the sender index of a database made before it (by a facteur
// without it), a batch of messages per write transaction, and marks it complete; on
// a database whose index is complete it returns at once. Until it is complete,
// listings walk the records, so the result never depends on it. It resumes where a
// previous run stopped. The daemon runs it in the background after start (issue 19
// §1: nothing that grows with the queue before the listeners); it returns how many
// messages it indexed (0: the index was complete), and ctx's error if stopped before
// the end.
func (s *Store) BuildIndexes(ctx context.Context) (int, error) {
	total := 0
	for {
		n, done, err := s.indexSome(ctx)
		total += n
		if err != nil {
			return total, fmt.Errorf("build sender index: %w", err)
		}
		if done {
			return total, nil
		}
	}
}

// indexSome indexes the next indexBatch messages, and reports how many and whether
// the index is now complete.
func (s *Store) indexSome(ctx context.Context) (int, bool, error) {
	done, indexed := false, 0
	err := s.write(ctx, func(w *wtx) error {
		done, indexed = false, 0 // the write may run again: start over
		if sendersComplete(w.meta) {
			done = true
			return nil
		}
		c := w.msgs.Cursor()
		k, v := c.First()
		if at := w.meta.Get(metaSendersAt); at != nil {
			k, v = c.Seek(at)
			if k != nil && bytes.Equal(k, at) {
				k, v = c.Next()
			}
		}
		var last []byte
		for n := 0; k != nil && n < indexBatch; k, v = c.Next() {
			n++
			var r struct {
				Sender string `json:"sender"`
			}
			js, err := recordJSON(ID(k), v)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(js, &r); err != nil {
				return fmt.Errorf("message %s: corrupt record: %w", k, err)
			}
			if err := w.senders.Put(senderKey(r.Sender, ID(k)), nil); err != nil {
				return fmt.Errorf("message %s: sender index: %w", k, err)
			}
			last = k
			indexed++
		}
		if k == nil {
			done = true
			if err := w.meta.Delete(metaSendersAt); err != nil {
				return err
			}
			return w.meta.Put(metaSendersDone, []byte{1})
		}
		return w.meta.Put(metaSendersAt, bytes.Clone(last))
	})
	if err != nil {
		return 0, false, err
	}
	return indexed, done, nil
}

// idAhead is how far an ID's time may be ahead of its message's Created: NewID stays
// on its last millisecond through a clock step back of up to idMaxStepBack, and may
// borrow one more millisecond when one ran out of sequences. An ID is never behind
// its Created's millisecond. Enqueue keeps every stored message inside this window,
// which is what lets OlderThan and YoungerThan bound a listing by ID.
const idAhead = idMaxStepBack + time.Millisecond

// floorMilli is t's Unix millisecond rounded down (UnixMilli rounds toward zero, which
// differs before 1970).
func floorMilli(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).After(t) {
		ms--
	}
	return ms
}

// idMilli is the millisecond an ID tells; -1 if it is malformed.
func idMilli(id ID) int64 {
	if len(id) != idLen {
		return -1
	}
	var ms int64
	for i := range idTimeLen {
		c := id[i]
		var d int64
		switch {
		case c >= '0' && c <= '9':
			d = int64(c - '0')
		case c >= 'A' && c <= 'Z':
			d = int64(c-'A') + 10
		default:
			return -1
		}
		ms = ms*36 + d
	}
	return ms
}

// idFits reports whether id may name a message created at created: its time is in
// [created's millisecond, that + idAhead].
func idFits(id ID, created time.Time) bool {
	ms, c := idMilli(id), floorMilli(created)
	return ms >= c && ms <= c+idAhead.Milliseconds()
}

// idKeyAt is the smallest (seq "000") or largest (seq "ZZZ") ID of millisecond ms.
func idKeyAt(ms int64, last bool) []byte {
	b := make([]byte, idLen)
	for i := idTimeLen - 1; i >= 0; i-- {
		b[i] = idDigits[ms%36]
		ms /= 36
	}
	seq := byte('0')
	if last {
		seq = 'Z'
	}
	for i := idTimeLen; i < idLen; i++ {
		b[i] = seq
	}
	return b
}

// idRange is the range of IDs a listing must read: from lo to hi, both included (nil:
// unbounded); empty means no ID can match.
type idRange struct {
	lo, hi []byte
	empty  bool
}

// idRangeOf bounds by ID the messages f's times can select. A message created at c
// has an ID of a millisecond in [floor(c), floor(c) + idAhead] (Enqueue enforces it), so
// created after T means an ID at or after floor(T)'s millisecond, and created before
// T an ID at or before floor(T) + idAhead. The bounds are loose by at most idAhead;
// the filter is applied to each record read, so the result is exact.
func idRangeOf(f Filter) idRange {
	var r idRange
	if !f.YoungerThan.IsZero() {
		switch ms := floorMilli(f.YoungerThan); {
		case ms > idMaxMillis:
			r.empty = true
		case ms > 0:
			r.lo = idKeyAt(ms, false)
		}
	}
	if !f.OlderThan.IsZero() {
		switch ms := floorMilli(f.OlderThan) + idAhead.Milliseconds(); {
		case ms < 0:
			r.empty = true
		case ms < idMaxMillis:
			r.hi = idKeyAt(ms, true)
		}
	}
	if r.lo != nil && r.hi != nil && bytes.Compare(r.lo, r.hi) > 0 {
		r.empty = true
	}
	return r
}

// contains reports whether key k is inside the range.
func (r idRange) contains(k []byte) bool {
	return !r.empty && (r.lo == nil || bytes.Compare(k, r.lo) >= 0) && (r.hi == nil || bytes.Compare(k, r.hi) <= 0)
}
