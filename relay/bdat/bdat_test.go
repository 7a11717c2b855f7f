package bdat

import (
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Wait returns only after go-smtp's hand-off, played here in its order:
// Data returns, the goroutine sends the result, then closes the reader.
func TestWaitForTheHandOff(t *testing.T) {
	var tr Tracker
	r, w := io.Pipe()
	var sent atomic.Bool
	started, dataReturned := make(chan struct{}), make(chan struct{})
	go func() {
		func() { // Data
			defer tr.Start(r).End()
			close(started)
			io.Copy(io.Discard, r)
		}()
		close(dataReturned)
		time.Sleep(20 * time.Millisecond) // the result hand-off, late
		sent.Store(true)
		r.CloseWithError(errors.New("result handed on"))
	}()
	<-started                                                          // go-smtp's chunk copy returns once Data has read the chunk
	w.CloseWithError(errors.New("smtp: message transmission aborted")) // RSET
	tr.Wait()
	if !sent.Load() {
		t.Fatal("Wait returned before the reader was closed")
	}
	<-dataReturned
	// Nothing in flight any more: at once.
	start := time.Now()
	tr.Wait()
	if d := time.Since(start); d > time.Second {
		t.Errorf("a second Wait took %v", d)
	}
}

// A DATA transaction's reader is not a pipe: Wait returns once Data has.
func TestWaitAfterDATA(t *testing.T) {
	var tr Tracker
	func() {
		defer tr.Start(strings.NewReader("x")).End()
	}()
	done := make(chan struct{})
	go func() { tr.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait blocked after a DATA transaction")
	}
}

// An aborted Data that starts after the Wait of its own transaction (go-smtp
// went on after an empty chunk) returns only when the next Wait takes it,
// and that Wait also waits for its hand-off.
func TestAbortedBeforeStart(t *testing.T) {
	var tr Tracker
	tr.Wait() // the RSET's Reset: nothing started yet
	r, w := io.Pipe()
	w.CloseWithError(errors.New("smtp: message transmission aborted"))
	var handedOn atomic.Bool
	returned := make(chan struct{})
	go func() {
		func() { // Data, late
			c := tr.Start(r)
			defer c.End()
			io.Copy(io.Discard, r)
			c.Aborted()
		}()
		close(returned)
		handedOn.Store(true)
		r.CloseWithError(errors.New("result handed on"))
	}()
	select {
	case <-returned:
		t.Fatal("the late aborted Data returned before any Wait took it")
	case <-time.After(50 * time.Millisecond):
	}
	tr.Wait() // the next transaction's end
	if !handedOn.Load() {
		t.Fatal("Wait returned before the late Data's hand-off")
	}
}
