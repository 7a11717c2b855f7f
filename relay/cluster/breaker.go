package cluster

import (
	"context"
	"encoding/json"
	"facteur/relay/breaker"
	"facteur/relay/clock"
	"facteur/relay/maillog"
	"time"
)

// The circuit breaker's trips (issue 21 §3) are shared like the provider
// states: a hash (sender key → the trip, JSON) that a starting or
// returning node reads to catch up, and a channel that carries each trip
// and reset as it happens. A reset deletes the hash field, so a node that
// was away when it happened clears, at catch-up, the trips it had learned
// from others that are no longer in the hash.

// BreakerHandler applies the other nodes' trips and resets.
type BreakerHandler interface {
	// BreakerTrip stops t's sender here (t.Node names the node where it
	// tripped).
	BreakerTrip(ctx context.Context, t breaker.Trip)
	// BreakerReset re-arms k here.
	BreakerReset(ctx context.Context, k breaker.Key)
	// BreakerTripped lists the keys tripped here now.
	BreakerTripped() []breaker.Trip
}

type breakerNews struct {
	Node  string        `json:"node"`
	Reset bool          `json:"reset,omitempty"`
	Key   breaker.Key   `json:"sender"`
	Trip  *breaker.Trip `json:"trip,omitempty"`
}

// SetBreakerHandler sets who applies the other nodes' breaker news; call
// it before Run.
func (c *Cluster) SetBreakerHandler(h BreakerHandler) {
	c.mu.Lock()
	c.brk = h
	c.mu.Unlock()
}

// BreakerTripped tells the fleet that t tripped at this node. With the
// link down it is kept and pushed when the link returns.
func (c *Cluster) BreakerTripped(t breaker.Trip) {
	t.Node = c.o.Node
	c.pushBreaker(breakerNews{Node: c.o.Node, Key: t.Key, Trip: &t})
}

// BreakerReset tells the fleet that k was reset at this node.
func (c *Cluster) BreakerReset(k breaker.Key) {
	c.pushBreaker(breakerNews{Node: c.o.Node, Key: k, Reset: true})
}

func (c *Cluster) pushBreaker(n breakerNews) {
	var entry []byte
	if n.Trip != nil {
		var err error
		if entry, err = json.Marshal(n.Trip); err != nil {
			return
		}
	}
	msg, err := json.Marshal(n)
	if err != nil {
		return
	}
	push := func(ctx context.Context) error {
		pipe := c.rdb.TxPipeline()
		if n.Reset {
			pipe.HDel(ctx, c.key("breaker"), string(n.Key))
		} else {
			pipe.HSet(ctx, c.key("breaker"), string(n.Key), entry)
		}
		pipe.Publish(ctx, c.key("breaker", "ch"), msg)
		_, err := pipe.Exec(ctx)
		return err
	}
	c.pushOrLater(push)
}

// breakerLoop follows the breaker channel after catching up on the hash,
// on start and after each return of the link.
func (c *Cluster) breakerLoop(ctx context.Context) {
	for ctx.Err() == nil {
		if !c.waitUp(ctx) {
			return
		}
		c.mu.Lock()
		h := c.brk
		c.mu.Unlock()
		if h == nil {
			return
		}
		ps := c.rdb.Subscribe(ctx, c.key("breaker", "ch"))
		// Subscribe first, then read the hash: nothing published between
		// the two is lost (a duplicate trip or reset is harmless).
		if _, err := ps.Receive(ctx); err != nil {
			ps.Close()
			c.failed(err)
			c.pause(ctx)
			continue
		}
		if !c.catchUpBreaker(ctx, h) {
			ps.Close()
			c.pause(ctx)
			continue
		}
		ch := ps.Channel(redisChannelOpts()...)
		c.followBreaker(ctx, h, ch)
		ps.Close()
	}
}

func (c *Cluster) catchUpBreaker(ctx context.Context, h BreakerHandler) bool {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	all, err := c.rdb.HGetAll(cctx, c.key("breaker")).Result()
	if err != nil {
		c.failed(err)
		return false
	}
	for _, v := range all {
		var t breaker.Trip
		if err := json.Unmarshal([]byte(v), &t); err != nil {
			c.log.Warn(maillog.ClusterBadEntry, "err", err)
			continue
		}
		if t.Node != c.o.Node {
			h.BreakerTrip(ctx, t)
		}
	}
	// A trip learned from another node and no longer in the hash was
	// reset while this node was away.
	for _, t := range h.BreakerTripped() {
		if _, ok := all[string(t.Key)]; !ok && t.Node != "" && t.Node != c.o.Node {
			h.BreakerReset(ctx, t.Key)
		}
	}
	return true
}

func (c *Cluster) followBreaker(ctx context.Context, h BreakerHandler, ch <-chan *redisMessage) {
	check := time.NewTicker(c.o.Heartbeat)
	defer check.Stop()
	ticks := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			if !c.Up() {
				return
			}
			// go-redis resubscribes by itself after a broken connection,
			// and what was published meanwhile is lost even when this
			// node's heartbeat never saw the link down: read the hash
			// again every ten heartbeats (it holds only the senders
			// stopped now, a few entries).
			if ticks++; ticks%10 == 0 && !c.catchUpBreaker(ctx, h) {
				return
			}
		case m, ok := <-ch:
			if !ok {
				return
			}
			var n breakerNews
			if err := json.Unmarshal([]byte(m.Payload), &n); err != nil {
				c.log.Warn(maillog.ClusterBadEntry, "err", err)
				continue
			}
			if n.Node == c.o.Node {
				continue
			}
			if n.Reset {
				h.BreakerReset(ctx, n.Key)
			} else if n.Trip != nil {
				h.BreakerTrip(ctx, *n.Trip)
			}
		}
	}
}

// BreakerNode is a BreakerHandler over a breaker; OnTrip and OnReset, when
// set, act on what changed (hold the sender's queued mail, release it).
type BreakerNode struct {
	B       *breaker.Breaker
	OnTrip  func(ctx context.Context, t breaker.Trip)
	OnReset func(ctx context.Context, k breaker.Key)
	// Clock is the time of a reset without OnReset (clock.Real when nil).
	Clock clock.Clock
}

// BreakerTrip imposes t.
func (n *BreakerNode) BreakerTrip(ctx context.Context, t breaker.Trip) {
	if n.B.Impose(t) && n.OnTrip != nil {
		n.OnTrip(ctx, t)
	}
}

// BreakerReset re-arms k, if tripped.
func (n *BreakerNode) BreakerReset(ctx context.Context, k breaker.Key) {
	if n.OnReset != nil {
		n.OnReset(ctx, k)
		return
	}
	clk := n.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	_, _ = n.B.Reset(k, clk.Now())
}

// BreakerTripped lists the breaker's trips.
func (n *BreakerNode) BreakerTripped() []breaker.Trip { return n.B.Tripped() }
