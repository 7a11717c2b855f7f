package daemon

import (
	"fmt"
	"log/slog"
	"net"

	"facteur/queue"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/submission"
)

// earlyListeners are the SMTP listeners, bound before the queue is opened (issue 19
// §1): a client connecting while the daemon starts is taken into the kernel's
// backlog and greeted once the daemon serves, instead of being refused. After a
// clean stop the queue opens in milliseconds; after a crash bbolt rebuilds its
// freelist by walking the file first, and the greeting waits for that, which an SMTP
// client does (RFC 5321 §4.5.3.2.1 gives it 5 minutes) where a refused connection
// would send it to its retry schedule. A port in use also fails the start before any
// work.
type earlyListeners map[string]net.Listener

func bindEarly(cfg *config.Config) (earlyListeners, error) {
	e := earlyListeners{}
	addrs := make([]string, 0, len(cfg.Listen)+len(cfg.Submission))
	for _, a := range cfg.Listen {
		addrs = append(addrs, string(a))
	}
	for _, s := range cfg.Submission {
		addrs = append(addrs, string(s.Listen))
	}
	for _, a := range addrs {
		if _, ok := e[a]; ok {
			continue // the same address twice fails at its second use, as before
		}
		ln, err := submission.ListenTCP(a)
		if err != nil {
			e.closeRest()
			return nil, fmt.Errorf("listen %s: %w", a, err)
		}
		e[a] = ln
	}
	return e, nil
}

// listen hands out the listener bound early for addr, once, or binds it now.
func (e earlyListeners) listen(addr string) (net.Listener, error) {
	if ln, ok := e[addr]; ok {
		delete(e, addr)
		return ln, nil
	}
	return submission.ListenTCP(addr)
}

// closeRest closes the listeners not handed out (the start failed before).
func (e earlyListeners) closeRest() {
	for a, ln := range e {
		ln.Close()
		delete(e, a)
	}
}

// closeStore closes the queue at the daemon's stop and, when a large queue drained
// left the file mostly free pages, compacts it then (issue 19 §5): the copy costs what
// is still queued, and the next start opens a file without the dead weight.
func closeStore(store *queue.Store, log *slog.Logger) {
	sparse := store.Sparse()
	if err := store.Close(); err != nil {
		log.Error(maillog.QueueClose, "err", err)
		return
	}
	if !sparse {
		return
	}
	before, after, err := queue.Compact(store.Path(), queue.Options{})
	if err != nil {
		log.Error(maillog.QueueCompaction, "err", err)
		return
	}
	log.Info(maillog.QueueCompacted, "before", before, "after", after)
}
