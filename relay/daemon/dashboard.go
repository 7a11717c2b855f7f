package daemon

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"facteur/policy"
	"facteur/policy/bounce"
	"facteur/queue"
	"facteur/relay/dashboard"
)

// dashboardFront puts the web dashboard (issue 18) in front of the admin
// TCP listener's handler: a browser cannot use the admin socket. The Host
// check accepts the address as configured (a name such as localhost:8025)
// and as bound.
func (d *daemon) dashboardFront(boundAddr string, api http.Handler) http.Handler {
	d.dash.SetHosts(append(dashboard.AllowedHosts(boundAddr), string(d.cfg.Admin)))
	h := d.dash.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && !strings.HasPrefix(r.URL.Path, "/ui/") {
			api.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// dashSource gives the dashboard (issue 18) the daemon's admin data: the
// same store, engine and scheduler the admin API reads.
type dashSource struct{ d *daemon }

func (s dashSource) Stats(ctx context.Context) (queue.Stats, error) { return s.d.store.Stats(ctx) }

// Counts names the provider of destinations not tried yet, as GET
// /providers does, from the domain alone.
func (s dashSource) Counts(ctx context.Context) ([]queue.DestCount, error) {
	cs, err := s.d.store.Counts(ctx)
	for i := range cs {
		if cs[i].Provider == "" {
			cs[i].Provider = s.d.engine.Policy().Recognize(cs[i].Domain, nil)
		}
	}
	return cs, err
}

func (s dashSource) Providers(ctx context.Context, now time.Time) ([]policy.ProviderState, error) {
	return s.d.providerStates(ctx, now)
}

func (s dashSource) Resume(ctx context.Context, name string) error {
	if err := s.d.resumeProvider(ctx, name); err != nil {
		return fmt.Errorf("%w: %w", err, queue.ErrNotFound)
	}
	return nil
}

func (s dashSource) Each(ctx context.Context, after queue.ID, fn func(queue.Message) error) error {
	return s.d.store.EachAfter(ctx, queue.Filter{}, after, func(m queue.Message) error {
		one := []queue.Message{m}
		s.d.decorate(one)
		return fn(one[0])
	})
}

func (s dashSource) Get(ctx context.Context, id queue.ID) (queue.Message, error) {
	m, err := s.d.store.Get(ctx, id)
	if err != nil {
		return m, err
	}
	one := []queue.Message{m}
	s.d.decorate(one)
	return one[0], nil
}

func (s dashSource) Body(ctx context.Context, id queue.ID) ([]byte, error) {
	return s.d.store.Body(ctx, id)
}

func (s dashSource) Hold(ctx context.Context, id queue.ID) error { return s.d.store.Hold(ctx, id) }

// Release makes the message due at once and wakes the scheduler, as the
// admin API's release does.
func (s dashSource) Release(ctx context.Context, id queue.ID) error {
	if err := s.d.store.Release(ctx, id, s.d.clock.Now()); err != nil {
		return err
	}
	_, err := s.d.Flush(ctx, queue.Filter{IDs: []queue.ID{id}})
	return err
}

func (s dashSource) Delete(ctx context.Context, id queue.ID) error { return s.d.store.Delete(ctx, id) }

func (s dashSource) Suppressions(ctx context.Context) ([]queue.Suppression, error) {
	return s.d.store.Suppressions(ctx)
}

func (s dashSource) Unsuppress(ctx context.Context, addr string) (bool, error) {
	return s.d.store.Unsuppress(ctx, addr)
}

// Cluster is the fleet link as `facteur status` reads it (GET /status's
// cluster); nil alone.
func (s dashSource) Cluster() *dashboard.Cluster {
	if s.d.cluster == nil {
		return nil
	}
	st := s.d.cluster.Status()
	c := &dashboard.Cluster{Node: st.Node, Up: st.Up, LastErr: st.LastErr, Pending: st.Pending, Nodes: make([]dashboard.ClusterNode, 0, len(st.Nodes))}
	for _, n := range st.Nodes {
		c.Nodes = append(c.Nodes, dashboard.ClusterNode{Name: n.Name, AgeSeconds: n.AgeSeconds, Alive: n.Alive})
	}
	return c
}

// countComplaints counts each recipient of a feedback report as a
// complaint against the sender of the message it names.
func (d *daemon) countComplaints(ctx context.Context, rep *bounce.Report, now time.Time) {
	if d.tally == nil || rep.Kind != bounce.KindARF {
		return
	}
	id := queue.ID(rep.QueueID)
	var sender, user string
	if id != "" {
		if m, err := d.store.Get(ctx, id); err == nil {
			sender, user = m.Sender, m.User
			if sender == "" {
				sender = "<>"
			}
		}
	}
	for range rep.Recipients {
		d.tally.Complaint(id, sender, user, now)
	}
}
