package submission

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sync/semaphore"
)

// Memory is bounded in two steps (issue 11 §3: 100 concurrent 9.9 MB
// messages once drove the daemon to 10 GB). While DATA arrives, each
// session keeps at most spoolMemory bytes in memory and spills the rest to
// an unlinked temporary file; then cleanup, which needs the message whole
// (normalisation, DKIM, the bbolt commit: a few copies of it), runs only
// under a shared budget of processBudget message bytes. Small messages, the
// common case, never wait; large ones queue for the budget.
const (
	spoolMemory   = 256 << 10
	processBudget = 24 << 20
)

// maxHeaderLine is RFC 5322 §2.1.1's limit on a line, without its CRLF.
const maxHeaderLine = 998

// spool receives a message's DATA.
type spool struct {
	dir  string  // where the temporary file goes ("" = os.TempDir)
	mem  []byte  // the message while it fits in spoolMemory
	buf  *[]byte // where mem came from in spoolBufs, and goes back to
	file *os.File
	size int64

	// Header line lengths, checked as the bytes go by.
	inHeader   bool
	lineLen    int
	prevCR     bool
	longHeader bool
}

// spoolBufs recycles the in-memory spools: a fresh bytes.Buffer per
// message (4.75 KB for a 4 KiB one, grown by doubling for larger ones) was
// as much as cleanup's queued copy, and GC is a tenth of the daemon's CPU
// under load.
//
// Reuse is safe because nothing keeps the spooled bytes once the session's
// Data returns (Data releases the buffer after cleanup.Process has
// returned, and reads nothing of it after): Process takes them as
// Message.Data, whose contract is that Process keeps no reference to them.
// Normalize returns its input on its fast path, and the parsed header
// (fields, body) are slices of it, but both die with Process: the queued
// message, the one handed to the DKIM signer and to the store's Enqueue,
// is the fresh copy header.bytes builds; what the log, Hold and Queued
// get are copied strings. cleanup's TestProcessKeepsNoReference
// overwrites Data after Process and checks nothing kept changed.
var spoolBufs = sync.Pool{New: func() any { b := make([]byte, 0, spoolStart); return &b }}

const (
	// spoolStart is a new buffer's capacity: a typical transactional
	// message, so that most never grow (the pool keeps the ones that did).
	spoolStart = 16 << 10
	// spoolKeep bounds what goes back to the pool: a rare large message's
	// buffer is left to the GC rather than pinned for small ones.
	spoolKeep = 64 << 10
)

func newSpool(dir string) *spool { return &spool{dir: dir, inHeader: true} }

func (s *spool) Write(p []byte) (int, error) {
	s.checkHeader(p)
	s.size += int64(len(p))
	if s.file == nil && len(s.mem)+len(p) <= spoolMemory {
		if s.buf == nil {
			s.buf = spoolBufs.Get().(*[]byte)
			s.mem = (*s.buf)[:0]
		}
		s.mem = append(s.mem, p...)
		return len(p), nil
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.dir, "data-*")
		if err != nil {
			return 0, err
		}
		// Unlinked at once: the bytes live as long as the descriptor, and a
		// crash leaves nothing behind.
		os.Remove(f.Name())
		s.file = f
		if _, err := f.Write(s.mem); err != nil {
			return 0, err
		}
		s.release()
	}
	return s.file.Write(p)
}

// checkHeader tracks the length of header lines: up to the first empty
// line, a line longer than 998 octets is refused with a 5xx (issue 11 §3;
// a 4xx would have the client retry for ever).
//
// It goes from line feed to line feed with bytes.IndexByte; the state
// (length so far, whether its last byte was a CR) carries a line across
// writes. scan_test.go keeps the byte-at-a-time form as the reference
// (FuzzCheckHeader).
func (s *spool) checkHeader(p []byte) {
	for s.inHeader && len(p) > 0 {
		j := bytes.IndexByte(p, '\n')
		if j < 0 {
			s.lineLen += len(p)
			s.prevCR = p[len(p)-1] == '\r'
			return
		}
		n := s.lineLen + j
		if j > 0 {
			s.prevCR = p[j-1] == '\r'
		}
		if s.prevCR {
			n-- // the CR of the CRLF is not part of the line
		}
		if n > maxHeaderLine {
			s.longHeader = true
		}
		if n == 0 {
			s.inHeader = false
		}
		s.lineLen, s.prevCR = 0, false
		p = p[j+1:]
	}
}

// bytes returns the whole message: the spool's memory (valid until
// release), or the file read into one exact-size slice.
func (s *spool) bytes() ([]byte, error) {
	if s.file == nil {
		return s.mem, nil
	}
	b := make([]byte, s.size)
	if _, err := s.file.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the spooled message: %w", err)
	}
	return b, nil
}

// close closes the temporary file, if any.
func (s *spool) close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

// release gives the memory back to spoolBufs: nothing may use what bytes
// returned after it.
func (s *spool) release() {
	if s.buf != nil && cap(s.mem) <= spoolKeep {
		*s.buf = s.mem[:0] // the grown slice, if it grew
		spoolBufs.Put(s.buf)
	}
	s.buf, s.mem = nil, nil
}

// budget is the shared allowance of message bytes in cleanup.
type budget struct{ sem *semaphore.Weighted }

func newBudget() budget { return budget{semaphore.NewWeighted(processBudget)} }

// acquire waits for n bytes of the budget (a message larger than the
// budget takes all of it).
func (b budget) acquire(ctx context.Context, n int64) (release func(), err error) {
	n = min(max(n, 1), processBudget)
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return func() { b.sem.Release(n) }, nil
}
