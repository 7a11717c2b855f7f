package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// gcraScript is the shared rate of one (source IP, budget) key: GCRA with
// a burst of one, on Redis's clock so that the nodes' clocks do not
// matter. ARGV[1] is the emission interval in microseconds. It returns 0
// when the message may go now, else the microseconds to wait.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat > now then return tat - now end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.floor(interval / 1000) + 1000)
return 0
`)

// leaseScript takes a connection slot of one key when fewer than ARGV[1]
// unexpired leases are held: a lease is a member scored by its expiry
// (Redis's clock, ms), ARGV[2] the lease period, ARGV[3] the member.
var leaseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
`)

// renewScript extends the leases ARGV[2..] of KEYS[1] still held (XX: a
// lease that expired meanwhile, or that another node's count no longer
// has room for, is re-added only if room is left).
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], exp, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 1
`)

// countScript counts the unexpired leases of KEYS[1].
var countScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
`)

func (c *Cluster) connKey(budget string) string { return c.key("conn", c.o.SourceIP, budget) }
func (c *Cluster) rateKey(budget string) string { return c.key("rate", c.o.SourceIP, budget) }

// Acquire asks for one of limit connection slots of budget, shared by
// every node sending from this source IP. With the link down, this node
// takes at most its share (limit / nodes alive, at least 1). release is
// idempotent.
func (c *Cluster) Acquire(budget string, limit int) (release func(), ok bool) {
	if limit <= 0 {
		return func() {}, true
	}
	key := c.connKey(budget)
	member := ""
	if c.Up() {
		m := c.nextMember()
		ctx, cancel := c.callCtx()
		got, err := leaseScript.Run(ctx, c.rdb, []string{key}, limit, c.o.Lease.Milliseconds(), m).Int()
		cancel()
		if err == nil && got == 0 {
			return nil, false
		}
		if err == nil {
			member = m
		} else {
			c.failed(err)
		}
	}
	c.mu.Lock()
	if member == "" {
		// Down (or just failed): this node's share, never more than the
		// whole.
		share := max(1, limit/int(c.alive.Load()))
		if c.local[budget] >= share {
			c.mu.Unlock()
			return nil, false
		}
		// The lease is registered when the link returns (renew), so that
		// the others count it.
		// The wall clock only makes the member name unique.
		member = c.o.Node + ":" + "local:" + budget + ":" + time.Now().Format(time.RFC3339Nano)
	}
	c.local[budget]++
	c.leases[member] = key
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.local[budget]--
			if c.local[budget] <= 0 {
				delete(c.local, budget)
			}
			delete(c.leases, member)
			c.mu.Unlock()
			if !c.Up() {
				return // the lease expires by itself
			}
			// Off the worker's path: the slot is free for this node now,
			// and for the others one round trip later (or at the lease's
			// expiry if that fails).
			go func() {
				ctx, cancel := c.callCtx()
				defer cancel()
				c.failed(c.rdb.ZRem(ctx, key, member).Err())
			}()
		})
	}, true
}

// renew extends every lease this node holds, registering those taken while
// the link was down.
func (c *Cluster) renew(ctx context.Context) error {
	c.mu.Lock()
	byKey := map[string][]any{}
	for m, k := range c.leases {
		byKey[k] = append(byKey[k], m)
	}
	c.mu.Unlock()
	if len(byKey) == 0 {
		return nil
	}
	for k, ms := range byKey {
		cctx, cancel := context.WithTimeout(ctx, c.o.Timeout*2)
		err := renewScript.Run(cctx, c.rdb, []string{k}, append([]any{c.o.Lease.Milliseconds()}, ms...)...).Err()
		cancel()
		if err != nil {
			c.failed(err)
			return err
		}
	}
	return nil
}

// Allow takes one message from the rate of budget shared by every node
// sending from this source IP: one per interval (0: unlimited). Not ok: at
// is when to ask again. With the link down, this node keeps to its share:
// one per interval × nodes alive.
func (c *Cluster) Allow(budget string, interval time.Duration, now time.Time) (ok bool, at time.Time) {
	if interval <= 0 {
		return true, now
	}
	if c.Up() {
		ctx, cancel := c.callCtx()
		wait, err := gcraScript.Run(ctx, c.rdb, []string{c.rateKey(budget)}, interval.Microseconds()).Int64()
		cancel()
		if err == nil {
			if wait <= 0 {
				return true, now
			}
			return false, now.Add(time.Duration(wait) * time.Microsecond)
		}
		c.failed(err)
	}
	n := c.alive.Load()
	c.mu.Lock()
	sl := c.share[budget]
	if sl == nil || sl.interval != interval || sl.nodes != n {
		every := interval * time.Duration(n)
		sl = &shareLimiter{lim: rate.NewLimiter(rate.Every(every), 1), interval: interval, nodes: n}
		// Start empty: the shared bucket was just used by someone.
		sl.lim.AllowN(now, 1)
		c.share[budget] = sl
	}
	c.mu.Unlock()
	if sl.lim.AllowN(now, 1) {
		return true, now
	}
	missing := 1 - sl.lim.TokensAt(now)
	wait := time.Duration(missing / float64(sl.lim.Limit()) * float64(time.Second))
	return false, now.Add(max(wait, time.Millisecond))
}

// Connections returns the open connections of budget from every node
// sending from this source IP (-1 when Redis cannot say).
func (c *Cluster) Connections(budget string) int {
	if !c.Up() {
		return -1
	}
	ctx, cancel := c.callCtx()
	defer cancel()
	n, err := countScript.Run(ctx, c.rdb, []string{c.connKey(budget)}).Int()
	if err != nil {
		c.failed(err)
		return -1
	}
	return n
}
