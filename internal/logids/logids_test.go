package logids

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

const (
	tid  = "4bf92f3577b34da6a3ce929d0e0e4736"
	sid  = "00f067aa0ba902b7"
	tid2 = "0af7651916cd43dd8448eb211c80319c"
	sid2 = "b7ad6b7169203331"
)

func TestFromLine(t *testing.T) {
	cases := []struct {
		name, line, trace, span string
	}{
		{"json snake", `{"level":"info","msg":"charged","trace_id":"` + tid + `","span_id":"` + sid + `"}`, tid, sid},
		{"json camel", `{"traceId":"` + tid + `","spanId":"` + sid + `","msg":"x"}`, tid, sid},
		{"json ID", `{"traceID": "` + tid + `", "spanID": "` + sid + `"}`, tid, sid},
		{"json ECS dotted", `{"@timestamp":"2026-11-29T10:00:00Z","trace.id":"` + tid + `","span.id":"` + sid + `"}`, tid, sid},
		{"json upper hex", `{"trace_id":"` + strings.ToUpper(tid) + `"}`, tid, ""},
		{"logfmt", `level=info msg="charged card" trace_id=` + tid + ` span_id=` + sid, tid, sid},
		{"logfmt quoted", `level=warn traceID="` + tid + `" spanID="` + sid + `" took=3ms`, tid, sid},
		{"text colon", `2026-11-29 10:00:00 ERROR [trace_id: ` + tid + `] payment failed`, tid, ""},
		{"traceparent key", `GET /cart traceparent=00-` + tid + `-` + sid + `-01 status=200`, tid, sid},
		{"traceparent json", `{"traceparent":"00-` + tid2 + `-` + sid2 + `-00"}`, tid2, sid2},
		{"bare traceparent", `forwarding 00-` + tid + `-` + sid + `-01 upstream`, tid, sid},
		{"explicit wins over traceparent", `traceparent=00-` + tid2 + `-` + sid2 + `-01 trace_id=` + tid + ` span_id=` + sid, tid, sid},
		{"64-bit id", `uber trace_id=a3ce929d0e0e4736`, "0000000000000000a3ce929d0e0e4736", ""},
		{"first trace id kept", `trace_id=` + tid + ` trace_id=` + tid2, tid, ""},
		{"escaped json in a string", `{"log":"{\"trace_id\":\"` + tid + `\"}"}`, tid, ""},
		{"span without trace", `span_id=` + sid + ` no trace`, "", ""},
		{"not hex", `trace_id=` + strings.Repeat("z", 32), "", ""},
		{"too short", `trace_id=4bf92f3577b34da6`[:20], "", ""},
		{"all zeros", `trace_id=` + strings.Repeat("0", 32), "", ""},
		{"key not followed by value", `trace_id missing, then ` + tid, "", ""},
		{"other key between", `trace_id=, user=` + tid, "", ""},
		{"similar key", `retrace_id=` + tid + ` mytraceid=` + tid, "", ""},
		{"traceparent version ff", `traceparent=ff-` + tid + `-` + sid + `-01`, "", ""},
		{"traceparent zero span", `traceparent=00-` + tid + `-0000000000000000-01`, "", ""},
		{"plain line", `GET /healthz 200 1ms`, "", ""},
		{"empty", ``, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := FromLine(c.line)
			require.Equal(t, c.trace, hexOrEmpty(got.Trace[:]), "trace id of %q", c.line)
			require.Equal(t, c.span, hexOrEmpty(got.Span[:]), "span id of %q", c.line)
		})
	}
}

func hexOrEmpty(b []byte) string {
	for _, c := range b {
		if c != 0 {
			return hex.EncodeToString(b)
		}
	}
	return ""
}

func TestExtractOrder(t *testing.T) {
	meta := labels.FromStrings("trace_id", tid, "span_id", sid)
	stream := labels.FromStrings("app", "cart", "traceID", tid2)
	line := "trace_id=" + tid2 + " span_id=" + sid2

	got := Extract(meta, stream, line)
	require.Equal(t, tid, got.Trace.String(), "structured metadata first")
	require.Equal(t, sid, got.Span.String())

	got = Extract(labels.EmptyLabels(), stream, line)
	require.Equal(t, tid2, got.Trace.String(), "then stream labels")
	require.True(t, got.Span.IsEmpty(), "the span id comes from where the trace id was found")

	got = Extract(labels.FromStrings("user", "x"), labels.FromStrings("app", "cart"), line)
	require.Equal(t, tid2, got.Trace.String(), "then the line")
	require.Equal(t, sid2, got.Span.String())

	got = Extract(labels.FromStrings("traceparent", "00-"+tid+"-"+sid+"-01"), labels.EmptyLabels(), "")
	require.Equal(t, tid, got.Trace.String(), "a traceparent in metadata")
	require.Equal(t, sid, got.Span.String())

	require.False(t, Extract(labels.FromStrings("trace_id", "nope"), labels.EmptyLabels(), "plain").Found())
}

var hexRun = regexp.MustCompile(`[0-9a-fA-F]{16}`)

func TestHasHexRun(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	const alphabet = "0aF9g- z"
	for range 20000 {
		b := make([]byte, rnd.IntN(60))
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
			if rnd.IntN(3) > 0 && i > 0 {
				b[i] = "0123456789abcdef"[rnd.IntN(16)]
			}
		}
		require.Equal(t, hexRun.Match(b), hasHexRun(string(b), 16), "%q", b)
	}
}

func FuzzFromLine(f *testing.F) {
	f.Add(`{"trace_id":"` + tid + `","span_id":"` + sid + `"}`)
	f.Add(`level=info traceparent=00-` + tid + `-` + sid + `-01`)
	f.Add(`trace.id: ` + tid)
	f.Add("")
	f.Add("x-" + tid[:15] + "-" + tid[:16])
	f.Add("id=" + tid[:16] + "-00000000000000000000000000000000000000000000")
	f.Fuzz(func(t *testing.T, line string) {
		got := FromLine(line)
		// The hex-run check skips only lines the scan finds nothing in.
		require.Equal(t, scanLine(line), got, "%q", line)
		require.Equal(t, hexRun.MatchString(line), hasHexRun(line, 16), "hex run in %q", line)
		if got.Trace.IsEmpty() {
			require.True(t, got.Span.IsEmpty(), "a span id without a trace id in %q", line)
			return
		}
		// What was found must be in the line, as written.
		lower := strings.ToLower(line)
		full, short := got.Trace.String(), got.Trace.String()[16:]
		require.True(t, strings.Contains(lower, full) || ([8]byte(got.Trace[:8]) == [8]byte{} && strings.Contains(lower, short)),
			"trace id %s is not in %q", full, line)
		if !got.Span.IsEmpty() {
			require.Contains(t, lower, got.Span.String(), fmt.Sprintf("span id of %q", line))
		}
	})
}
