package admin

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"facteur/queue"
	"facteur/relay/unixsock"
)

// showq answers every client with the listing, and reads nothing: a
// command sent to it does nothing.
func TestShowq(t *testing.T) {
	s := testServer(t, "", false)
	now := time.Now()
	id, err := s.Store.Enqueue(t.Context(), queue.Envelope{Sender: "app@example.com", Recipients: []string{"bob@example.org"}}, []byte("Subject: x\r\n\r\nx\r\n"), now)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "showq.sock")
	ln, err := unixsock.Listen(path, 0o666, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	q := &Showq{Store: s.Store}
	go func() { done <- q.Serve(ctx, ln) }()
	for _, send := range []string{"", "POST /queue/delete?all=1 HTTP/1.1\r\nHost: x\r\n\r\n"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, send)
		b, err := io.ReadAll(c)
		c.Close()
		if send != "" {
			// Closed with the command unread: the kernel may reset.
			err = nil
		}
		if err != nil || !strings.Contains(string(b), string(id)) || !strings.Contains(string(b), "bob@example.org") {
			t.Errorf("listing %q, %v", b, err)
		}
	}
	if _, err := s.Store.Get(t.Context(), id); err != nil {
		t.Errorf("the message is gone: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// showqSlots: an account has one listing at a time, and all the counted
// accounts showqConcurrency together.
func TestShowqSlots(t *testing.T) {
	var s showqSlots
	steps := []struct {
		uid     int
		release bool
		ok      bool
		why     string
	}{
		{uid: 33, ok: true},
		{uid: 33, why: "uid 33 is in progress"},
		{uid: 1000, ok: true},
		{uid: 1001, ok: true},
		{uid: -1, ok: true},
		{uid: 1002, why: "4 listings are in progress"},
		{uid: 33, release: true},
		{uid: 33, ok: true},
		{uid: 1000, release: true},
		{uid: 1002, ok: true},
	}
	for i, st := range steps {
		if st.release {
			s.release(st.uid)
			continue
		}
		ok, why := s.take(st.uid)
		if ok != st.ok || (!ok && !strings.Contains(why, st.why)) {
			t.Errorf("step %d: take(%d) = %v, %q; want %v, %q", i, st.uid, ok, why, st.ok, st.why)
		}
	}
	if s.total != 4 || len(s.byUID) != 4 {
		t.Errorf("after the steps: %d listings, accounts %v", s.total, s.byUID)
	}
}

// A client that stalls in its listing keeps its own slot only: the same
// account's next mailq is refused at once with ShowqBusy (not queued behind
// it, as the accept loop used to be), an unlimited account (root) is
// served meanwhile, and the account's slot is back once the listing ends.
func TestShowqOneListingPerAccount(t *testing.T) {
	s := testServer(t, "", false)
	if _, err := s.Store.Enqueue(t.Context(), queue.Envelope{Sender: "app@example.com", Recipients: []string{"bob@example.org"}}, []byte("Subject: x\r\n\r\nx\r\n"), time.Now()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "showq.sock")
	ln, err := unixsock.Listen(path, 0o666, -1)
	if err != nil {
		t.Fatal(err)
	}
	entered, hold := make(chan struct{}, 4), make(chan struct{})
	var unlimited atomic.Bool
	q := &Showq{Store: s.Store, Unlimited: func(int) bool { return unlimited.Load() }}
	first := true
	var mu sync.Mutex
	q.Decorate = func([]queue.Message) {
		mu.Lock()
		stall := first
		first = false
		mu.Unlock()
		if stall {
			entered <- struct{}{}
			<-hold
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Serve(ctx, ln) }()
	read := func() string {
		t.Helper()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	stalled := make(chan string, 1)
	go func() {
		c, err := net.Dial("unix", path)
		if err != nil {
			stalled <- err.Error()
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		stalled <- string(b)
	}()
	<-entered
	if got := read(); !strings.HasPrefix(got, ShowqBusy) || !strings.Contains(got, "another listing for uid") {
		t.Errorf("second listing of the same account while the first stalls: %q", got)
	}
	unlimited.Store(true)
	if got := read(); !strings.Contains(got, "bob@example.org") {
		t.Errorf("an unlimited account's listing meanwhile: %q", got)
	}
	unlimited.Store(false)
	close(hold)
	if got := <-stalled; !strings.Contains(got, "bob@example.org") {
		t.Errorf("the stalled listing, once let go: %q", got)
	}
	// The slot is released after the client's connection is done with;
	// the next listing may race that release by a moment, so poll.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := read()
		if strings.Contains(got, "bob@example.org") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the account's slot never came back: %q", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
