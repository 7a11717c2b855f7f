package cluster_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/cluster"
	"facteur/relay/relaytest"
	"facteur/relay/scheduler"
)

// node is one facteur node's cluster parts: its link, a real policy engine
// and a real queue store.
type node struct {
	c      *cluster.Cluster
	e      *policy.Engine
	store  *queue.Store
	shaper scheduler.EngineShaper
	cancel context.CancelFunc
	done   chan struct{}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newNode(t *testing.T, r *relaytest.Redis, name, ip string, run bool) *node {
	t.Helper()
	return newNodeTimeout(t, r, name, ip, run, time.Second)
}

// newNodeTimeout is newNode with the Redis call timeout given. The tests'
// nodes allow a second: under -race, with every package's tests running
// at once on two cores, a call to a healthy Redis took over the 150 ms
// they had, the link went down for a heartbeat, and news missed a test's
// deadline (TestReputationScope in CI). TestRedisHung wants it short.
func newNodeTimeout(t *testing.T, r *relaytest.Redis, name, ip string, run bool, timeout time.Duration) *node {
	t.Helper()
	c, err := cluster.New(cluster.Options{Redis: []string{r.Addr}, Node: name, Prefix: "t:", Lease: 600 * time.Millisecond,
		SourceIP: ip, Heartbeat: 100 * time.Millisecond, Timeout: timeout, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	e := policy.NewEngine(p)
	st, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{c: c, e: e, store: st, shaper: scheduler.EngineShaper{E: e, Fleet: c}, done: make(chan struct{})}
	c.SetHandler(&cluster.NodeHandler{Store: st, Engine: e, Log: quiet()})
	st.OnSuppression(c.Hook())
	if run {
		n.start()
	} else {
		close(n.done)
	}
	t.Cleanup(func() { n.stop(); c.Close(); st.Close() })
	return n
}

func (n *node) start() {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() { defer close(n.done); n.c.Run(ctx) }()
}

func (n *node) stop() {
	if n.cancel != nil {
		n.cancel()
	}
	<-n.done
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond) // polling a real event (Redis, another node), with a deadline
	}
	t.Fatalf("%s: not within %s", what, d)
	return 0
}

func waitUp(t *testing.T, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		eventually(t, 3*time.Second, n.c.Node()+" link up", n.c.Up)
	}
}

// The rate of a (source IP, provider) holds for all the nodes sending
// from that IP together: 30 messages through three nodes at one per 10ms
// take at least 290ms; a node with another IP has its own rate.
func TestSharedRate(t *testing.T) {
	r := relaytest.StartRedis(t)
	a, b, c := newNode(t, r, "a", "127.0.0.2", true), newNode(t, r, "b", "127.0.0.2", true), newNode(t, r, "c", "127.0.0.2", true)
	d := newNode(t, r, "d", "127.0.0.9", true)
	waitUp(t, a, b, c, d)
	const interval = 10 * time.Millisecond
	nodes := []*node{a, b, c}
	var mu sync.Mutex
	var grants []time.Time
	var wg sync.WaitGroup
	start := time.Now()
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if len(grants) >= 30 {
					mu.Unlock()
					return
				}
				mu.Unlock()
				ok, at := n.c.Allow("yahoo", interval, time.Now())
				if ok {
					mu.Lock()
					grants = append(grants, time.Now())
					mu.Unlock()
					continue
				}
				time.Sleep(time.Until(at)) // the rate's own answer: when the next token is
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// A few grants may land past 30 (three nodes racing): count them all.
	if min := time.Duration(len(grants)-1) * interval; elapsed < min {
		t.Fatalf("%d messages in %s over three nodes: faster than one per %s (want >= %s)", len(grants), elapsed, interval, min)
	}
	// Another IP is not held by this one's rate.
	if ok, _ := d.c.Allow("yahoo", time.Hour, time.Now()); !ok {
		t.Fatal("node d (another source IP) refused its first message")
	}
	if ok, _ := d.c.Allow("yahoo", time.Hour, time.Now()); ok {
		t.Fatal("node d: a second message within its own hour-long interval went")
	}
}

// Connection leases: a provider's `connections: 2` holds for the nodes of
// one IP together; a node killed while holding leases frees them within a
// lease period.
func TestLeases(t *testing.T) {
	r := relaytest.StartRedis(t)
	a, b := newNode(t, r, "a", "127.0.0.2", true), newNode(t, r, "b", "127.0.0.2", true)
	other := newNode(t, r, "o", "127.0.0.3", true)
	waitUp(t, a, b, other)
	rel1, ok1 := a.c.Acquire("yahoo", 2)
	rel2, ok2 := b.c.Acquire("yahoo", 2)
	if !ok1 || !ok2 {
		t.Fatal("the first two connections were refused")
	}
	if _, ok := a.c.Acquire("yahoo", 2); ok {
		t.Fatal("a third connection from the same IP was allowed")
	}
	if _, ok := other.c.Acquire("yahoo", 2); !ok {
		t.Fatal("another IP was refused by this IP's connections")
	}
	if n := a.c.Connections("yahoo"); n != 2 {
		t.Fatalf("cluster connections = %d, want 2", n)
	}
	rel1()
	// The release reaches Redis one round trip later, off the worker's path.
	var rel func()
	eventually(t, time.Second, "a released slot reusable by another node", func() bool {
		var ok bool
		rel, ok = b.c.Acquire("yahoo", 2)
		return ok
	})
	rel()
	rel2()

	// A node that dies holding leases (no renewal, no release: its Run
	// stops and its leases are left): the others get its slots within a
	// lease period, while leases that are renewed live on.
	dead := newNode(t, r, "dead", "127.0.0.2", true)
	waitUp(t, dead)
	for i := 0; i < 2; i++ {
		if _, ok := dead.c.Acquire("free", 2); !ok {
			t.Fatal("the soon-dead node got no slot")
		}
	}
	// kill -9: the client goes away with no release.
	dead.c.Close()
	dead.stop()
	if _, ok := a.c.Acquire("free", 2); ok {
		t.Fatal("slots held by the dead node were given out")
	}
	took := eventually(t, 3*time.Second, "the dead node's slots freed", func() bool {
		_, ok := a.c.Acquire("free", 2)
		return ok
	})
	if took > 1200*time.Millisecond {
		t.Fatalf("freed after %s, lease is 600ms", took)
	}
	// a's lease is renewed by its Run: held past several lease periods.
	start := time.Now()
	for time.Since(start) < 1500*time.Millisecond {
		if _, ok := b.c.Acquire("free", 1); ok {
			t.Fatal("a live node's renewed lease expired")
		}
		time.Sleep(100 * time.Millisecond) // sampling the lease over its periods
	}
}

// A lease is renewed every third of its period ("Leases are renewed every
// third of it"), so that it keeps two thirds in hand: a heartbeat that
// stalls for one period does not let another node take the slot of a
// connection still open. With a 3 s lease and 1 s heartbeats the renewal
// came at every other heartbeat, leaving a lease 1 s from expiry.
func TestLeaseRenewedEveryThird(t *testing.T) {
	r := relaytest.StartRedis(t)
	const lease, beat = 3 * time.Second, time.Second
	c, err := cluster.New(cluster.Options{Redis: []string{r.Addr}, Node: "a", Prefix: "t:", Lease: lease,
		SourceIP: "127.0.0.2", Heartbeat: beat, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{c: c}
	n.start()
	t.Cleanup(func() { n.stop(); c.Close() })
	waitUp(t, n)
	release, ok := c.Acquire("yahoo", 2)
	if !ok {
		t.Fatal("no slot")
	}
	defer release()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	// The least time the lease had left, over more than a lease period,
	// read on Redis's clock as the lease script writes it.
	least := lease
	start := time.Now()
	for time.Since(start) < lease+3*beat/2 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		leases, err := rdb.ZRangeWithScores(ctx, "t:conn|127.0.0.2|yahoo", 0, -1).Result()
		now, terr := rdb.Time(ctx).Result()
		cancel()
		if err != nil || terr != nil || len(leases) != 1 {
			t.Fatalf("leases %v: %v %v", leases, err, terr)
		}
		left := time.Duration(int64(leases[0].Score)-now.UnixMilli()) * time.Millisecond
		least = min(least, left)
		time.Sleep(20 * time.Millisecond) // sampling the lease over its period
	}
	// Renewed each heartbeat, it keeps about two thirds (2 s); renewed
	// every other, one third (1 s). The middle leaves half a heartbeat
	// either way for a loaded machine.
	if least < lease/2 {
		t.Fatalf("the lease had %s left at the least, want at least %s: renewed every %s or more", least, lease/2, lease-least)
	}
	t.Logf("the lease kept %s of %s at the least", least, lease)
}

func reply(t *testing.T, s string) policy.Reply {
	t.Helper()
	r, err := policy.ParseReply(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A [TSS04] learned at one node suspends Yahoo at the nodes sending from
// the same IP within 2 s, not at a node with another IP; a domain or
// provider scope holds everywhere; an operator's resume too.
func TestReputationScope(t *testing.T) {
	r := relaytest.StartRedis(t)
	a, b, c := newNode(t, r, "a", "127.0.0.2", true), newNode(t, r, "b", "127.0.0.2", true), newNode(t, r, "c", "127.0.0.2", true)
	d := newNode(t, r, "d", "127.0.0.9", true)
	waitUp(t, a, b, c, d)
	now := time.Now()
	v := b.shaper.Observe("", "", "yahoo", "yahoo.fr", reply(t, "421 4.7.0 [TSS04] Messages from 127.0.0.2 temporarily deferred due to unexpected volume or user complaints"), now)
	if v.Decision.Action != policy.Suspend {
		t.Fatalf("TSS04 judged %s, want suspend", v.Decision.Action)
	}
	for _, n := range []*node{a, c} {
		took := eventually(t, 2*time.Second, n.c.Node()+" suspended", func() bool {
			until, _ := n.e.SuspendedUntilFrom("", "yahoo", "yahoo.fr", time.Now())
			ok := !until.IsZero()
			return ok
		})
		t.Logf("%s suspended %s after b's reply", n.c.Node(), took)
		if n.shaper.Acquire("", "yahoo", "yahoo.fr", time.Now()).OK {
			t.Fatalf("%s opened a connection to a suspended yahoo", n.c.Node())
		}
	}
	// The scope is shown.
	for _, ps := range a.e.Snapshot(time.Now()) {
		if ps.Name == "yahoo" && (ps.Scope == nil || *ps.Scope != policy.ScopeIP) {
			t.Fatalf("yahoo scope = %v, want ip", ps.Scope)
		}
	}
	// d, another IP: a moment later, still free.
	eventually(t, 2*time.Second, "a second news reaches d", func() bool {
		a.shaper.Observe("", "example.com", "gmail", "gmail.com", reply(t, "550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy"), time.Now())
		return true
	})
	if until, _ := d.e.SuspendedUntilFrom("", "yahoo", "yahoo.fr", time.Now()); !until.IsZero() {
		t.Fatal("node d, sending from another IP, was suspended by a block on 127.0.0.2")
	}

	// An operator's resume at a reaches the others.
	ev, err := a.e.Resume("yahoo", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.c.Resumed("yahoo", "yahoo", time.Now())
	_ = ev
	eventually(t, 2*time.Second, "c resumed", func() bool {
		until, _ := c.e.SuspendedUntilFrom("", "yahoo", "yahoo.fr", time.Now())
		ok := !until.IsZero()
		return !ok
	})

	// A node starting later catches up on what is in force.
	b.shaper.Observe("", "", "yahoo", "yahoo.fr", reply(t, "421 4.7.0 [TSS04] Messages from 127.0.0.2 temporarily deferred"), time.Now())
	late := newNode(t, r, "late", "127.0.0.2", true)
	eventually(t, 10*time.Second, "a late node catches up", func() bool {
		until, _ := late.e.SuspendedUntilFrom("", "yahoo", "yahoo.fr", time.Now())
		ok := !until.IsZero()
		return ok
	})
}

// A reply about the sender domain learned at one node holds that sender
// domain's mail at the provider on every node (whatever its IP), and only
// that domain's: the provider and the other sender domains stay free.
func TestSenderDomainScopeAcrossNodes(t *testing.T) {
	r := relaytest.StartRedis(t)
	a, c := newNode(t, r, "a", "127.0.0.2", true), newNode(t, r, "c", "127.0.0.3", true)
	waitUp(t, a, c)
	p, err := policy.Parse("hold.yaml", []byte(`
providers:
  google:
    rules:
      - {name: dmarc-hold, enhanced: 5.7.26, class: auth_failure, action: suspend, duration: 1h}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{a, c} {
		n.e.Swap(p, time.Now())
	}
	v := a.shaper.Observe("", "bad.example", "google", "gmail.com", reply(t, "550 5.7.26 Unauthenticated email from bad.example is not accepted due to domain's DMARC policy"), time.Now())
	if v.Decision.Action != policy.Suspend || len(v.Events) != 1 || v.Events[0].SenderDomain != "bad.example" {
		t.Fatalf("verdict %+v", v)
	}
	took := eventually(t, 2*time.Second, "c holds bad.example", func() bool {
		until, _ := c.e.SenderHeld("bad.example", "google", "gmail.com", time.Now())
		ok := !until.IsZero()
		return ok
	})
	t.Logf("c held bad.example %s after a's reply", took)
	if until, _ := c.e.SenderHeld("good.example", "google", "gmail.com", time.Now()); !until.IsZero() {
		t.Fatal("c holds good.example's mail too")
	}
	for _, n := range []*node{a, c} {
		if until, _ := n.e.SuspendedUntilFrom("", "google", "gmail.com", time.Now()); !until.IsZero() {
			t.Fatalf("%s suspended google as a whole for one sender domain", n.c.Node())
		}
		adm := n.shaper.Acquire("", "google", "gmail.com", time.Now())
		rel, ok, why := adm.Release, adm.OK, adm.Why
		if !ok {
			t.Fatalf("%s: no connection to google: %s", n.c.Node(), why)
		}
		rel()
	}
}

func sup(addr string) queue.Suppression {
	now := time.Now()
	return queue.Suppression{Address: addr, Reason: "user_unknown", Response: "550 5.1.1 no such user", Source: queue.SourceSMTP, FirstSeen: now, LastSeen: now}
}

func suppressed(n *node, addr string) bool {
	_, ok, _ := n.store.Suppressed(context.Background(), addr, time.Now())
	return ok
}

// A suppression learned on one node is in every node's bbolt copy within
// 2 s; a removal too; a node starting later (or restarting) catches up.
func TestSuppressionPropagation(t *testing.T) {
	r := relaytest.StartRedis(t)
	a, c := newNode(t, r, "a", "127.0.0.2", true), newNode(t, r, "c", "127.0.0.3", true)
	waitUp(t, a, c)
	ctx := context.Background()
	// Let both follow the stream before the first change.
	time.Sleep(200 * time.Millisecond) // the followers' first XREAD; a change before it is caught up anyway
	if _, err := a.store.Suppress(ctx, sup("gone@example.org")); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 2*time.Second, "c has a's suppression", func() bool { return suppressed(c, "gone@example.org") })
	t.Logf("suppression reached c in %s", took)
	if _, err := c.store.Unsuppress(ctx, "gone@example.org"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "a has c's removal", func() bool { return !suppressed(a, "gone@example.org") })

	// A node that starts from nothing loads the list; one that restarts
	// catches up on what it missed from its cursor.
	if _, err := a.store.Suppress(ctx, sup("old@example.org")); err != nil {
		t.Fatal(err)
	}
	late := newNode(t, r, "late", "127.0.0.4", true)
	eventually(t, 3*time.Second, "late node loads the list", func() bool { return suppressed(late, "old@example.org") })
	c.stop()
	if _, err := a.store.Suppress(ctx, sup("missed@example.org")); err != nil {
		t.Fatal(err)
	}
	c.start()
	eventually(t, 3*time.Second, "restarted node catches up", func() bool { return suppressed(c, "missed@example.org") })
}

// Redis killed: mail goes on at each node's share (no call holds for
// more than a fraction of a second), what is learned meanwhile reaches
// the others within 10 s of Redis's return.
func TestRedisDown(t *testing.T) {
	r := relaytest.StartRedis(t)
	a, c := newNode(t, r, "a", "127.0.0.2", true), newNode(t, r, "c", "127.0.0.2", true)
	waitUp(t, a, c)
	eventually(t, 3*time.Second, "two nodes alive", func() bool { return a.c.Status().Alive == 2 })
	r.Kill()
	// The first call after the kill notices; none waits long.
	start := time.Now()
	a.c.Allow("yahoo", time.Millisecond, time.Now())
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("a call to a dead Redis took %s", d)
	}
	eventually(t, 2*time.Second, "a sees the link down", func() bool { return !a.c.Up() })
	// The share: connections 4 over 2 nodes alive = 2.
	var rels []func()
	for i := 0; i < 2; i++ {
		rel, ok := a.c.Acquire("yahoo", 4)
		if !ok {
			t.Fatalf("connection %d of the node's share refused", i+1)
		}
		rels = append(rels, rel)
	}
	if _, ok := a.c.Acquire("yahoo", 4); ok {
		t.Fatal("a node took more than its share with Redis down")
	}
	// connections 1 over 2 nodes: at least 1.
	if rel, ok := a.c.Acquire("small", 1); !ok {
		t.Fatal("a share of less than one connection gave none")
	} else {
		rel()
	}
	// The rate: one per 20ms shared by two nodes = one per 40ms here.
	n, t0 := 0, time.Now()
	for time.Since(t0) < 400*time.Millisecond {
		if ok, _ := a.c.Allow("rated", 20*time.Millisecond, time.Now()); ok {
			n++
		}
		time.Sleep(2 * time.Millisecond) // sampling the local limiter over a real window
	}
	if n > 400/40+1 {
		t.Fatalf("%d messages in 400ms with Redis down: more than the node's share (one per 40ms)", n)
	}
	if n == 0 {
		t.Fatal("no message went with Redis down")
	}
	// Learned while down, kept locally, pushed on return.
	if _, err := a.store.Suppress(context.Background(), sup("down@example.org")); err != nil {
		t.Fatal(err)
	}
	if !suppressed(a, "down@example.org") {
		t.Fatal("the local copy lost a suppression learned while Redis was down")
	}
	r.Start()
	back := time.Now()
	eventually(t, 10*time.Second, "c has the suppression learned while down", func() bool { return suppressed(c, "down@example.org") })
	t.Logf("pushed %s after Redis's return", time.Since(back))
	for _, rel := range rels {
		rel()
	}
	if !a.c.Up() {
		t.Fatal("link not up again")
	}
}

// A hung Redis (SIGSTOP: connections open, no answer) holds no call for
// more than a fraction of a second.
func TestRedisHung(t *testing.T) {
	r := relaytest.StartRedis(t)
	a := newNodeTimeout(t, r, "a", "127.0.0.2", true, 150*time.Millisecond)
	waitUp(t, a)
	r.Stop()
	defer r.Cont()
	for i := 0; i < 3; i++ {
		start := time.Now()
		a.c.Allow("yahoo", time.Millisecond, time.Now())
		rel, _ := a.c.Acquire("yahoo", 2)
		if rel != nil {
			rel()
		}
		a.c.Suppressed("x@example.org", []byte(`{}`))
		if d := time.Since(start); d > 800*time.Millisecond {
			t.Fatalf("calls to a hung Redis took %s", d)
		}
	}
	if a.c.Up() {
		t.Fatal("link still up with Redis hung")
	}
}
