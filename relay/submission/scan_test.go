package submission

import (
	"bytes"
	"strings"
	"testing"
)

// refScan is the byte-at-a-time smuggling watch conn.scan replaced (kept
// as the reference the fuzz test compares against): w is the window
// carried from the previous read, flagged whether a pattern was seen.
func refScan(w *[3]byte, b []byte) (cut int, flagged bool) {
	cut = -1
	w1, w2, w3 := w[0], w[1], w[2]
	for i, cur := range b {
		hit := -2 // index in b of the dot of a pattern ending at cur
		if w3 == '.' && isBreak(w2) {
			bareBefore := w2 == '\r' || w1 != '\r'
			if cur == '\n' || cur == 0 || (cur == '\r' && bareBefore) {
				hit = i - 1
			}
		}
		if hit == -2 && w3 == '\r' && w2 == '.' && isBreak(w1) && cur != '\n' {
			hit = i - 2
		}
		if hit != -2 {
			flagged = true
			if cut < 0 {
				cut = max(hit, 0)
			}
		}
		w1, w2, w3 = w2, w3, cur
	}
	*w = [3]byte{w1, w2, w3}
	return cut, flagged
}

// chunks splits data into reads whose lengths the bytes of sizes give
// (1 to 16 each, repeating; the whole data at once when sizes is empty).
func chunks(data, sizes []byte) [][]byte {
	if len(sizes) == 0 {
		return [][]byte{data}
	}
	var out [][]byte
	for i := 0; len(data) > 0; i++ {
		n := min(int(sizes[i%len(sizes)]%16)+1, len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// FuzzScan checks conn.scan against refScan read by read: the same cut,
// the same flag and the same window carried into the next read.
func FuzzScan(f *testing.F) {
	for _, s := range []struct{ data, sizes string }{
		{"a\r\n.\nb", ""},
		{"a\r\n.\nb", "\x02"},       // the dot at a chunk boundary
		{"a\r\n.\nb", "\x03\x00"},   // the dot alone in a read
		{"a\n.\r\nb", "\x00"},       // one byte per read
		{"\r\n.\n", ""},             // the pattern at the very start
		{"\n.\r\n", "\x01"},         // bare LF before the dot
		{"x\r\n.\x00\r\n", "\x04"},  // dot NUL
		{".\x00", ""},               // dot NUL with the window empty
		{"\r\r\r.\r\r\r", "\x01"},   // CR runs
		{"a\r.\rb", "\x02\x01"},     // <CR>.<CR>
		{"a\r\n.\rb", ""},           // <CR><LF>.<CR>
		{"a\r\n.\r\nb\r\n", "\x03"}, // the real end of data: not flagged
		{"a.b.c\r\n..\r\n.", "\x05"},
		{strings.Repeat("ab.\r\n", 40), "\x07\x0b"},
	} {
		f.Add([]byte(s.data), []byte(s.sizes))
	}
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		c := &conn{}
		var w [3]byte
		for _, b := range chunks(data, sizes) {
			wantCut, wantFlag := refScan(&w, b)
			cut := c.scan(b)
			if flag := c.flagged.Swap(false); cut != wantCut || flag != wantFlag || c.w != w {
				t.Fatalf("scan(%q) after %q = %d, %v, window %q; want %d, %v, %q",
					b, data, cut, flag, c.w, wantCut, wantFlag, w)
			}
		}
	})
}

// refCheckHeader is the byte-at-a-time header line check spool.checkHeader
// replaced.
func refCheckHeader(s *spool, p []byte) {
	for _, ch := range p {
		if !s.inHeader {
			return
		}
		switch ch {
		case '\n':
			n := s.lineLen
			if s.prevCR {
				n--
			}
			if n > maxHeaderLine {
				s.longHeader = true
			}
			if n == 0 {
				s.inHeader = false
			}
			s.lineLen, s.prevCR = 0, false
		default:
			s.lineLen++
			s.prevCR = ch == '\r'
		}
	}
}

type headerState struct {
	inHeader, prevCR, longHeader bool
	lineLen                      int
}

func stateOf(s *spool) headerState {
	return headerState{s.inHeader, s.prevCR, s.longHeader, s.lineLen}
}

// FuzzCheckHeader checks spool.checkHeader against refCheckHeader write by
// write: the same state after each.
func FuzzCheckHeader(f *testing.F) {
	long := strings.Repeat("x", maxHeaderLine)
	for _, s := range []struct{ data, sizes string }{
		{"A: b\r\nC: d\r\n\r\nbody\r\n", ""},
		{"A: b\r\nC: d\r\n\r\nbody\r\n", "\x00"},
		{"A: " + long + "\r\n\r\n", "\x0f"},
		{long + "\r\n\r\n", ""},         // 998: allowed
		{long + "x\r\n\r\n", "\x03"},    // 999: too long
		{long + "\r\r\n\n", ""},         // a CR counted in the line
		{long + "x\n\n", ""},            // bare LF
		{"\r\r\r\n", "\x01"},            // CR runs
		{"A: b\n\nbody", "\x02"},        // bare LF end of header
		{"\r", ""},                      // a lone CR
		{"A: b\r", ""},                  // the header not ended
		{"\n", ""},                      // empty header at once
		{"A\r\n\r\n" + long + long, ""}, // a long body line is fine
	} {
		f.Add([]byte(s.data), []byte(s.sizes))
	}
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		// Long lines are what the check is about: stretch the input.
		data = bytes.ReplaceAll(data, []byte("L"), []byte(long))
		got, want := newSpool(""), newSpool("")
		for _, b := range chunks(data, sizes) {
			got.checkHeader(b)
			refCheckHeader(want, b)
			if stateOf(got) != stateOf(want) {
				t.Fatalf("checkHeader(%q) after %q: %+v, want %+v", b, data, stateOf(got), stateOf(want))
			}
		}
	})
}

// benchMessage is a CRLF message of size bytes: the relay-bench one
// (lines of x, dots only in the header's domains), or prose (a dot every
// sentence, domains and a URL: a dot every 25 bytes, the scan's worst
// realistic case).
func benchMessage(size int, prose bool) []byte {
	var b bytes.Buffer
	b.WriteString("Received: from web1.example.org ([192.0.2.10])\r\n\tby relay.example.net with ESMTP id 4Fx9k2;\r\n\tMon, 7 Dec 2026 05:25:29 +0000\r\n" +
		"From: Shop <orders@shop.example.org>\r\nTo: client@example.com\r\nSubject: Your order no. 1234 has shipped\r\n" +
		"Message-ID: <20261207052529.4Fx9k2@shop.example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	line := strings.Repeat("x", 78) + "\r\n"
	if prose {
		line = "Thank you for your order. It left our warehouse today. Track it at\r\n" +
			"https://shop.example.org/track?id=1234 (updated hourly).\r\n"
	}
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()[:size]
}

// benchReads is how go-smtp reads: its bufio.Reader asks for 4096 bytes.
const benchReads = 4096

// benchCases names the benchmark inputs: body kind and size.
var benchCases = []struct {
	name  string
	size  int
	prose bool
}{
	{"x/4KiB", 4 << 10, false},
	{"x/1MiB", 1 << 20, false},
	{"prose/4KiB", 4 << 10, true},
	{"prose/1MiB", 1 << 20, true},
}

// BenchmarkScan runs the reference (ref, the former loop) and scan (new)
// side by side, so that one run on a busy machine compares them.
func BenchmarkScan(b *testing.B) {
	for _, bc := range benchCases {
		msg := benchMessage(bc.size, bc.prose)
		b.Run("ref/"+bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			var w [3]byte
			for b.Loop() {
				for p := msg; len(p) > 0; {
					n := min(benchReads, len(p))
					refScan(&w, p[:n])
					p = p[n:]
				}
			}
		})
		b.Run("new/"+bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			c := &conn{}
			for b.Loop() {
				for p := msg; len(p) > 0; {
					n := min(benchReads, len(p))
					c.scan(p[:n])
					p = p[n:]
				}
			}
		})
	}
}

// BenchmarkCheckHeader times the worst case: a header as long as the
// message (the check stops at the blank line, so a real message costs its
// header only).
func BenchmarkCheckHeader(b *testing.B) {
	for _, bc := range benchCases {
		msg := bytes.ReplaceAll(benchMessage(bc.size, bc.prose), []byte("\r\n\r\n"), []byte("\r\nX: y\r\n"))
		for _, impl := range []struct {
			name  string
			check func(*spool, []byte)
		}{{"ref", refCheckHeader}, {"new", (*spool).checkHeader}} {
			b.Run(impl.name+"/"+bc.name, func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				for b.Loop() {
					s := newSpool("")
					for p := msg; len(p) > 0; {
						n := min(benchReads, len(p))
						impl.check(s, p[:n])
						p = p[n:]
					}
				}
			})
		}
	}
}
