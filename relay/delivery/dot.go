package delivery

import (
	"bufio"
	"bytes"
)

// dotWriter is the DATA encoding of net/textproto's DotWriter, byte for byte
// (the fuzz test holds it to that): a '.' that starts a line is doubled, a
// bare LF becomes CRLF, and Close ends a message with CRLF (when mid-line),
// ".\r\n" and a flush. textproto's writer runs every byte through its state
// machine with a bufio WriteByte, which was ~5 % of the daemon's CPU under
// relay-bench; here runs of bytes that pass unchanged (whole CRLF lines not
// starting with '.') are found with bytes.IndexByte and copied at once, and
// only the bytes that may change the output (a line's first '.', a CR not
// followed by LF, a bare LF) take the byte-at-a-time path.
//
// The writes reaching the connection are the same as textproto's too: runs
// are copied into the bufio buffer no more than it has room for, and the
// buffer is flushed when full, as WriteByte does, so that the number of
// bytes Write reports after a failed flush is textproto's.
type dotWriter struct {
	w     *bufio.Writer
	state int
}

// The states of textproto's dotWriter, with its meaning.
const (
	dotBegin     = iota // nothing written yet: like dotBeginLine
	dotBeginLine        // at the start of a line: a '.' is doubled
	dotCR               // just wrote a CR that may end the line
	dotData             // in the middle of a line
)

func (d *dotWriter) Write(b []byte) (n int, err error) {
	bw := d.w
	for n < len(b) {
		// After a CR the next byte is judged alone (CR LF, CR CR and CR '.'
		// each leave a different state), as is a line's first '.'.
		if d.state != dotCR && (d.state == dotData || b[n] != '.') {
			if p, st := plainRun(b, n); p > n {
				k, err := d.copyRun(b[n:p])
				if err != nil {
					return n + k, err
				}
				n, d.state = p, st
				continue
			}
		}
		// textproto's state machine, for the one byte b[n].
		c := b[n]
		switch d.state {
		case dotBegin, dotBeginLine:
			d.state = dotData
			if c == '.' {
				bw.WriteByte('.') // an error here sticks: WriteByte(c) below returns it
			}
			fallthrough
		case dotData:
			if c == '\r' {
				d.state = dotCR
			}
			if c == '\n' {
				bw.WriteByte('\r')
				d.state = dotBeginLine
			}
		case dotCR:
			d.state = dotData
			if c == '\n' {
				d.state = dotBeginLine
			}
		}
		if err = bw.WriteByte(c); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// plainRun returns the end p of the run b[n:p] that textproto's machine
// writes unchanged, starting in a state other than dotCR (and other than a
// line start if b[n] is '.'), and the state it leaves. The run is made of
// whole lines ending in CRLF, without another CR, whose next line does not
// start with '.', then the start of a line up to its first CR or LF. A
// CR that is not the one just before the LF, the LF of a line without CR,
// and a '.' at a line's start are left out, for Write's byte path. p is n
// when b[n] itself is one of those.
func plainRun(b []byte, n int) (p int, state int) {
	p, state = n, dotData
	for p < len(b) {
		rest := b[p:]
		lf := bytes.IndexByte(rest, '\n')
		if lf < 0 {
			cr := bytes.IndexByte(rest, '\r')
			if cr < 0 {
				return len(b), dotData
			}
			if cr > 0 {
				state = dotData
			}
			return p + cr, state
		}
		cr := bytes.IndexByte(rest[:lf], '\r')
		if cr < 0 || cr != lf-1 {
			// A bare LF (cr < 0, also when lf is 0) or a CR before the line's last byte: the
			// run stops there. Before the first ordinary byte the state is
			// the one at the line's start, which the byte path gets.
			stop := cr
			if cr < 0 {
				stop = lf
			}
			if stop > 0 {
				state = dotData
			}
			return p + stop, state
		}
		// CR LF, the CR read mid-line or at the line's start (not after
		// another CR): the state is at a new line.
		p += lf + 1
		state = dotBeginLine
		if p < len(b) && b[p] == '.' {
			break
		}
	}
	return p, state
}

// copyRun writes run into the buffer as WriteByte would byte by byte: it
// flushes only a full buffer, and counts only the bytes taken before an
// error. bufio.Writer.Write would instead write a large run straight to the
// connection, with another count on a failed write.
func (d *dotWriter) copyRun(run []byte) (int, error) {
	bw := d.w
	written := 0
	for len(run) > 0 {
		if bw.Available() <= 0 {
			if err := bw.Flush(); err != nil {
				return written, err
			}
		}
		k, err := bw.Write(run[:min(len(run), bw.Available())])
		written += k
		if err != nil {
			return written, err
		}
		run = run[k:]
	}
	return written, nil
}

// Close ends the data: CRLF if a line is open, then ".\r\n", and flushes.
func (d *dotWriter) Close() error {
	bw := d.w
	switch d.state {
	default: // dotBegin, dotData
		bw.WriteByte('\r')
		fallthrough
	case dotCR:
		bw.WriteByte('\n')
		fallthrough
	case dotBeginLine:
		bw.WriteString(".\r\n")
	}
	return bw.Flush()
}
