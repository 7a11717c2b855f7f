package daemon

import (
	"context"
	"time"

	"facteur/policy"
	"facteur/relay/cluster"
)

// wireCluster connects the fleet to this node's engine and queue: the
// others' news in, this node's suppressions out.
func (d *daemon) wireCluster(ctx context.Context) {
	c := d.cluster
	c.SetHandler(&cluster.NodeHandler{Store: d.store, Engine: d.engine, Log: d.log,
		Changed: func(cluster.Reputation) {
			d.savePolicyState(context.WithoutCancel(ctx))
			d.sched.Wake() // a resume frees work; a suspension is read at the next connection
		}})
	d.store.OnSuppression(c.Hook())
}

// clusterResumed tells the others of an operator's resume.
func (d *daemon) clusterResumed(ev policy.Event, now time.Time) {
	if d.cluster == nil {
		return
	}
	key := ev.Provider
	switch {
	case ev.Group != "":
		key = ev.Group
	case ev.Domain != "":
		key = policy.DefaultProvider + ":" + ev.Domain
	}
	name := key
	if ev.Group == "" && ev.Domain == "" {
		name = ev.Provider
	}
	d.cluster.Resumed(name, key, now)
}

// clusterConnections fills cluster_connections of `providers --json`.
func (d *daemon) clusterConnections(states []policy.ProviderState) {
	if d.cluster == nil {
		return
	}
	n := func(provider, domain string) *int {
		bk, _ := d.engine.Keys(provider, domain)
		v := d.cluster.Connections(bk)
		if v < 0 {
			return nil
		}
		return &v
	}
	for i := range states {
		s := &states[i]
		if s.Name != policy.DefaultProvider {
			s.ClusterConnections = n(s.Name, "")
			continue
		}
		for j := range s.Destinations {
			s.Destinations[j].ClusterConnections = n(s.Name, s.Destinations[j].Domain)
		}
	}
}
