package netboot

import (
	"errors"
	"io/fs"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nixboot/nixboot/pxe"
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
	dhcp     *prometheus.CounterVec   // request, reply
	dhcp6    *prometheus.CounterVec   // request, reply
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
//	nixboot_dhcp_total{request,reply}      DHCP packets by message type and reply
//	                                       ("none" for no reply, "unparsable")
//	nixboot_dhcpv6_total{request,reply}    the same for DHCPv6
//
// DHCP failures of ours (pool exhausted, reply too large) count in
// nixboot_errors_total{proto="dhcp"}, DHCPv6 ones (prefix exhausted) in
// nixboot_errors_total{proto="dhcpv6"}.
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
		dhcp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixboot_dhcp_total", Help: "DHCP packets read, by message type and the reply sent.",
		}, []string{"request", "reply"}),
		dhcp6: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixboot_dhcpv6_total", Help: "DHCPv6 messages read, by message type and the reply sent.",
		}, []string{"request", "reply"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.errors, m.duration, m.phases, m.dhcp, m.dhcp6} {
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

// ObserveDHCP counts one DHCP packet; it is a pxe.Server.Observer.
func (m *Metrics) ObserveDHCP(ex pxe.Exchange) {
	req := dhcpTypeLabel(ex.Request)
	if ex.Request == dhcpv4.MessageTypeNone && ex.MAC == nil {
		req = "unparsable"
	}
	m.dhcp.WithLabelValues(req, dhcpTypeLabel(ex.Reply)).Inc()
	if errors.Is(ex.Err, pxe.ErrPoolExhausted) || errors.Is(ex.Err, pxe.ErrReplyTooLarge) {
		m.errors.WithLabelValues("dhcp").Inc()
	}
}

// ObserveDHCPv6 counts one DHCPv6 message; it is a pxe.Server6.Observer.
func (m *Metrics) ObserveDHCPv6(ex pxe.Exchange6) {
	req := dhcpv6TypeLabel(ex.Request)
	if ex.Request == 0 {
		req = "unparsable"
	}
	m.dhcp6.WithLabelValues(req, dhcpv6TypeLabel(ex.Reply)).Inc()
	if errors.Is(ex.Err, pxe.ErrPoolExhausted) {
		m.errors.WithLabelValues("dhcpv6").Inc()
	}
}

// dhcpv6TypeLabel names a DHCPv6 message type in lower case; a type no
// client or server of this package sends is "other".
func dhcpv6TypeLabel(t dhcpv6.MessageType) string {
	switch t {
	case 0:
		return "none"
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeAdvertise, dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeConfirm,
		dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind, dhcpv6.MessageTypeReply, dhcpv6.MessageTypeRelease,
		dhcpv6.MessageTypeDecline, dhcpv6.MessageTypeInformationRequest:
		return strings.ReplaceAll(strings.ToLower(t.String()), "-", "_")
	}
	return "other"
}

// dhcpTypeLabel names a message type in lower case; a value no RFC
// defines is "other", so a client cannot add label values at will.
func dhcpTypeLabel(t dhcpv4.MessageType) string {
	switch t {
	case dhcpv4.MessageTypeNone:
		return "none"
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDecline,
		dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak, dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeInform:
		return strings.ToLower(t.String())
	}
	return "other"
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
