package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"testing"
)

// TestDotWriter spells out the DATA encoding, quirks included, for inputs
// written in one piece and byte by byte.
func TestDotWriter(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty: CRLF then the dot", "", "\r\n.\r\n"},
		{"CRLF lines", "a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		{"no final CRLF", "a\r\nb", "a\r\nb\r\n.\r\n"},
		{"ends in CR", "a\r", "a\r\n.\r\n"},
		{"leading dot doubled", ".a\r\n.\r\n..\r\n", "..a\r\n..\r\n...\r\n.\r\n"},
		{"a lone dot first", ".", "..\r\n.\r\n"},
		{"dot mid-line kept", "a.b\r\n a.\r\n", "a.b\r\n a.\r\n.\r\n"},
		{"bare LF becomes CRLF", "a\nb\n", "a\r\nb\r\n.\r\n"},
		{"dot after a bare LF doubled", "a\n.b", "a\r\n..b\r\n.\r\n"},
		{"LF first", "\n.", "\r\n..\r\n.\r\n"},
		{"CR CR LF: the LF gets its own CR", "a\r\r\nb", "a\r\r\r\nb\r\n.\r\n"},
		{"dot after a bare CR kept", "a\r.b\r\n", "a\r.b\r\n.\r\n"},
		{"empty lines", "\r\n\r\n.\r\n", "\r\n\r\n..\r\n.\r\n"},
		{"8-bit bytes", "caf\xc3\xa9\r\n", "caf\xc3\xa9\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{len(tc.in) + 1, 1} {
				var out bytes.Buffer
				bw := bufio.NewWriterSize(&out, 16)
				d := &dotWriter{w: bw}
				in := []byte(tc.in)
				for len(in) > 0 {
					k := min(chunk, len(in))
					if n, err := d.Write(in[:k]); n != k || err != nil {
						t.Fatalf("Write: %d, %v", n, err)
					}
					in = in[k:]
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				if out.String() != tc.want {
					t.Errorf("chunks of %d: %q, want %q", chunk, out.String(), tc.want)
				}
			}
		})
	}
}

// failingWriter takes limit bytes, then fails (after a short write).
type failingWriter struct {
	out   bytes.Buffer
	limit int
}

var errFailing = errors.New("connection reset")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.limit < 0 {
		return f.out.Write(p)
	}
	if len(p) <= f.limit {
		f.limit -= len(p)
		return f.out.Write(p)
	}
	n, _ := f.out.Write(p[:f.limit])
	f.limit = 0
	return n, errFailing
}

// FuzzDotWriter holds dotWriter to net/textproto's DotWriter, the reference:
// same bytes on the connection, same counts and errors from every Write and
// from Close, for any body split into any Writes, any buffer size, and a
// connection that fails after any number of bytes.
func FuzzDotWriter(f *testing.F) {
	for _, s := range []string{
		"", ".", "..", ".\r\n", "\r\n.\r\n", "a\r\n.b\r\n..c\r\n", "a\nb\n.c\n", "\n", "\n.",
		"\r", "\r\r", "\r\r\n", "a\r\r\n.", "a\r.b", "\r.\r\n", "\r\n\r\n", "a\n\r\n\r\r\n.",
		"From: a@b\r\nSubject: x\r\n\r\nbody\r\n.\r\nend",
		strings.Repeat("x", 100) + "\r\n." + strings.Repeat("y", 40) + "\n",
	} {
		f.Add([]byte(s), []byte{}, uint16(0), int32(-1))
		f.Add([]byte(s), []byte{1}, uint16(3), int32(-1))
		f.Add([]byte(s), []byte{2, 0, 1}, uint16(0x8000), int32(5))
		f.Add([]byte(s), []byte{3, 5, 7}, uint16(15), int32(0))
	}
	f.Fuzz(func(t *testing.T, body, cuts []byte, bufSize uint16, failAt int32) {
		// Small buffers flush mid-run; 16 KiB is what a wire has.
		size := 1 + int(bufSize)%97
		if bufSize&0x8000 != 0 {
			size = 16 << 10
		}
		limit := -1
		if failAt >= 0 {
			limit = int(failAt) % (2*len(body) + 8)
		}
		refOut := &failingWriter{limit: limit}
		gotOut := &failingWriter{limit: limit}
		ref := textproto.NewWriter(bufio.NewWriterSize(refOut, size)).DotWriter()
		got := &dotWriter{w: bufio.NewWriterSize(gotOut, size)}
		in := body
		for i := 0; len(in) > 0; i++ {
			k := len(in)
			if i < len(cuts) {
				k = min(int(cuts[i]), len(in))
			}
			rn, rerr := ref.Write(in[:k])
			gn, gerr := got.Write(in[:k])
			if rn != gn || !errors.Is(gerr, rerr) || (rerr == nil) != (gerr == nil) {
				t.Fatalf("Write %d of %q (buffer %d, fail at %d): textproto %d, %v; ours %d, %v", i, in[:k], size, limit, rn, rerr, gn, gerr)
			}
			in = in[k:]
		}
		rerr, gerr := ref.Close(), got.Close()
		if !errors.Is(gerr, rerr) || (rerr == nil) != (gerr == nil) {
			t.Fatalf("Close: textproto %v, ours %v", rerr, gerr)
		}
		if !bytes.Equal(refOut.out.Bytes(), gotOut.out.Bytes()) {
			t.Fatalf("body %q cuts %v buffer %d fail at %d:\ntextproto %q\nours      %q", body, cuts, size, limit, refOut.out.Bytes(), gotOut.out.Bytes())
		}
	})
}

// benchMessage is a CRLF message of about n bytes: headers, then lines of
// mail text of varied length, one in fifty starting with a dot.
func benchMessage(n int) []byte {
	var b bytes.Buffer
	b.WriteString("Received: from app.example.com (localhost [127.0.0.1])\r\n\tby relay.facteur.test with ESMTP id 01JB2X; Mon, 7 Dec 2026 05:00:00 +0000\r\n")
	b.WriteString("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=s1;\r\n\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n")
	b.WriteString("From: Example <noreply@example.com>\r\nTo: someone@dest.test\r\nSubject: Your order has shipped\r\n")
	b.WriteString("Date: Mon, 07 Dec 2026 05:00:00 +0000\r\nMessage-ID: <20261207050000.1@example.com>\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	words := strings.Fields("the quick brown fox jumps over the lazy dog; votre commande a été expédiée, merci. Lorem ipsum dolor sit amet")
	for i := 0; b.Len() < n; i++ {
		var line strings.Builder
		if i%50 == 49 {
			line.WriteString(".")
		}
		for j := i; line.Len() < 20+(i*37)%58; j++ {
			line.WriteString(words[j%len(words)])
			line.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s\r\n", strings.TrimSpace(line.String()))
	}
	return b.Bytes()
}

// BenchmarkDotWriter encodes a 4 KiB and a 1 MiB message into a 16 KiB
// bufio.Writer (a wire's), in the 64 KiB blocks of the send path, with
// net/textproto's DotWriter (what the send path used) and with dotWriter.
func BenchmarkDotWriter(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		msg := benchMessage(size)
		for _, impl := range []string{"textproto", "dotWriter"} {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, impl), func(b *testing.B) {
				bw := bufio.NewWriterSize(io.Discard, 16<<10)
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					if impl == "textproto" {
						writeBlocks(b, textproto.NewWriter(bw).DotWriter(), msg)
					} else {
						// As the send path makes and calls it: on the stack.
						d := dotWriter{w: bw}
						for off := 0; off < len(msg); off += blockSize {
							if _, err := d.Write(msg[off:min(off+blockSize, len(msg))]); err != nil {
								b.Fatal(err)
							}
						}
						if err := d.Close(); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

func writeBlocks(b *testing.B, w io.WriteCloser, msg []byte) {
	for off := 0; off < len(msg); off += blockSize {
		if _, err := w.Write(msg[off:min(off+blockSize, len(msg))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// TestLineBuffered: read skips the deadline only when the whole reply is one
// line already buffered, so that ReadResponse cannot touch the socket.
func TestLineBuffered(t *testing.T) {
	for _, tc := range []struct {
		buffered string
		want     bool
	}{
		{"", false},
		{"250 2.1.0 ok\r\n", true},
		{"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n", true},
		{"250 2.1.0 o", false},               // the rest still to come
		{"250-first\r\n250 last\r\n", false}, // ReadResponse reads on
		{"250\r\n", true},                    // an error, without a read
		{"25\r\n", false},                    // too short to judge: read as before
		{"250\n", false},                     // conservative: a deadline as before
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.buffered), 64)
		br.Peek(len(tc.buffered)) // fills the buffer from the "socket"
		w := &wire{r: textproto.NewReader(br)}
		if got := w.lineBuffered(); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.buffered, got, tc.want)
		}
	}
}
