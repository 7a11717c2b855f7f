package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"facteur/queue"
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
}

// showqConcurrency bounds the listings built at once: any local user can
// connect, and each listing reads the whole queue.
const showqConcurrency = 2

// Serve answers on ln until ctx is done.
func (q *Showq) Serve(ctx context.Context, ln net.Listener) error {
	timeout := q.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	sem := make(chan struct{}, showqConcurrency)
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
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			c.Close()
			return nil
		}
		go func() {
			defer func() { <-sem }()
			defer c.Close()
			// Socket deadlines are wall-clock times (the net poller's).
			c.SetDeadline(time.Now().Add(timeout))
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
