package submission

import (
	"bytes"
	"io"
	"testing"
)

// TestSpoolReuse: a buffer back from the pool holds nothing of the last
// message (three rounds, each its own letter), whatever its size: grown,
// too large to go back, or spilled to a file.
func TestSpoolReuse(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"small", 100},
		{"grows past the first buffer", spoolStart + 1},
		{"past spoolKeep", spoolKeep + 1},
		{"spilled to a file", spoolMemory + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := range 3 {
				msg := bytes.Repeat([]byte{'a' + byte(round)}, tt.size)
				sp := newSpool(t.TempDir())
				if _, err := io.CopyBuffer(sp, bytes.NewReader(msg), make([]byte, 1000)); err != nil {
					t.Fatal(err)
				}
				got, err := sp.bytes()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("round %d: %d bytes back, want %d of %q", round, len(got), len(msg), rune('a'+round))
				}
				sp.close()
				sp.release()
				if sp.mem != nil {
					t.Fatal("release kept the memory")
				}
			}
		})
	}
}

// BenchmarkSpool is DATA into the spool and back out as Data does: 4 KiB
// in go-smtp's 4096-byte reads, bytes, then release.
func BenchmarkSpool(b *testing.B) {
	msg := benchMessage(4<<10, false)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		sp := newSpool("")
		for p := msg; len(p) > 0; {
			n := min(benchReads, len(p))
			if _, err := sp.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
		if _, err := sp.bytes(); err != nil {
			b.Fatal(err)
		}
		sp.close()
		sp.release()
	}
}

// BenchmarkObserve is the reply watch over one session's replies.
func BenchmarkObserve(b *testing.B) {
	replies := [][]byte{
		[]byte("220 relay.test ESMTP Service Ready\r\n"),
		[]byte("250-relay.test Hello\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n"),
		[]byte("250 2.0.0 Roger, accepting mail from <a@example.org>\r\n"),
		[]byte("250 2.0.0 I'll make sure <b@example.com> gets this\r\n"),
		[]byte("354 2.0.0 Go ahead. End your data with <CR><LF>.<CR><LF>\r\n"),
		[]byte("250 2.0.0 Ok: queued as 4Fx9k2\r\n"),
		[]byte("221 2.0.0 Bye\r\n"),
	}
	c := &conn{}
	for b.Loop() {
		c.greeted = false
		for _, r := range replies {
			if !c.observe(r) {
				b.Fatal("not final")
			}
		}
	}
}
