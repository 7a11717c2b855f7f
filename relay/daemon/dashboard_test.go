package daemon

import (
	"testing"

	"facteur/relay/cluster"
)

// TestDashboardClusterSource: the dashboard's overview reads the fleet
// link from the daemon's cluster, as `facteur status` does, and nothing
// when no cluster is configured. The link is never started here (no Redis
// needed): a link that never came up is down.
func TestDashboardClusterSource(t *testing.T) {
	if c := (dashSource{&daemon{}}).Cluster(); c != nil {
		t.Errorf("single node: %+v, want nil", c)
	}
	cl, err := cluster.New(cluster.Options{Redis: []string{"127.0.0.1:1"}, Node: "mx1"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := (dashSource{&daemon{cluster: cl}}).Cluster()
	if c == nil || c.Node != "mx1" || c.Up || c.Nodes == nil {
		t.Errorf("cluster: %+v, want node mx1, down, nodes []", c)
	}
}
