package cluster

import (
	"context"
	"errors"
	"facteur/relay/maillog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The suppression list is shared as a hash (address → the queue's JSON of
// the entry: the whole list, for a node that starts from nothing or fell
// behind the stream's trimmed head) and a stream of changes (add/del) that
// every node follows from the last entry it applied.

// streamMax bounds the change stream (approximately); a node further
// behind than that reloads the whole hash.
const streamMax = 1_000_000

// Suppressed tells the other nodes of a new or updated entry (entry is the
// queue's JSON of it). With the link down it is kept and pushed when the
// link returns.
func (c *Cluster) Suppressed(addr string, entry []byte) {
	c.pushSupp("add", addr, entry)
}

// Unsuppressed tells the other nodes that addr left the list.
func (c *Cluster) Unsuppressed(addr string) {
	c.pushSupp("del", addr, nil)
}

func (c *Cluster) pushSupp(op, addr string, entry []byte) {
	addr = strings.ToLower(addr)
	push := func(ctx context.Context) error {
		pipe := c.rdb.TxPipeline()
		if op == "add" {
			pipe.HSet(ctx, c.key("supp"), addr, entry)
		} else {
			pipe.HDel(ctx, c.key("supp"), addr)
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: c.key("supp", "log"), MaxLen: streamMax, Approx: true,
			Values: map[string]any{"op": op, "addr": addr, "entry": string(entry), "node": c.o.Node}})
		_, err := pipe.Exec(ctx)
		return err
	}
	c.pushOrLater(push)
}

// suppLoop catches up (from the saved cursor, or the whole hash) and then
// follows the change stream.
func (c *Cluster) suppLoop(ctx context.Context) {
	for ctx.Err() == nil {
		if !c.waitUp(ctx) {
			return
		}
		c.mu.Lock()
		h := c.handler
		c.mu.Unlock()
		if h == nil {
			c.pause(ctx)
			continue
		}
		cursor, err := c.suppCatchUp(ctx, h)
		if err != nil {
			c.failed(err)
			c.pause(ctx)
			continue
		}
		c.suppFollow(ctx, h, cursor)
	}
}

// suppCatchUp returns the stream position to follow from: the saved one
// when the stream still holds it, else the stream's end after loading the
// whole hash.
func (c *Cluster) suppCatchUp(ctx context.Context, h Handler) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stream := c.key("supp", "log")
	cursor, err := h.Cursor(cctx)
	if err != nil {
		return "", err
	}
	if cursor != "" {
		first, err := c.rdb.XRangeN(cctx, stream, "-", "+", 1).Result()
		if err != nil {
			return "", err
		}
		// Held when the stream is empty and the cursor is real, or when
		// its first entry is not after the cursor.
		if len(first) == 0 || !idAfter(first[0].ID, cursor) || first[0].ID == nextID(cursor) {
			return cursor, nil
		}
	}
	// Load the whole list as of the stream's current end.
	last, err := c.rdb.XRevRangeN(cctx, stream, "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	end := "0-0"
	if len(last) > 0 {
		end = last[0].ID
	}
	var cur uint64
	for {
		kv, next, err := c.rdb.HScan(cctx, c.key("supp"), cur, "", 1000).Result()
		if err != nil {
			return "", err
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if err := h.Suppression(ctx, true, kv[i], []byte(kv[i+1])); err != nil {
				c.log.Warn(maillog.ClusterNotApplied, "rcpt", "<"+kv[i]+">", "err", err)
			}
		}
		if cur = next; cur == 0 {
			break
		}
	}
	if err := h.SaveCursor(ctx, end); err != nil {
		return "", err
	}
	c.log.Info(maillog.ClusterListLoaded, "node", c.o.Node, "cursor", end)
	return end, nil
}

func (c *Cluster) suppFollow(ctx context.Context, h Handler, cursor string) {
	stream := c.key("supp", "log")
	for ctx.Err() == nil && c.Up() {
		// A blocking read: go-redis extends the read timeout by Block.
		res, err := c.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{stream, cursor}, Count: 500, Block: 500 * time.Millisecond}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				c.failed(err)
			}
			return
		}
		for _, s := range res {
			for _, m := range s.Messages {
				c.applySupp(ctx, h, m)
				cursor = m.ID
			}
		}
		if err := h.SaveCursor(ctx, cursor); err != nil {
			c.log.Warn(maillog.ClusterCursorNotSaved, "err", err)
		}
	}
}

func (c *Cluster) applySupp(ctx context.Context, h Handler, m redis.XMessage) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	if str("node") == c.o.Node {
		return
	}
	addr := str("addr")
	var err error
	switch str("op") {
	case "add":
		err = h.Suppression(ctx, true, addr, []byte(str("entry")))
	case "del":
		err = h.Suppression(ctx, false, addr, nil)
	default:
		return
	}
	if err != nil {
		c.log.Warn(maillog.ClusterNotApplied, "rcpt", "<"+addr+">", "op", str("op"), "err", err)
	}
}

// idAfter compares stream IDs (ms-seq).
func idAfter(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	return am > bm || (am == bm && as > bs)
}

func nextID(id string) string {
	m, s := splitID(id)
	return formatID(m, s+1)
}
