package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"facteur/relay/maillog"
	"fmt"
	"log/slog"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/clock"
)

// cursorKey is where a node keeps its position in the suppression stream,
// in the queue's state.
const cursorKey = "cluster.suppression_cursor"

// NodeHandler is the Handler of a running facteur: the other nodes' news
// goes into its policy engine and its queue's suppression list (its bbolt
// copy, which RCPT reads).
type NodeHandler struct {
	Store  *queue.Store
	Engine *policy.Engine
	Log    *slog.Logger
	// Changed is called after another node's news changed the engine's
	// state (to save it, count it); may be nil.
	Changed func(r Reputation)
	// Clock is the time news is judged by (clock.Real when nil).
	Clock clock.Clock
}

func (h *NodeHandler) now() time.Time {
	if h.Clock != nil {
		return h.Clock.Now()
	}
	return clock.Real{}.Now()
}

// Reputation applies another node's news to the engine, with one log line
// when it changed something.
func (h *NodeHandler) Reputation(ctx context.Context, r Reputation) {
	if !Apply(h.Engine, r, h.now()) {
		return
	}
	if r.Resume != "" {
		h.Log.Info(maillog.ClusterResumed, "node", r.Node, "provider", r.Resume)
	} else {
		var st policy.ScopeState
		_ = json.Unmarshal(r.State, &st)
		kv := []any{"node", r.Node, "key", r.Key, "scope", r.Scope}
		if r.SourceIP != "" {
			kv = append(kv, "source_ip", r.SourceIP)
		}
		if r.SenderDomain != "" {
			kv = append(kv, "sender_domain", r.SenderDomain)
		}
		if !st.Until.IsZero() && st.Until.After(h.now()) {
			kv = append(kv, "until", st.Until.UTC().Format(time.RFC3339))
		}
		if st.Throttle > 0 {
			kv = append(kv, "throttle_level", st.Throttle)
		}
		kv = append(kv, "resp", st.Reason)
		h.Log.Info(maillog.ClusterLearned, kv...)
	}
	if h.Changed != nil {
		h.Changed(r)
	}
}

// Suppression stores another node's entry in the local list (or removes
// it), marked replicated so that it is not sent back.
func (h *NodeHandler) Suppression(ctx context.Context, add bool, addr string, entry []byte) error {
	ctx = queue.Replicated(ctx)
	if !add {
		found, err := h.Store.Unsuppress(ctx, addr)
		if err == nil && found {
			h.Log.Info(maillog.ClusterUnsuppressed, "rcpt", "<"+addr+">")
		}
		return err
	}
	var sup queue.Suppression
	if err := json.Unmarshal(entry, &sup); err != nil {
		return fmt.Errorf("suppression %s: %w", addr, err)
	}
	if err := h.Store.PutSuppression(ctx, sup); err != nil {
		return err
	}
	h.Log.Info(maillog.ClusterSuppressed, "rcpt", "<"+sup.Address+">", "class", sup.Reason, "source", string(sup.Source))
	return nil
}

// Cursor returns the saved stream position ("" none).
func (h *NodeHandler) Cursor(ctx context.Context) (string, error) {
	b, err := h.Store.State(ctx, cursorKey)
	if errors.Is(err, queue.ErrNotFound) {
		return "", nil
	}
	return string(b), err
}

// SaveCursor saves the stream position.
func (h *NodeHandler) SaveCursor(ctx context.Context, id string) error {
	return h.Store.PutState(ctx, cursorKey, []byte(id))
}

// Hook is the queue's SuppressionHook that tells the other nodes of this
// node's changes of the list.
func (c *Cluster) Hook() queue.SuppressionHook {
	return func(ctx context.Context, added *queue.Suppression, removed string) {
		if added == nil {
			c.Unsuppressed(removed)
			return
		}
		b, err := json.Marshal(added)
		if err != nil {
			return
		}
		c.Suppressed(added.Address, b)
	}
}
