package daemon

import (
	"context"
	"errors"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/pool"
)

// warmupStateKey is where today's warm-up counts and the ramp holds of the
// pools' IPs are kept in the queue database, so that a restart never gives
// a warming IP its day's cap again (issue 17 §3).
const warmupStateKey = "pool/warmup"

// warmupSaveEvery bounds how often deliveries from a pool save the counts;
// a crash loses at most this much of them.
const warmupSaveEvery = 5 * time.Second

// newPools builds the pools of cfg, restores their saved counts, and tells
// engine which IPs to report.
func newPools(ctx context.Context, cfg *config.Config, store *queue.Store, engine *policy.Engine, now time.Time) (*pool.Set, error) {
	ps := pool.New(cfg)
	if ps == nil {
		return nil, nil
	}
	engine.SetSources(ps.Addrs())
	b, ok, err := savedState(ctx, store, warmupStateKey)
	if err != nil {
		return nil, err
	}
	if !ok {
		return ps, nil
	}
	return ps, ps.RestoreState(b, now)
}

// savedState reads what the daemon saved under key; ok is false, with no
// error, when there is no store or nothing was saved yet (a first start).
// The policy engine (offline too) and the pools restore through it, so that
// both treat a missing state alike.
func savedState(ctx context.Context, store *queue.Store, key string) (b []byte, ok bool, err error) {
	if store == nil {
		return nil, false, nil
	}
	b, err = store.State(ctx, key)
	if errors.Is(err, queue.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// saveWarmup stores the pools' counts, at most every warmupSaveEvery unless
// force (shutdown).
func (d *daemon) saveWarmup(ctx context.Context, force bool) {
	if d.pools == nil {
		return
	}
	now := d.clock.Now()
	d.warmupMu.Lock()
	defer d.warmupMu.Unlock()
	if !force && now.Sub(d.warmupSaved) < warmupSaveEvery {
		return
	}
	d.warmupSaved = now
	b, err := d.pools.MarshalState(now)
	if err == nil {
		err = d.store.PutState(ctx, warmupStateKey, b)
	}
	if err != nil {
		d.log.Error(maillog.WarmupStateNotSaved, "err", err)
	}
}

// fillIPs adds to each provider's IPs their pool and warm-up numbers.
func fillIPs(states []policy.ProviderState, ps *pool.Set, now time.Time) {
	for i := range states {
		for j := range states[i].IPs {
			x := &states[i].IPs[j]
			ip := ps.IP(x.Addr)
			if ip == nil {
				continue
			}
			x.Pool = ip.Pool
			limit, sent, warming := ps.Cap(ip, states[i].Name, now)
			x.SentToday = sent
			if warming {
				x.CapToday = &limit
			}
		}
	}
}

// PoolStatus is one pool in `facteur status`.
type PoolStatus struct {
	Name     string         `json:"name"`
	Overflow string         `json:"overflow"`
	IPs      []PoolIPStatus `json:"ips"`
}

// PoolIPStatus is one IP of a pool: its warm-up day on its default
// schedule (null when warm) and the providers it is suspended at.
type PoolIPStatus struct {
	Addr        string   `json:"addr"`
	EHLO        string   `json:"ehlo,omitempty"`
	WarmupDay   *int     `json:"warmup_day"`
	WarmupCap   *int     `json:"warmup_cap"`
	SuspendedAt []string `json:"suspended_at"`
}

func poolStatus(ps *pool.Set, states []policy.ProviderState, now time.Time) []PoolStatus {
	out := []PoolStatus{}
	for _, p := range ps.Pools() {
		st := PoolStatus{Name: p.Name, Overflow: p.Overflow}
		for _, ip := range p.IPs {
			is := PoolIPStatus{Addr: ip.String(), EHLO: ip.EHLO, SuspendedAt: []string{}}
			if day, warm := ps.Day(ip, "", now); !warm {
				c := ip.Warmup.Schedule[day]
				is.WarmupDay, is.WarmupCap = &day, &c
			}
			for _, s := range states {
				for _, x := range s.IPs {
					if x.Addr == is.Addr && x.SuspendedUntil != nil {
						is.SuspendedAt = append(is.SuspendedAt, s.Name)
					}
				}
			}
			st.IPs = append(st.IPs, is)
		}
		out = append(out, st)
	}
	return out
}
