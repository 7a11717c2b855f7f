package delivery

import (
	"bufio"
	"fmt"
	"io"
	"net/textproto"
	"testing"
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
