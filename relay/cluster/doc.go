// Package cluster lets a fleet of facteur nodes learn together through Redis
// (issue 14): shared rates (GCRA in one Lua script on Redis's clock) and
// connection leases (a sorted set scored by expiry) per (source IP,
// provider); suspensions, throttles and backoff with the scope of the reply
// that caused them; the suppression list, as a stream every node follows
// into its own bbolt copy.
//
// Redis down or slow never stops mail: every call has a short timeout, a
// failed call marks the link down (one log line), and until a ping succeeds
// again the node shapes alone with its share of each limit (the limit
// divided by the nodes last seen alive) and keeps what it learns to push
// when the link comes back (one log line).
//
// It imports nothing of facteur's but the leaf types it exchanges: the
// caller (relay/daemon, relay/scheduler's EngineShaper) wires it to the
// policy engine and the queue through narrow hooks.
package cluster
