package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"facteur/queue"
	"facteur/relay/unixsock"
)

// Showq serves the queue listing, and nothing else, on a socket any local
// user's mailq may reach (Postfix's showq in public/): a client connects,
// reads the text `facteur queue list` prints, and is disconnected. It reads
// no request, so it takes no credential and accepts no command.
type Showq struct {
	Store    *queue.Store
	Decorate func(msgs []queue.Message)
	// Timeout bounds one client, from accept to the last byte (0: 30s).
	Timeout time.Duration
	// Unlimited names the accounts the listing slots do not count (the
	// daemon: root); nil counts everyone.
	Unlimited func(uid int) bool

	slots showqSlots
}

const (
	// showqConcurrency bounds the listings built at once for the counted
	// accounts: any local user can connect, and each listing reads the
	// whole queue.
	showqConcurrency = 4
	// showqPerUser is one account's share: a hacked site's www-data holding
	// connections open without reading keeps only its own slot, and every
	// other user's mailq still answers at once.
	showqPerUser = 1
	// ShowqBusy starts the one line a refused client gets instead of the
	// listing; the shim prints it to stderr and exits EX_TEMPFAIL.
	ShowqBusy = "mailq: queue listing unavailable: "
)

// showqSlots counts the listings in progress, in all and per account.
type showqSlots struct {
	mu    sync.Mutex
	total int
	byUID map[int]int
}

// take reserves a slot for uid, or says why there is none.
func (s *showqSlots) take(uid int) (ok bool, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.byUID[uid] >= showqPerUser:
		return false, fmt.Sprintf("another listing for uid %d is in progress; try again when it is done", uid)
	case s.total >= showqConcurrency:
		return false, fmt.Sprintf("%d listings are in progress; try again in a moment", s.total)
	}
	if s.byUID == nil {
		s.byUID = make(map[int]int)
	}
	s.byUID[uid]++
	s.total++
	return true, ""
}

func (s *showqSlots) release(uid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byUID[uid]--; s.byUID[uid] <= 0 {
		delete(s.byUID, uid)
	}
	s.total--
}

// Serve answers on ln until ctx is done. Accepting never waits for a slot:
// a client over its share is told so at once and disconnected, so clients
// that stall (each bounded by Timeout) cannot queue the others behind them.
func (q *Showq) Serve(ctx context.Context, ln net.Listener) error {
	timeout := q.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors (EMFILE) and the like pass: a mailq must
			// never stop the daemon, whose errgroup this runs in.
			select {
			case <-time.After(100 * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		// Not waited for at shutdown: a listing ends with ctx, or at its
		// deadline for a client that stopped reading.
		go func() {
			defer c.Close()
			// Socket deadlines are wall-clock times (the net poller's).
			c.SetDeadline(time.Now().Add(timeout))
			// A peer whose credentials cannot be read (not a Unix socket)
			// shares one account, -1, with every other such peer.
			uid := -1
			if cred, err := unixsock.Peer(c); err == nil {
				uid = cred.UID
			}
			if q.Unlimited == nil || !q.Unlimited(uid) {
				ok, why := q.slots.take(uid)
				if !ok {
					fmt.Fprintf(c, "%s%s\n", ShowqBusy, why)
					return
				}
				defer q.slots.release(uid)
			}
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			q.write(cctx, c)
		}()
	}
}

// write streams the listing a page of the queue at a time, as GET /queue
// does: a large queue holds no memory here and the first lines leave at
// once.
func (q *Showq) write(ctx context.Context, c net.Conn) {
	bw := bufio.NewWriter(c)
	defer bw.Flush()
	if err := WriteListing(ctx, q.Store, q.Decorate, bw, 0); err != nil {
		fmt.Fprintf(bw, "mailq: reading the queue: %v\n", err)
	}
}
