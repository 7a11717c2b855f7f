package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"facteur/queue"
)

// flushEvery is how many messages a listing writes between flushes, after
// the first, which goes out alone.
const flushEvery = 256

// listStream writes a queue listing as it is read: the JSON array
// WriteJSON would write (same bytes), or the mailq text. Its methods may be
// called from the handler and from keepAlive's timer, hence the lock.
type listStream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	text    *QueueText
	started bool
	closed  bool // the handler is done with w: nothing may write to it
	n       int
}

func newListStream(w http.ResponseWriter, text bool) *listStream {
	l := &listStream{w: w}
	if text {
		l.text = &QueueText{W: w}
	}
	return l
}

// listHeadersAfter is how long a listing that has found nothing yet (a
// filtered scan of a large queue without an index) waits before sending
// its headers anyway: the CLI gives up on headers after a few minutes, and
// a slow scan is not a dead daemon.
const listHeadersAfter = 2 * time.Second

// keepAlive sends the headers after d unless the listing has started by
// then; the returned stop must be called before the handler returns.
func (l *listStream) keepAlive(d time.Duration) (stop func()) {
	t := time.AfterFunc(d, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed || l.started {
			return
		}
		l.start()
		if f, ok := l.w.(http.Flusher); ok {
			f.Flush()
		}
	})
	return func() {
		t.Stop()
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
	}
}

// begun reports whether the headers are out (too late for an error status).
func (l *listStream) begun() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.started
}

// start sends the headers; l.mu is held.
func (l *listStream) start() {
	if l.started {
		return
	}
	l.started = true
	if l.text != nil {
		l.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		l.w.Header().Set("Content-Type", "application/json")
	}
	l.w.WriteHeader(http.StatusOK)
}

func (l *listStream) add(m queue.Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.start()
	if l.text != nil {
		l.text.Add(m)
	} else {
		b, err := json.MarshalIndent(m, "  ", "  ")
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if l.n == 0 {
			buf.WriteString("[\n  ")
		} else {
			buf.WriteString(",\n  ")
		}
		buf.Write(b)
		if _, err := l.w.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	l.n++
	if l.n == 1 || l.n%flushEvery == 0 {
		if f, ok := l.w.(http.Flusher); ok {
			f.Flush()
		}
	}
	return nil
}

func (l *listStream) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.start()
	switch {
	case l.text != nil:
		l.text.End()
	case l.n == 0:
		l.w.Write([]byte("[]\n"))
	default:
		l.w.Write([]byte("\n]\n"))
	}
}
