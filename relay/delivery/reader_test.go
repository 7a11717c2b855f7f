package delivery

import (
	"bufio"
	"fmt"
	"io"
	"net/textproto"
	"testing"

	"facteur/policy"
)

// chunked is a server's byte stream arriving in pieces: each Read returns
// at most the next cut's length (0 is taken as 1), then the rest, then EOF.
type chunked struct {
	data  []byte
	cuts  []byte
	reads int
}

func (c *chunked) Read(p []byte) (int, error) {
	c.reads++
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := len(c.data)
	if len(c.cuts) > 0 {
		k = max(1, min(int(c.cuts[0]), k))
		c.cuts = c.cuts[1:]
	}
	n := copy(p, c.data[:k])
	c.data = c.data[n:]
	return n, nil
}

// FuzzReplyReader holds wire.response to net/textproto's ReadResponse(0),
// the reference: the same code, message and error for every reply of any
// stream, arriving in any pieces, through any buffer size (the message may
// be left empty only when the code passes); and the deadline is set before
// every read that reaches the stream.
func FuzzReplyReader(f *testing.F) {
	for _, s := range []string{
		"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n250 2.0.0 queued as X1\r\n",
		"250-first\r\n250-second\r\n250 last\r\n", "250\r\n", "25\r\n", "250 \r\n", "250 ok",
		"250 ok\n", "250 ok\r\r\n", "099 low\r\n", "+25 plus\r\n", "abc-x\r\n250 y\r\n", "250-a\r\n251 b\r\n250 c\r\n",
		"421 4.3.2 going away\r\n", "550-5.1.1 no\r\n550 5.1.1 such user\r\n", "\r\n", "",
		"250 a very long line that does not fit a small buffer at all, not even close\r\n250 next\r\n",
	} {
		f.Add([]byte(s), []byte{}, uint8(0), uint16(0))
		f.Add([]byte(s), []byte{1, 3, 7}, uint8(1), uint16(2))
		f.Add([]byte(s), []byte{14, 2}, uint8(200), uint16(354))
	}
	f.Fuzz(func(t *testing.T, stream, cuts []byte, size uint8, pass uint16) {
		bufSize := 16 + int(size)%64 // bufio's smallest, and more
		if size >= 128 {
			bufSize = 4096 // the wire's
		}
		ref := textproto.NewReader(bufio.NewReaderSize(&chunked{data: stream, cuts: cuts}, bufSize))
		src := &chunked{data: stream, cuts: cuts}
		w := &wire{r: textproto.NewReader(bufio.NewReaderSize(src, bufSize))}
		for i := 0; i < 64; i++ {
			rcode, rmsg, rerr := ref.ReadResponse(0)
			armed := false
			before := src.reads
			code, msg, err := w.response(func() { armed = true }, int(pass))
			if code != rcode || msg != rmsg && !(msg == "" && passes(code, int(pass))) || fmt.Sprint(err) != fmt.Sprint(rerr) || fmt.Sprintf("%T", err) != fmt.Sprintf("%T", rerr) {
				t.Fatalf("reply %d of %q (cuts %v, buffer %d): textproto %d %q %v; ours %d %q %v", i, stream, cuts, bufSize, rcode, rmsg, rerr, code, msg, err)
			}
			if src.reads != before && !armed {
				t.Fatalf("reply %d of %q: the stream was read without a deadline", i, stream)
			}
			if rerr != nil && code == 0 {
				return // the stream is at its end or broken
			}
		}
	})
}

// repeating is a server that says the same replies forever.
type repeating struct {
	data []byte
	off  int
}

func (r *repeating) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.data[r.off:])
		n += k
		r.off = (r.off + k) % len(r.data)
	}
	return n, nil
}

// BenchmarkReplies reads the four replies of a pipelined message (Postfix's
// words) as the send path did, textproto's ReadResponse and policy.ReplyOf
// for each, and as it does now; the socket is left out (a buffer that
// refills from memory), so that only the reading and parsing are measured.
func BenchmarkReplies(b *testing.B) {
	replies := []byte("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 4dQb2x0fYhz3wQ\r\n")
	steps := []int{2, 2, 354, 0} // MAIL, RCPT, DATA, the final dot
	for _, impl := range []string{"textproto", "wire"} {
		b.Run(impl, func(b *testing.B) {
			w := &wire{r: textproto.NewReader(bufio.NewReaderSize(&repeating{data: replies}, 4096))}
			b.ReportAllocs()
			for b.Loop() {
				for _, pass := range steps {
					var code int
					var msg string
					var err error
					if impl == "textproto" {
						code, msg, err = w.r.ReadResponse(0)
						policy.ReplyOf(code, msg)
					} else {
						code, msg, err = w.response(func() {}, pass)
						if !passes(code, pass) {
							policy.ReplyOf(code, msg)
						}
					}
					if err != nil || code < 200 {
						b.Fatal(code, msg, err)
					}
				}
			}
		})
	}
}
