package daemon

import (
	"net/http"

	"facteur/relay/bounces"
	"facteur/relay/suppress"
)

// routes are the daemon's admin endpoints beyond the queue's (relay/admin
// serves /queue, /healthz, /debug/pprof): the one table of method and path
// to handler.
func (d *daemon) routes(sups *suppress.Service, bnc *bounces.Ingester) map[string]http.Handler {
	return map[string]http.Handler{
		"GET /breaker":                  http.HandlerFunc(d.breakerList),
		"POST /breaker/reset":           http.HandlerFunc(d.breakerReset),
		"POST /bounces":                 http.HandlerFunc(bnc.Ingest),
		"GET /events":                   http.HandlerFunc(d.recentEvents),
		"GET /metrics":                  d.metrics.Handler(),
		"GET /policy":                   http.HandlerFunc(d.policyShow),
		"POST /policy/reload":           http.HandlerFunc(d.policyReload),
		"GET /providers":                http.HandlerFunc(d.providers),
		"POST /providers/{name}/resume": http.HandlerFunc(d.resume),
		"GET /status":                   http.HandlerFunc(d.status),
		"GET /suppressions":             http.HandlerFunc(sups.List),
		"POST /suppressions":            http.HandlerFunc(sups.Add),
		"DELETE /suppressions/{addr}":   http.HandlerFunc(sups.Remove),
	}
}
