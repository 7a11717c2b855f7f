package daemon

import "net/http"

// routes are the daemon's admin endpoints beyond the queue's (relay/admin
// serves /queue, /healthz, /debug/pprof): the one table of method and path
// to handler.
func (d *daemon) routes(ext Endpoints) map[string]http.Handler {
	return map[string]http.Handler{
		"GET /breaker":                  http.HandlerFunc(d.breakerList),
		"POST /breaker/reset":           http.HandlerFunc(d.breakerReset),
		"POST /bounces":                 ext.IngestBounce,
		"GET /events":                   http.HandlerFunc(d.recentEvents),
		"GET /metrics":                  d.metrics.Handler(),
		"GET /policy":                   http.HandlerFunc(d.policyShow),
		"POST /policy/reload":           http.HandlerFunc(d.policyReload),
		"GET /providers":                http.HandlerFunc(d.providers),
		"POST /providers/{name}/resume": http.HandlerFunc(d.resume),
		"GET /status":                   http.HandlerFunc(d.status),
		"GET /suppressions":             ext.ListSuppressions,
		"POST /suppressions":            ext.AddSuppressions,
		"DELETE /suppressions/{addr}":   ext.RemoveSuppression,
	}
}
