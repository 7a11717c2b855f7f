package queue

import (
	"bytes"
	"fmt"

	"github.com/golang/snappy"
	bolt "go.etcd.io/bbolt"
)

// bucketZBodies: ID -> the message bytes, Snappy-compressed. A body is in exactly one
// of bodies (as accepted) and zbodies; Body hands out the bytes as accepted either way.
var bucketZBodies = []byte("zbodies")

// Compression (issue 19 §5: a million queued messages in less than 1.5 times their
// bodies). Snappy costs microseconds per message each way, nothing next to the fsync
// an Enqueue waits for, and text mail shrinks two to four times; what does not shrink
// by an eighth (already compressed attachments, tiny messages) is stored as it is.
const (
	compressMin = 512
)

// appendFill is the fill of the buckets keyed by queue ID. IDs are drawn in arrival
// order, so these buckets grow at their end; bbolt's default split at half a page
// would leave every page half empty (measured: 2.5 times the bodies on disk).
const appendFill = 1.0

// recordFill is the fill of the records' bucket. Its keys are appended too, but a
// record grows by half when its first attempt is recorded (the response, the
// attempt history): in pages filled to the brim every such update split a page,
// and a queue of deferred messages ended with its record pages 40 % full. Room
// left at append takes that growth in place.
const recordFill = 0.55

// indexFill is the fill of the index buckets (due, addrs, senders), whose small
// keys grow mostly at the end: at bbolt's default half a page, they took as much
// room as the records.
const indexFill = 0.9

// bigBody is the stored size from which a body gets a bucket of its own. bbolt
// rewrites a whole leaf when one of its keys changes, and a leaf holds at least two
// keys: large bodies side by side were copied again by every later enqueue (a 10 MB
// message cost 20 MB of writes, and reading the previous one back through the mmap
// grew the daemon's resident memory by as much; issue 11 §3, 100 concurrent 9.9 MB
// messages). In its own bucket a large body's pages are written once and read only
// for delivery; its ID-keyed bucket holds a small bucket header in its place. Small
// bodies stay plain values, packed in shared leaves, which is cheaper for them.
const bigBody = 64 << 10

// bodyKey is the key of a large body inside its own bucket.
var bodyKey = []byte("b")

func (w *wtx) putBody(id ID, body []byte) error {
	b, stored := w.bodies, body
	if len(body) >= compressMin {
		if z := snappy.Encode(nil, body); len(z) <= len(body)-len(body)/8 {
			b, stored = w.zbodies, z
		}
	}
	var err error
	if len(stored) >= bigBody {
		var own *bolt.Bucket
		if own, err = b.CreateBucket([]byte(id)); err == nil {
			err = own.Put(bodyKey, stored)
		}
	} else {
		err = b.Put([]byte(id), stored)
	}
	if err != nil {
		return fmt.Errorf("message %s: body: %w", id, err)
	}
	return nil
}

// stored returns the bytes b holds for id (valid during the transaction), in
// either layout, or nil.
func stored(b *bolt.Bucket, id []byte) []byte {
	if v := b.Get(id); v != nil {
		return v
	}
	if own := b.Bucket(id); own != nil {
		return own.Get(bodyKey)
	}
	return nil
}

// body returns a copy of the bytes of id as accepted; ok is false if it has none.
func (w *wtx) body(id ID) ([]byte, bool, error) {
	if b := stored(w.bodies, []byte(id)); b != nil {
		return bytes.Clone(b), true, nil
	}
	z := stored(w.zbodies, []byte(id))
	if z == nil {
		return nil, false, nil
	}
	b, err := snappy.Decode(nil, z)
	if err != nil {
		return nil, true, fmt.Errorf("message %s: corrupt compressed body: %w", id, err)
	}
	return b, true, nil
}

func (w *wtx) deleteBody(id ID) error {
	for _, b := range []*bolt.Bucket{w.bodies, w.zbodies} {
		var err error
		if b.Bucket([]byte(id)) != nil {
			err = b.DeleteBucket([]byte(id))
		} else {
			err = b.Delete([]byte(id))
		}
		if err != nil {
			return fmt.Errorf("message %s: body: %w", id, err)
		}
	}
	return nil
}
