package cluster_test

import (
	"testing"
	"time"

	"facteur/relay/breaker"
	"facteur/relay/cluster"
	"facteur/relay/relaytest"
)

type brkNode struct {
	*node
	b *breaker.Breaker
}

func newBrkNode(t *testing.T, r *relaytest.Redis, name string) *brkNode {
	t.Helper()
	n := newNode(t, r, name, "127.0.0.2", false)
	b := breaker.New(breaker.Config{Window: time.Hour, MinRecipients: 4, MaxFailed: 0.25, MaxDeferred: 0.5, Per: []string{breaker.PerUser}})
	n.c.SetBreakerHandler(&cluster.BreakerNode{B: b})
	n.start()
	return &brkNode{node: n, b: b}
}

// trip makes user trip at n and tells the fleet, as the daemon does.
func (n *brkNode) trip(t *testing.T, user string) breaker.Key {
	t.Helper()
	now := time.Now()
	var trips []breaker.Trip
	for i := range 4 {
		trips = append(trips, n.b.Observe(breaker.Outcome{Sender: breaker.Sender{User: user}, ID: "q", Rcpt: string(rune('a'+i)) + "@example.org",
			Status: breaker.Bounced, Reply: "550 5.1.1 user unknown", At: now}, now)...)
	}
	if len(trips) != 1 {
		t.Fatalf("%s: %d trips, want 1", user, len(trips))
	}
	n.c.BreakerTripped(trips[0])
	return trips[0].Key
}

func (n *brkNode) stopped(user string) bool {
	_, ok := n.b.Stopped(breaker.Sender{User: user})
	return ok
}

func (n *brkNode) reset(t *testing.T, k breaker.Key) {
	t.Helper()
	if _, err := n.b.Reset(k, time.Now()); err != nil {
		t.Fatal(err)
	}
	n.c.BreakerReset(k)
}

// A trip at one node stops the sender at every node; a reset at any node
// re-arms it everywhere; a node away catches up on both; with Redis down
// a trip stays local and reaches the others when Redis returns.
func TestBreakerShared(t *testing.T) {
	r := relaytest.StartRedis(t)
	a, b := newBrkNode(t, r, "a"), newBrkNode(t, r, "b")
	waitUp(t, a.node, b.node)
	time.Sleep(200 * time.Millisecond) // the subscriptions; a trip before them is caught up on the next return anyway

	k := a.trip(t, "www-data")
	eventually(t, 2*time.Second, "b stops www-data", func() bool { return b.stopped("www-data") })
	if tr := b.b.Tripped(); len(tr) != 1 || tr[0].Node != "a" || tr[0].Recipients != 4 {
		t.Fatalf("b's trips: %+v", tr)
	}
	if b.stopped("alice") {
		t.Fatal("another sender stopped at b")
	}
	b.reset(t, k)
	eventually(t, 2*time.Second, "a re-armed by b's reset", func() bool { return !a.stopped("www-data") })

	// A node starting later loads the trips in force.
	a.trip(t, "bob")
	late := newBrkNode(t, r, "late")
	eventually(t, 3*time.Second, "late node stops bob", func() bool { return late.stopped("bob") })
	// A reset while it is away clears the trip it had learned.
	late.stop()
	a.reset(t, "user=bob")
	late.start()
	eventually(t, 3*time.Second, "late node re-armed bob", func() bool { return !late.stopped("bob") })

	// Redis down: the trip holds at a at once, reaches b on Redis's return.
	r.Kill()
	eventually(t, 3*time.Second, "a sees the link down", func() bool { return !a.c.Up() })
	a.trip(t, "mallory")
	if !a.stopped("mallory") {
		t.Fatal("a lost its local trip with Redis down")
	}
	r.Start()
	eventually(t, 10*time.Second, "b stops mallory after Redis returns", func() bool { return b.stopped("mallory") })
}
