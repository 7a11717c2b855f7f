package queue

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// metaFreelist reads the freelist page id of the newest meta page of a bbolt file
// (bbolt's on-disk layout: two meta pages after a 16-byte page header each; meta is
// magic, version, page size, flags, root bucket (16 bytes), freelist, pgid, txid).
// noFreelist is bbolt's "not written" marker.
func metaFreelist(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	pageSize := int(le.Uint32(b[16+8:]))
	var best, freelist uint64
	for p := range 2 {
		m := b[p*pageSize+16:]
		if txid := le.Uint64(m[48:]); p == 0 || txid > best {
			best, freelist = txid, le.Uint64(m[32:])
		}
	}
	return freelist
}

const noFreelist = ^uint64(0)

// A clean Close writes the freelist, so that the next Open reads it instead of walking
// the whole file; the first write after Open drops it again, so that a crash makes the
// next Open rebuild it by the walk, as before.
func TestCleanCloseWritesFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var ids []ID
	for i := range 200 {
		ids = append(ids, enqueue(t, s, t0.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("u%d@x.example", i)))
	}
	for _, id := range ids[:150] {
		if err := s.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	if got := metaFreelist(t, path); got != noFreelist {
		t.Fatalf("freelist written while open (page %d): every commit would pay for it", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := metaFreelist(t, path); got == noFreelist {
		t.Fatal("clean Close left no freelist: the next Open walks the file")
	}

	s = openAt(t, path, Options{NoSync: true})
	if free := s.db.Stats().FreePageN; free == 0 {
		t.Error("reopened store has no free pages: the freelist was not read back")
	}
	if got := metaFreelist(t, path); got != noFreelist {
		t.Error("Open's first commit kept the freelist: a crash would leave a stale one")
	}
	for _, id := range ids[150:] {
		get(t, s, id)
	}
	enqueue(t, s, t0.Add(time.Hour), "after@x.example")
}
