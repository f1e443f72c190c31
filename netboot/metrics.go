package netboot

import (
	"errors"
	"io/fs"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of a Server (or of handlers a caller
// wires itself). Create them with NewMetrics; they are registered on the
// caller's registry, never the global one. Metrics is an Observer.
type Metrics struct {
	requests *prometheus.CounterVec   // proto, result
	bytes    *prometheus.CounterVec   // proto
	errors   *prometheus.CounterVec   // proto
	duration *prometheus.HistogramVec // proto
	phases   *prometheus.CounterVec   // phase
}

// Request results, the "result" label of nixboot_requests_total.
const (
	ResultOK       = "ok"
	ResultNotFound = "not_found"
	ResultRefused  = "refused" // a bad name, mode or request
	ResultBusy     = "busy"
	ResultAborted  = "aborted" // the client stopped or vanished
	ResultError    = "error"   // a failure of ours
)

// NewMetrics creates the metrics and registers them on reg:
//
//	nixboot_requests_total{proto,result}
//	nixboot_sent_bytes_total{proto}
//	nixboot_errors_total{proto}            failures of ours (result "error")
//	nixboot_request_duration_seconds{proto}
//	nixboot_boot_phase_total{phase}        machines reaching each boot phase
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixboot_requests_total", Help: "File and script requests by protocol and result.",
		}, []string{"proto", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixboot_sent_bytes_total", Help: "Content bytes sent by protocol.",
		}, []string{"proto"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixboot_errors_total", Help: "Requests that failed on the server's side.",
		}, []string{"proto"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "nixboot_request_duration_seconds", Help: "Time to serve a request, transfer included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"proto"}),
		phases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixboot_boot_phase_total", Help: "Machines reaching each boot phase.",
		}, []string{"phase"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.errors, m.duration, m.phases} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Observe counts one request.
func (m *Metrics) Observe(ev Event) {
	proto := string(ev.Proto)
	result := Result(ev.Err)
	m.requests.WithLabelValues(proto, result).Inc()
	m.bytes.WithLabelValues(proto).Add(float64(ev.Bytes))
	m.duration.WithLabelValues(proto).Observe(ev.Duration.Seconds())
	if result == ResultError {
		m.errors.WithLabelValues(proto).Inc()
	}
}

// Phase counts a machine reaching phase.
func (m *Metrics) Phase(p Phase) { m.phases.WithLabelValues(string(p)).Inc() }

// Result classifies a request's error into one of the Result constants.
func Result(err error) string {
	switch {
	case err == nil:
		return ResultOK
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrUnknownMachine):
		return ResultNotFound
	case errors.Is(err, ErrBadName), errors.Is(err, ErrBadMode), errors.Is(err, ErrRefused):
		return ResultRefused
	case errors.Is(err, ErrBusy):
		return ResultBusy
	case errors.Is(err, ErrAborted):
		return ResultAborted
	}
	return ResultError
}
