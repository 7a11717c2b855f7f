package daemon

import (
	"net/http"
	"sync"

	"facteur/relay/admin"
	"facteur/relay/scheduler"
)

func (d *daemon) recentEvents(w http.ResponseWriter, r *http.Request) {
	admin.WriteJSON(w, http.StatusOK, d.events.list())
}

// eventRing keeps the last delivery events for the admin endpoint and
// `facteur status`.
type eventRing struct {
	mu   sync.Mutex // guards buf and next
	buf  []scheduler.DeliveryEvent
	next int
	full bool
}

func newEventRing(n int) *eventRing { return &eventRing{buf: make([]scheduler.DeliveryEvent, n)} }

func (e *eventRing) add(ev scheduler.DeliveryEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf[e.next] = ev
	e.next = (e.next + 1) % len(e.buf)
	if e.next == 0 {
		e.full = true
	}
}

func (e *eventRing) list() []scheduler.DeliveryEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []scheduler.DeliveryEvent
	if e.full {
		out = append(out, e.buf[e.next:]...)
	}
	out = append(out, e.buf[:e.next]...)
	if out == nil {
		out = []scheduler.DeliveryEvent{}
	}
	return out
}
