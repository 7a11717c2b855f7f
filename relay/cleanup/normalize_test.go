package cleanup

import (
	"bytes"
	"strings"
	"testing"
)

// refClean is the byte-at-a-time form clean replaced, kept as the
// reference FuzzClean compares against.
func refClean(msg []byte) bool {
	for i := 0; i < len(msg); i++ {
		switch msg[i] {
		case '\r':
			if i+1 >= len(msg) || msg[i+1] != '\n' {
				return false
			}
			i++
		case '\n':
			return false
		}
	}
	return true
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{
		"", "a\r\nb\r\n", "a\r\nb", "\n", "\r", "\r\n",
		"\r\n.\n", "\n.\r\n", ".\x00", "\r\r\n\n", "\n\r", "\r\r\r\n",
		"a\r\n.\r\nb", "\r\n\r\n\r", "x\n\r\n\r", "\r\n\n\r\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := clean(in), refClean(in); got != want {
			t.Fatalf("clean(%q) = %v, want %v", in, got, want)
		}
	})
}

// refHeaderBytes is the bytes.Buffer form of header.bytes (which now sizes
// its one allocation first): FuzzHeaderBytes checks they agree.
func refHeaderBytes(h *header, prepend, appendFields []string) []byte {
	var b bytes.Buffer
	for _, f := range prepend {
		b.WriteString(f)
	}
	for _, f := range h.fields {
		b.Write(f.raw)
	}
	for _, f := range appendFields {
		b.WriteString(f)
	}
	b.WriteString("\r\n")
	b.Write(h.body)
	return b.Bytes()
}

func FuzzHeaderBytes(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: x\r\n y\r\n\r\nbody\r\n"), "Received: x\r\n", "Date: y\r\n")
	f.Add([]byte("no header\r\n"), "", "")
	f.Add([]byte("A: b\r\n"), "", "C: d\r\n")
	f.Fuzz(func(t *testing.T, msg []byte, pre, post string) {
		h := parseHeader(msg)
		got := h.bytes([]string{pre}, []string{post, pre})
		want := refHeaderBytes(&h, []string{pre}, []string{post, pre})
		if !bytes.Equal(got, want) || len(got) != cap(got) {
			t.Fatalf("bytes of %q = %q (cap %d), want %q", msg, got, cap(got), want)
		}
	})
}

// BenchmarkClean runs the reference (the former loop) and clean side by
// side on the same CRLF messages.
func BenchmarkClean(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"4KiB", 4 << 10}, {"1MiB", 1 << 20}} {
		msg := benchMessage(bc.size)
		for _, impl := range []struct {
			name  string
			clean func([]byte) bool
		}{{"ref", refClean}, {"new", clean}} {
			b.Run(impl.name+"/"+bc.name, func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				for b.Loop() {
					if !impl.clean(msg) {
						b.Fatal("not clean")
					}
				}
			})
		}
	}
}

// benchMessage is a CRLF message of about size bytes, lines of 80 bytes
// (as relay-bench sends).
func benchMessage(size int) []byte {
	head := "From: bench@example.org\r\nTo: rcpt@example.com\r\nSubject: bench\r\n\r\n"
	return []byte(head + strings.Repeat(strings.Repeat("x", 78)+"\r\n", (size-len(head))/80))
}
