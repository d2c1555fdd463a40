package bench

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/session"
)

// PrometheusObserver exports session.Observer events as Prometheus metrics:
// a latency histogram per store operation and outcome, and a counter of
// security events by kind. Wire it with session.Options{Observer: o}.
type PrometheusObserver struct {
	ops      *prometheus.HistogramVec
	security *prometheus.CounterVec
}

// NewPrometheusObserver registers its metrics with reg.
func NewPrometheusObserver(reg prometheus.Registerer) (*PrometheusObserver, error) {
	o := &PrometheusObserver{
		ops: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "session_store_operation_seconds",
			Help:    "Latency of session store operations, by operation and outcome (ok, not_found, error).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}, []string{"op", "outcome"}),
		security: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "session_security_events_total",
			Help: "Security events: rejected or ambiguous cookies, unknown tokens, refused writes.",
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{o.ops, o.security} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Observe implements session.Observer.
func (o *PrometheusObserver) Observe(e session.Event) {
	switch e.Kind {
	case session.EventCookieRejected, session.EventCookieAmbiguous, session.EventTokenUnknown, session.EventWriteRefused:
		o.security.WithLabelValues(string(e.Kind)).Inc()
		return
	}
	outcome := "ok"
	switch {
	case errors.Is(e.Err, session.ErrNotFound):
		outcome = "not_found"
	case e.Err != nil:
		outcome = "error"
	}
	o.ops.WithLabelValues(string(e.Kind), outcome).Observe(e.Duration.Seconds())
}
