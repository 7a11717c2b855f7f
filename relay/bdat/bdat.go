// Package bdat makes a go-smtp session safe against a BDAT transaction
// aborted while its Data runs, or before it has even started.
//
// go-smtp (v0.25.1) runs a BDAT transaction's Session.Data in a goroutine
// of its own while the connection goes on reading commands. When a client
// aborts the transaction (RSET, a new EHLO, hanging up), go-smtp closes the
// chunk pipe and calls Session.Reset or Logout at once, while Data may
// still be running: the two share the transaction's fields. And that
// goroutine hands Data's result on through a connection field that it
// reads after Data returns, then closes the pipe's reader: had the
// connection begun a new BDAT transaction meanwhile (a pipelining client
// sends it in the same packet as the RSET), the new transaction receives
// the aborted one's result ("554 message transmission aborted" for a
// message stored all the same, which the client then sends again). After
// an empty first chunk (BDAT 0) go-smtp goes on before the goroutine has
// even entered Data.
//
// So a session's Data calls Tracker.Start first, Call.End when it returns,
// and Call.Aborted before returning smtp.ErrDataReset; Reset and Logout
// call Tracker.Wait first. Wait takes every Data call started since the
// last Wait, lets the aborted ones return, and returns once each has
// returned and go-smtp's hand-off after it is over. An aborted Data that
// started too late for the Wait of its own transaction (BDAT 0) waits in
// Aborted for the next one, so that its result cannot reach a transaction
// in progress. A DATA transaction's Data runs in the connection's own
// goroutine and is over before go-smtp resets: Wait returns at once.
//
// What remains is go-smtp's own, after an empty chunk only: its goroutine
// reads the connection's session and result channel before and after Data
// without a lock, so a client sending BDAT 0, RSET and more on one
// connection can make it panic (it recovers and answers 421) or misreport
// its own transactions. That client harms only itself; the session's
// fields are safe (Aborted).
package bdat

import (
	"errors"
	"io"
	"sync"
	"time"
)

// MaxWait bounds Wait: a client that starts TLS in the middle of a BDAT
// transaction gets Logout called with the chunk pipe still open, and Data
// still waiting for the next chunk.
const MaxWait = 5 * time.Second

// Tracker follows one session's Data calls. The zero value is ready.
type Tracker struct {
	mu    sync.Mutex
	calls []*Call // started since the last Wait
}

// Call is one Data call.
type Call struct {
	done  chan struct{} // closed by End
	taken chan struct{} // closed by the Wait that took the call
	r     io.Reader
}

// Start records a Data call reading r.
func (t *Tracker) Start(r io.Reader) *Call {
	c := &Call{done: make(chan struct{}), taken: make(chan struct{}), r: r}
	t.mu.Lock()
	t.calls = append(t.calls, c)
	t.mu.Unlock()
	return c
}

// End marks the call returned.
func (c *Call) End() { close(c.done) }

// Aborted blocks until a Reset or Logout has taken the call: Data calls
// it before returning smtp.ErrDataReset, and must not touch the session
// before it (the session may be in its next transaction).
func (c *Call) Aborted() { <-c.taken }

// Wait returns once every Data call started since the last Wait has
// returned and, for a BDAT one, go-smtp has closed its pipe's reader
// (after handing the result on); or after MaxWait. The bound is
// wall-clock time: this waits on goroutines, not on a schedule.
func (t *Tracker) Wait() {
	t.mu.Lock()
	calls := t.calls
	t.calls = nil
	t.mu.Unlock()
	if len(calls) == 0 {
		return
	}
	for _, c := range calls {
		close(c.taken)
	}
	// The common case, a DATA transaction over before its reset, sets no
	// timer: this runs once per message.
	var timer *time.Timer
	for _, c := range calls {
		if _, pipe := c.r.(*io.PipeReader); !pipe {
			select {
			case <-c.done:
				continue // DATA's reader: no goroutine, no hand-off
			default:
			}
		}
		if timer == nil {
			timer = time.NewTimer(MaxWait)
			defer timer.Stop()
		}
		select {
		case <-c.done:
		case <-timer.C:
			return
		}
		pr, ok := c.r.(*io.PipeReader)
		if !ok {
			continue
		}
		// go-smtp closes the writer side before Reset (or after the last
		// chunk), so a read never blocks: it answers the writer's error
		// until the reader is closed, then io.ErrClosedPipe.
		for {
			if _, err := pr.Read(nil); errors.Is(err, io.ErrClosedPipe) {
				break
			}
			select {
			case <-timer.C:
				return
			case <-time.After(20 * time.Microsecond):
			}
		}
	}
}
