package daemon

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"facteur/policy"
	"facteur/relay/admin"
	"facteur/relay/config"
	"facteur/relay/maillog"
)

// PolicyStateKey is where the policy engine's state (suspensions, backoff
// levels, throttles) lives in the queue database, so that it survives a
// restart (issue 5 §7).
const PolicyStateKey = "policy/state"

func LoadPolicy(cfg *config.Config) (*policy.Policy, error) {
	if cfg.Policy == "" {
		return policy.Builtin()
	}
	return policy.Load(cfg.Policy)
}

// savePolicyState stores the engine's state after a provider event.
func (d *daemon) savePolicyState(ctx context.Context) {
	d.policyMu.Lock()
	defer d.policyMu.Unlock()
	b, err := d.engine.MarshalState()
	if err == nil {
		err = d.store.PutState(ctx, PolicyStateKey, b)
	}
	if err != nil {
		d.log.Error(maillog.PolicyStateNotSaved, "err", err)
	}
}

// reloadPolicy swaps in the policy file atomically; a bad file is refused
// and the old policy stays (issue 5 §1).
func (d *daemon) reloadPolicy() error {
	d.policyMu.Lock()
	defer d.policyMu.Unlock()
	p, err := LoadPolicy(d.cfg)
	if err != nil {
		d.log.Error(maillog.PolicyReloadRefused, "err", err)
		return err
	}
	d.engine.Swap(p, d.clock.Now())
	d.log.Info(maillog.PolicyReloaded, "file", d.cfg.Policy)
	d.sched.Wake()
	return nil
}

func (d *daemon) reloadOnHUP(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			d.reloadPolicy()
		}
	}
}

func (d *daemon) policyReload(w http.ResponseWriter, r *http.Request) {
	if err := d.reloadPolicy(); err != nil {
		admin.WriteError(w, http.StatusBadRequest, err)
		return
	}
	admin.WriteJSON(w, http.StatusOK, map[string]string{"reloaded": d.cfg.Policy})
}

func (d *daemon) policyShow(w http.ResponseWriter, r *http.Request) {
	b, err := d.engine.Policy().Show(true)
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
