package cluster

import (
	"context"
	"encoding/json"
	"facteur/relay/maillog"
	"strings"
	"time"
)

// Reputation is a suspension, throttle or backoff one node learned (or an
// operator's resume), with the scope of the reply that caused it.
type Reputation struct {
	Node string `json:"node"`
	// Scope is ip, domain or provider (policy.Scope); SourceIP is the
	// sending IP an ip scope is about, SenderDomain the domain a domain
	// scope is about.
	Scope        string `json:"scope"`
	SourceIP     string `json:"source_ip,omitempty"`
	SenderDomain string `json:"sender_domain,omitempty"`
	// Key is the policy engine's scope key: the reputation group, the
	// provider, or default:<domain>.
	Key string `json:"key"`
	// State is the engine's policy.ScopeState as JSON, or empty for a
	// resume (then Resume names what was resumed).
	State  json.RawMessage `json:"state,omitempty"`
	Resume string          `json:"resume,omitempty"`
	// Until is when the news stops mattering (the end of the window; for
	// a throttle, a day), for the catch-up of a starting node.
	Until time.Time `json:"until"`
}

// field is the entry of the reputation hash: one per scope and key, the
// latest wins.
func (r Reputation) field() string {
	return r.Scope + "|" + r.SourceIP + "|" + r.SenderDomain + "|" + r.Key
}

// For reports whether r holds at a node sending from sourceIP: an IP
// scope only at the nodes sending from that IP.
func (r Reputation) For(sourceIP string) bool {
	return r.Scope != "ip" || r.SourceIP == sourceIP || strings.HasPrefix(r.SourceIP, poolPrefix)
}

// poolPrefix marks the source IP of a pool's news (issue 17), whose key
// already names the IP.
const poolPrefix = "pool:"

// Publish tells the other nodes what this node learned. It never blocks
// mail for long: with the link down (or the call failing) it is kept and
// pushed when the link returns. An IP scope without a source IP takes this
// node's.
func (c *Cluster) Publish(r Reputation) {
	r.Node = c.o.Node
	if r.Scope == "ip" && r.SourceIP == "" {
		r.SourceIP = c.o.SourceIP
	}
	b, err := json.Marshal(r)
	if err != nil {
		c.log.Error(maillog.ClusterPublish, "err", err)
		return
	}
	push := func(ctx context.Context) error {
		pipe := c.rdb.TxPipeline()
		if r.Resume == "" {
			pipe.HSet(ctx, c.key("rep"), r.field(), b)
		} else {
			// A resume ends the news of every scope of the key.
			fields, err := c.rdb.HKeys(ctx, c.key("rep")).Result()
			if err != nil {
				return err
			}
			for _, f := range fields {
				if strings.HasSuffix(f, "|"+r.Key) {
					pipe.HDel(ctx, c.key("rep"), f)
				}
			}
		}
		pipe.Publish(ctx, c.key("rep", "ch"), b)
		_, err := pipe.Exec(ctx)
		return err
	}
	c.pushOrLater(push)
}

// repLoop follows the reputation channel, after catching up on the
// entries still in force (on start and after each return of the link).
func (c *Cluster) repLoop(ctx context.Context) {
	for ctx.Err() == nil {
		if !c.Up() {
			if !c.waitUp(ctx) {
				return
			}
		}
		ps := c.rdb.Subscribe(ctx, c.key("rep", "ch"))
		// Subscribe first, then read the hash: nothing published between
		// the two is lost (a duplicate is harmless: Impose only extends).
		if _, err := ps.Receive(ctx); err != nil {
			ps.Close()
			c.failed(err)
			c.pause(ctx)
			continue
		}
		c.catchUpRep(ctx)
		ch := ps.Channel(redisChannelOpts()...)
		c.followRep(ctx, ch)
		ps.Close()
	}
}

func (c *Cluster) followRep(ctx context.Context, ch <-chan *redisMessage) {
	check := time.NewTicker(c.o.Heartbeat)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			if !c.Up() {
				return // resubscribe and catch up when it returns
			}
		case m, ok := <-ch:
			if !ok {
				return
			}
			c.applyRep(ctx, []byte(m.Payload))
		}
	}
}

func (c *Cluster) catchUpRep(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	all, err := c.rdb.HGetAll(cctx, c.key("rep")).Result()
	if err != nil {
		c.failed(err)
		return
	}
	now := c.o.Clock.Now()
	for f, v := range all {
		var r Reputation
		if json.Unmarshal([]byte(v), &r) != nil || !r.Until.After(now) {
			// Expired news: forget it (the field may have been replaced
			// meanwhile; HDEL of a stale field is harmless).
			c.rdb.HDel(cctx, c.key("rep"), f)
			continue
		}
		c.applyRep(ctx, []byte(v))
	}
}

func (c *Cluster) applyRep(ctx context.Context, b []byte) {
	var r Reputation
	if err := json.Unmarshal(b, &r); err != nil {
		c.log.Warn(maillog.ClusterBadEntry, "err", err)
		return
	}
	if r.Node == c.o.Node || !r.For(c.o.SourceIP) {
		return
	}
	c.mu.Lock()
	h := c.handler
	c.mu.Unlock()
	if h != nil {
		h.Reputation(ctx, r)
	}
}

// waitUp waits for the link to come up; false when ctx ended.
func (c *Cluster) waitUp(ctx context.Context) bool {
	t := time.NewTicker(c.o.Heartbeat / 4)
	defer t.Stop()
	for !c.Up() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

func (c *Cluster) pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(c.o.Heartbeat):
	}
}
