package queue

import (
	"bytes"
	"fmt"

	"github.com/golang/snappy"
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

func (w *wtx) putBody(id ID, body []byte) error {
	if len(body) >= compressMin {
		if z := snappy.Encode(nil, body); len(z) <= len(body)-len(body)/8 {
			if err := w.zbodies.Put([]byte(id), z); err != nil {
				return fmt.Errorf("message %s: body: %w", id, err)
			}
			return nil
		}
	}
	if err := w.bodies.Put([]byte(id), body); err != nil {
		return fmt.Errorf("message %s: body: %w", id, err)
	}
	return nil
}

// body returns a copy of the bytes of id as accepted; ok is false if it has none.
func (w *wtx) body(id ID) ([]byte, bool, error) {
	if b := w.bodies.Get([]byte(id)); b != nil {
		return bytes.Clone(b), true, nil
	}
	z := w.zbodies.Get([]byte(id))
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
	if err := w.bodies.Delete([]byte(id)); err != nil {
		return fmt.Errorf("message %s: body: %w", id, err)
	}
	if err := w.zbodies.Delete([]byte(id)); err != nil {
		return fmt.Errorf("message %s: body: %w", id, err)
	}
	return nil
}
