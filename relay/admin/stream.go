package admin

import (
	"bytes"
	"encoding/json"
	"net/http"

	"facteur/queue"
)

// flushEvery is how many messages a listing writes between flushes, after
// the first, which goes out alone.
const flushEvery = 256

// listStream writes a queue listing as it is read: the JSON array
// WriteJSON would write (same bytes), or the mailq text.
type listStream struct {
	w       http.ResponseWriter
	text    *QueueText
	started bool
	n       int
}

func newListStream(w http.ResponseWriter, text bool) *listStream {
	l := &listStream{w: w}
	if text {
		l.text = &QueueText{W: w}
	}
	return l
}

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
