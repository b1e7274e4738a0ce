// Package jaegerconf is the Jaeger query API conformance corpus: traces
// sent over OTLP alike to a real Jaeger v2 and to Lumen, the requests made
// of both, and the normalisation that makes their answers comparable. The
// goldens in testdata/ are Jaeger's answers (`make jaeger-goldens`
// regenerates them with a Jaeger built from its Go module); cmd/lumen's
// conformance test compares Lumen's answers with them, field by field.
//
// Times are offsets from a base time T0 that each run chooses (a whole hour
// a couple of hours back), so that the same goldens hold on any day.
package jaegerconf

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// T0 is the base time of a run at now: the whole hour two hours back.
func T0(now time.Time) time.Time { return now.UTC().Truncate(time.Hour).Add(-2 * time.Hour) }

// Span is how long the corpus lasts from T0.
const Span = 10 * time.Minute

// TraceID is the id of the corpus' trace n (1…): 4a65…0n; trace 7 is a
// 64-bit id (its high half zero), as older Jaeger clients made them.
func TraceID(n int) pcommon.TraceID {
	if n == 7 {
		return pcommon.TraceID{8: 0x64, 15: byte(n)}
	}
	return pcommon.TraceID{0x4a, 0x65, 14: 0x0c, 15: byte(n)}
}

// Traces is the number of traces in the corpus.
const Traces = 7

type builder struct {
	td     ptrace.Traces
	t0     time.Time
	trace  int
	scopes map[string]ptrace.ScopeSpans
	n      byte
	err    error // the first attribute that did not convert
}

func (b *builder) put(m pcommon.Map, k string, v any) {
	if err := m.PutEmpty(k).FromRaw(v); err != nil && b.err == nil {
		b.err = fmt.Errorf("trace %d: attribute %s: %w", b.trace, k, err)
	}
}

// resources are the services' resource attributes (Jaeger's process tags).
var resources = map[string]map[string]any{
	"web": {"service.name": "web", "service.version": "1.4.2", "host.name": "web-1", "deployment.environment.name": "prod",
		"telemetry.sdk.language": "go", "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.version": "1.38.0"},
	"cart":    {"service.name": "cart", "host.name": "cart-1", "k8s.pod.name": "cart-7d9f", "process.pid": int64(4242)},
	"payment": {"service.name": "payment", "host.name": "pay-1", "cloud.region": "eu-west-1"},
	"worker":  {"service.name": "worker", "host.name": "worker-1"},
	"users":   {"service.name": "users", "host.name": "users-1"},
}

func (b *builder) scope(svc string) ptrace.ScopeSpans {
	if ss, ok := b.scopes[svc]; ok {
		return ss
	}
	rs := b.td.ResourceSpans().AppendEmpty()
	for k, v := range resources[svc] {
		b.put(rs.Resource().Attributes(), k, v)
	}
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("shop/" + svc)
	if svc != "worker" {
		ss.Scope().SetVersion("0.9.0")
	}
	b.scopes[svc] = ss
	return ss
}

// span adds a span of svc from..to ms after the trace's start (trace n
// starts n minutes after T0), with attributes as key, value pairs.
func (b *builder) span(svc, name string, parent pcommon.SpanID, kind ptrace.SpanKind, from, to float64, attrs ...any) ptrace.Span {
	b.n++
	sp := b.scope(svc).Spans().AppendEmpty()
	sp.SetTraceID(TraceID(b.trace))
	sp.SetSpanID(pcommon.SpanID{0x5b, byte(b.trace), 7: b.n})
	sp.SetParentSpanID(parent)
	sp.SetName(name)
	sp.SetKind(kind)
	base := b.t0.Add(time.Duration(b.trace) * time.Minute)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(base.Add(ms(from))))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(base.Add(ms(to))))
	for i := 0; i+1 < len(attrs); i += 2 {
		b.put(sp.Attributes(), fmt.Sprint(attrs[i]), attrs[i+1])
	}
	return sp
}

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func (b *builder) event(sp ptrace.Span, name string, at float64, attrs ...any) {
	ev := sp.Events().AppendEmpty()
	ev.SetName(name)
	ev.SetTimestamp(pcommon.NewTimestampFromTime(b.t0.Add(time.Duration(b.trace)*time.Minute + ms(at))))
	for i := 0; i+1 < len(attrs); i += 2 {
		b.put(ev.Attributes(), fmt.Sprint(attrs[i]), attrs[i+1])
	}
}

// Corpus returns the corpus' traces, oldest first, each as its own OTLP
// request; the same on every call for a given t0.
func Corpus(t0 time.Time) ([]ptrace.Traces, error) {
	var out []ptrace.Traces
	for n := 1; n <= Traces; n++ {
		b := &builder{td: ptrace.NewTraces(), t0: t0, trace: n, scopes: map[string]ptrace.ScopeSpans{}}
		traces[n](b)
		if b.err != nil {
			return nil, b.err
		}
		out = append(out, b.td)
	}
	return out, nil
}

var none pcommon.SpanID // no parent

const (
	server   = ptrace.SpanKindServer
	client   = ptrace.SpanKindClient
	producer = ptrace.SpanKindProducer
	consumer = ptrace.SpanKindConsumer
	internal = ptrace.SpanKindInternal
)

// checkout is web → cart → redis and web → payment → postgres.
func checkout(b *builder, failed bool) {
	code := int64(200)
	if failed {
		code = 500
	}
	root := b.span("web", "GET /checkout", none, server, 0, 120, "http.request.method", "GET", "http.route", "/checkout",
		"url.path", "/checkout", "http.response.status_code", code)
	callCart := b.span("web", "POST cart", root.SpanID(), client, 5, 45, "http.request.method", "POST", "server.address", "cart", "peer.service", "cart")
	cart := b.span("cart", "POST /cart", callCart.SpanID(), server, 7, 43, "http.route", "/cart", "http.response.status_code", int64(200))
	redis := b.span("cart", "redis GET", cart.SpanID(), client, 10, 14, "db.system", "redis", "db.operation", "GET")
	callPay := b.span("web", "POST payment", root.SpanID(), client, 50, 110, "http.request.method", "POST", "server.address", "payment")
	payCode := int64(200)
	if failed {
		payCode = 402
	}
	charge := b.span("payment", "POST /charge", callPay.SpanID(), server, 52, 108, "http.route", "/charge", "http.response.status_code", payCode,
		"payment.amount", 42.5, "payment.approved", !failed, "payment.ledger.id", int64(9007199254740993))
	sel := b.span("payment", "SELECT accounts", charge.SpanID(), client, 60, 80, "db.system", "postgresql", "db.statement", "SELECT * FROM accounts WHERE id = $1")
	b.event(charge, "card.validated", 55, "card.brand", "visa", "card.last4", int64(4242))
	if !failed {
		sel.Status().SetCode(ptrace.StatusCodeOk)
		return
	}
	root.Status().SetCode(ptrace.StatusCodeError)
	charge.Status().SetCode(ptrace.StatusCodeError)
	charge.Status().SetMessage("card declined")
	b.event(charge, "exception", 100, "exception.type", "CardDeclined", "exception.message", "card declined", "exception.escaped", false)
	redis.Status().SetCode(ptrace.StatusCodeOk)
	cart.Attributes().PutEmptyBytes("session.token").FromRaw([]byte{0xde, 0xad, 0xbe, 0xef})
}

var traces = map[int]func(b *builder){
	1: func(b *builder) { checkout(b, false) },
	2: func(b *builder) { checkout(b, true) },
	// An order: a message to a worker (producer → consumer), the
	// consumer linked to trace 1's root (FOLLOWS_FROM another trace) and
	// to its producer.
	3: func(b *builder) {
		root := b.span("web", "POST /order", none, server, 0, 30, "http.request.method", "POST", "http.route", "/order")
		pub := b.span("web", "publish orders", root.SpanID(), producer, 5, 8, "messaging.system", "kafka", "messaging.destination.name", "orders")
		consume := b.span("worker", "process orders", pub.SpanID(), consumer, 40, 90, "messaging.system", "kafka")
		l := consume.Links().AppendEmpty()
		l.SetTraceID(TraceID(1))
		l.SetSpanID(pcommon.SpanID{0x5b, 1, 7: 1})
		l.Attributes().PutStr("link.reason", "retry of")
		l = consume.Links().AppendEmpty()
		l.SetTraceID(TraceID(3))
		l.SetSpanID(pub.SpanID())
		b.span("worker", "update inventory", consume.SpanID(), internal, 45, 80, "inventory.items", []any{"sku-1", "sku-2"})
		cleanup := b.span("worker", "cleanup", consume.SpanID(), ptrace.SpanKindUnspecified, 85, 88)
		cleanup.Status().SetCode(ptrace.StatusCodeOk)
		cleanup.TraceState().FromRaw("vendor=abc")
	},
	// A span whose parent never arrived.
	4: func(b *builder) {
		ghost := pcommon.SpanID{0x5b, 4, 6: 0xde, 7: 0xad}
		cart := b.span("cart", "POST /cart", ghost, server, 0, 20, "http.route", "/cart", "http.response.status_code", int64(200))
		b.span("cart", "redis SET", cart.SpanID(), client, 5, 9, "db.system", "redis", "db.operation", "SET")
	},
	// Clock skew: the users service's server span starts 25ms before
	// the web client span that called it.
	5: func(b *builder) {
		root := b.span("web", "GET /profile", none, server, 0, 50, "http.route", "/profile")
		call := b.span("web", "GET user", root.SpanID(), client, 5, 40, "server.address", "users")
		b.span("users", "GET /user", call.SpanID(), server, -20, 25, "http.route", "/user")
	},
	// A slow search, with an internal span and one of no kind.
	6: func(b *builder) {
		root := b.span("web", "GET /search", none, server, 0, 2500, "http.route", "/search", "http.response.status_code", int64(200))
		b.span("web", "render", root.SpanID(), internal, 2000, 2400)
		cache := b.span("web", "cache lookup", root.SpanID(), ptrace.SpanKindUnspecified, 10, 20, "cache.hit", true)
		cache.Status().SetCode(ptrace.StatusCodeOk)
	},
	// A 64-bit trace id.
	7: func(b *builder) {
		b.span("web", "GET /health", none, server, 0, 1, "http.route", "/health")
	},
}

// Push sends the corpus over OTLP/HTTP (protobuf) to url (…/v1/traces),
// one request per trace, oldest first.
func Push(ctx context.Context, c *http.Client, url string, t0 time.Time) error {
	var m ptrace.ProtoMarshaler
	corpus, err := Corpus(t0)
	if err != nil {
		return err
	}
	for i, td := range corpus {
		body, err := m.MarshalTraces(td)
		if err != nil {
			return fmt.Errorf("encode trace %d: %w", i+1, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("push trace %d: %w", i+1, err)
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("push trace %d: %w", i+1, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("push trace %d: %s: %s", i+1, resp.Status, msg)
		}
	}
	return nil
}
