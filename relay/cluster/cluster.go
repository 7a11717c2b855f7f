package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"facteur/relay/maillog"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"facteur/relay/clock"
)

// Options configure a Cluster.
type Options struct {
	// Redis is one address, the Sentinels' (with MasterName), or a Redis
	// Cluster's nodes.
	Redis      []string
	MasterName string
	Password   string
	TLS        bool
	Node       string // this node's name, unique in the fleet
	Prefix     string // of every key, "facteur:"
	// Lease is the connection-lease period: a node that dies frees its
	// slots within it. Leases are renewed every third of it.
	Lease time.Duration
	// SourceIP is the address this node sends from ("" any): rates,
	// connections and IP-scoped suspensions are shared per source IP.
	SourceIP string
	// Timeout bounds each call on the delivery or SMTP path (default
	// 250ms): a hung Redis must not hold mail.
	Timeout time.Duration
	// Heartbeat is how often the node says it is alive and checks the link
	// (default 1s). A node is alive while its heartbeat is younger than
	// five of them.
	Heartbeat time.Duration
	Log       *slog.Logger
	// Clock judges the news read back from Redis (expired or in force);
	// clock.Real when nil. The heartbeat, lease renewals and call
	// timeouts are network timing against Redis's own clock (its TTLs run
	// in real time) and stay on the wall clock.
	Clock clock.Clock
}

// Cluster is this node's link to the fleet. Its methods are safe for
// concurrent use; New starts nothing, Run does the background work.
type Cluster struct {
	o   Options
	rdb redis.UniversalClient
	log *slog.Logger

	up    atomic.Bool
	alive atomic.Int64 // nodes seen alive at the last heartbeat, at least 1

	mu      sync.Mutex        // guards all below
	nodes   []Node            // as of the last heartbeat
	leases  map[string]string // lease member → Redis key, held now
	local   map[string]int    // budget key → connections open from this node
	share   map[string]*shareLimiter
	pending []func(ctx context.Context) error // learned while down, in order
	seq     uint64
	handler Handler
	brk     BreakerHandler
	lastErr string

	// kick wakes the link loop (a call failed: check the link now).
	kick chan struct{}
}

// shareLimiter is the local fallback rate of one budget key while Redis is
// down: the shared rate divided by the nodes that were alive.
type shareLimiter struct {
	lim      *rate.Limiter
	interval time.Duration
	nodes    int64
}

// Node is one node of the fleet as the heartbeats show it.
type Node struct {
	Name string        `json:"name"`
	Age  time.Duration `json:"-"`
	// AgeSeconds is the age of its last heartbeat.
	AgeSeconds float64 `json:"heartbeat_age_seconds"`
	Alive      bool    `json:"alive"`
}

// Handler receives what other nodes learned. Calls come from Run's
// goroutines, one at a time per kind.
type Handler interface {
	// Reputation applies another node's suspension, throttle or backoff
	// (only those whose scope holds for this node arrive), or a resume.
	Reputation(ctx context.Context, r Reputation)
	// Suppression applies another node's add (entry is the queue's JSON of
	// the entry) or remove.
	Suppression(ctx context.Context, add bool, addr string, entry []byte) error
	// Cursor and SaveCursor keep the position in the suppression stream
	// across restarts, so that a node catches up on start.
	Cursor(ctx context.Context) (string, error)
	SaveCursor(ctx context.Context, id string) error
}

// New returns a cluster link for o; it connects lazily.
func New(o Options) (*Cluster, error) {
	if len(o.Redis) == 0 {
		return nil, errors.New("cluster: no redis address")
	}
	if o.Node == "" {
		return nil, errors.New("cluster: no node name")
	}
	if o.Prefix == "" {
		o.Prefix = "facteur:"
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = time.Second
	}
	if o.SourceIP == "" {
		o.SourceIP = "any"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	silenceRedisLog()
	uo := &redis.UniversalOptions{
		Addrs:      o.Redis,
		MasterName: o.MasterName,
		Password:   o.Password,
		ClientName: "facteur-" + o.Node,
		// Short timeouts everywhere: a slow Redis is a down Redis for
		// mail, which falls back to the node's share.
		DialTimeout:  o.Timeout * 2,
		ReadTimeout:  o.Timeout,
		WriteTimeout: o.Timeout,
		PoolTimeout:  o.Timeout,
		MaxRetries:   -1, // a retry would double the wait; the link loop retries
		PoolSize:     32,
	}
	if o.TLS {
		uo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c := &Cluster{o: o, rdb: redis.NewUniversalClient(uo), log: o.Log,
		leases: map[string]string{}, local: map[string]int{}, share: map[string]*shareLimiter{},
		kick: make(chan struct{}, 1)}
	c.alive.Store(1)
	return c, nil
}

// SetHandler sets who receives the other nodes' news; call it before Run.
func (c *Cluster) SetHandler(h Handler) {
	c.mu.Lock()
	c.handler = h
	c.mu.Unlock()
}

// Node is this node's name; SourceIP the address its shared keys use.
func (c *Cluster) Node() string     { return c.o.Node }
func (c *Cluster) SourceIP() string { return c.o.SourceIP }

// Up reports whether the link to Redis is up.
func (c *Cluster) Up() bool { return c.up.Load() }

// Close closes the Redis client.
func (c *Cluster) Close() error { return c.rdb.Close() }

func (c *Cluster) key(parts ...string) string {
	k := c.o.Prefix
	for i, p := range parts {
		if i > 0 {
			k += "|"
		}
		k += p
	}
	return k
}

// callCtx bounds one call on the mail path.
func (c *Cluster) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.o.Timeout)
}

// failed notes a failed call: the link is down until a ping says
// otherwise. redis.Nil is no failure.
func (c *Cluster) failed(err error) {
	if err == nil || errors.Is(err, redis.Nil) {
		return
	}
	c.setUp(false, err)
}

func (c *Cluster) setUp(up bool, err error) {
	if c.up.Swap(up) == up {
		return
	}
	if up {
		c.log.Info(maillog.ClusterUp, "node", c.o.Node, "redis", fmt.Sprint(c.o.Redis), "nodes_alive", c.alive.Load())
		select {
		case c.kick <- struct{}{}:
		default:
		}
		return
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	c.mu.Lock()
	c.lastErr = msg
	c.mu.Unlock()
	c.log.Warn(maillog.ClusterDown, "node", c.o.Node, "redis", fmt.Sprint(c.o.Redis), "err", msg,
		"nodes_alive", c.alive.Load(), "fallback", "this node's share of each shared limit")
}

// Run keeps the link: heartbeat and link check, lease renewal, the
// suppression stream and the reputation channel, pushing what was learned
// while Redis was down when it returns. It returns when ctx is done.
func (c *Cluster) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); c.linkLoop(ctx) }()
	go func() { defer wg.Done(); c.breakerLoop(ctx) }()
	go func() { defer wg.Done(); c.suppLoop(ctx) }()
	go func() { defer wg.Done(); c.repLoop(ctx) }()
	wg.Wait()
	// Free this node's slots at once on a clean stop; kill -9 waits for
	// the leases to expire.
	c.mu.Lock()
	held := make(map[string]string, len(c.leases))
	for m, k := range c.leases {
		held[m] = k
	}
	c.mu.Unlock()
	if c.Up() && len(held) > 0 {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		pipe := c.rdb.Pipeline()
		for m, k := range held {
			pipe.ZRem(cctx, k, m)
		}
		_, _ = pipe.Exec(cctx)
		cancel()
	}
	return nil
}

// heartbeat: HSET the node's Redis-clock time and read every node's.
var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now)
local all = redis.call('HGETALL', KEYS[1])
local out = {now}
for i = 1, #all, 2 do
  local age = now - tonumber(all[i+1])
  if age > tonumber(ARGV[2]) then
    redis.call('HDEL', KEYS[1], all[i])
  else
    table.insert(out, all[i])
    table.insert(out, age)
  end
end
return out
`)

func (c *Cluster) linkLoop(ctx context.Context) {
	renewEvery := c.o.Lease / 3
	lastRenew := time.Time{}
	t := time.NewTicker(c.o.Heartbeat)
	defer t.Stop()
	for {
		c.beat(ctx)
		if c.Up() {
			c.flush(ctx)
			// Half a heartbeat early is on time: this runs at ticks, and at
			// the tick that is due the time since lastRenew (taken after
			// the last renewal) falls a little short of renewEvery; the
			// renewal then came one tick late, at two thirds of the lease
			// with the lease three heartbeats long, leaving a stalled
			// heartbeat between a lease held and one lost to another node.
			if time.Since(lastRenew) >= renewEvery-c.o.Heartbeat/2 {
				if c.renew(ctx) == nil {
					lastRenew = time.Now()
				}
			}
		} else {
			lastRenew = time.Time{} // renew (and so register) at once on return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
	}
}

func (c *Cluster) aliveWindow() time.Duration { return 5 * c.o.Heartbeat }

func (c *Cluster) beat(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, c.o.Timeout*2)
	defer cancel()
	res, err := heartbeatScript.Run(cctx, c.rdb, []string{c.key("nodes")}, c.o.Node, time.Hour.Milliseconds()).Slice()
	if err != nil {
		if ctx.Err() == nil {
			c.setUp(false, err)
		}
		return
	}
	var nodes []Node
	alive := int64(0)
	for i := 1; i+1 < len(res); i += 2 {
		name, _ := res[i].(string)
		age, _ := res[i+1].(int64)
		n := Node{Name: name, Age: time.Duration(age) * time.Millisecond}
		n.AgeSeconds = n.Age.Seconds()
		n.Alive = n.Age < c.aliveWindow()
		if n.Alive {
			alive++
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	c.mu.Lock()
	c.nodes = nodes
	c.mu.Unlock()
	c.alive.Store(max(alive, 1))
	c.setUp(true, nil)
}

// pushOrLater sends news to Redis now, or, with the link down or the call
// failing, keeps it for flush when the link returns.
func (c *Cluster) pushOrLater(push func(ctx context.Context) error) {
	if !c.Up() {
		c.later(push)
		return
	}
	ctx, cancel := c.callCtx()
	defer cancel()
	if err := push(ctx); err != nil {
		c.failed(err)
		c.later(push)
	}
}

// publishLater changes the topic's hash (stage) and announces msg on the
// topic's channel in one transaction, now or when the link returns. The
// breaker's and the reputation news travel this one way, so that a node
// catching up from the hash never misses what the channel said.
func (c *Cluster) publishLater(topic string, msg []byte, stage func(ctx context.Context, pipe redisPipe) error) {
	c.pushOrLater(func(ctx context.Context) error {
		pipe := c.rdb.TxPipeline()
		if err := stage(ctx, pipe); err != nil {
			return err
		}
		pipe.Publish(ctx, c.key(topic, "ch"), msg)
		_, err := pipe.Exec(ctx)
		return err
	})
}

// subscribe listens to the topic's channel and waits for Redis to confirm;
// on failure it reports the link failed, pauses, and returns nil for the
// caller's loop to start over. The breaker and reputation loops share it.
func (c *Cluster) subscribe(ctx context.Context, topic string) *redis.PubSub {
	ps := c.rdb.Subscribe(ctx, c.key(topic, "ch"))
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		c.failed(err)
		c.pause(ctx)
		return nil
	}
	return ps
}

// follow hands each message of a subscribed channel to apply until ctx
// ends, the channel closes, or a heartbeat finds the link down (the caller
// then subscribes again and catches up). tick, when set, runs at the other
// heartbeats; false from it ends the following too. The breaker and the
// reputation channels are followed this one way.
func (c *Cluster) follow(ctx context.Context, ch <-chan *redisMessage, tick func() bool, apply func(payload []byte)) {
	check := time.NewTicker(c.o.Heartbeat)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			if !c.Up() {
				return
			}
			if tick != nil && !tick() {
				return
			}
		case m, ok := <-ch:
			if !ok {
				return
			}
			apply([]byte(m.Payload))
		}
	}
}

// later keeps fn, which failed or could not be tried with the link down,
// to run when it comes back.
func (c *Cluster) later(fn func(ctx context.Context) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	const maxPending = 100000
	if len(c.pending) >= maxPending {
		c.pending = c.pending[1:] // the oldest news goes first; the bbolt copy keeps it locally
	}
	c.pending = append(c.pending, fn)
}

// flush pushes what was learned while the link was down, in order.
func (c *Cluster) flush(ctx context.Context) {
	for {
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.mu.Unlock()
			return
		}
		fn := c.pending[0]
		c.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, c.o.Timeout*4)
		err := fn(cctx)
		cancel()
		if err != nil {
			c.failed(err)
			return
		}
		c.mu.Lock()
		c.pending = c.pending[1:]
		c.mu.Unlock()
	}
}

// Status is what `facteur status` shows of the cluster.
type Status struct {
	Node     string   `json:"node"`
	Redis    []string `json:"redis"`
	SourceIP string   `json:"source_ip"`
	Up       bool     `json:"up"`
	LastErr  string   `json:"last_error,omitempty"`
	Nodes    []Node   `json:"nodes"`
	// Alive is the number of nodes the shares are computed over.
	Alive   int64 `json:"alive"`
	Pending int   `json:"pending"`
}

// Status returns the link's state.
func (c *Cluster) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Node: c.o.Node, Redis: c.o.Redis, SourceIP: c.o.SourceIP, Up: c.Up(), Nodes: append([]Node{}, c.nodes...),
		Alive: c.alive.Load(), Pending: len(c.pending)}
	if !st.Up {
		st.LastErr = c.lastErr
	}
	return st
}

func (c *Cluster) nextMember() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	// The wall clock only makes the ID unique across restarts.
	return c.o.Node + ":" + strconv.FormatUint(c.seq, 36) + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)
}
