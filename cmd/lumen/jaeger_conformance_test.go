package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/conformance/jaegerconf"
)

const jaegerconfDir = "../../internal/conformance/jaegerconf/testdata"

// TestJaegerConformance sends the Jaeger conformance corpus to Lumen over
// OTLP exactly as `make jaeger-goldens` sent it to a real Jaeger v2, makes
// every query of the corpus of Lumen's Jaeger API and compares the
// answers with Jaeger's, field by field. A query with a documented
// difference (docs/api.md) is compared with Jaeger's answer adjusted as
// documented.
func TestJaegerConformance(t *testing.T) {
	g, err := jaegerconf.LoadGoldens(filepath.Join(jaegerconfDir, "goldens.json"))
	require.NoError(t, err)
	cfg := testConfig(t, t.TempDir())
	cfg.SpanMetrics.Interval = 100 * time.Millisecond
	s := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &http.Client{Timeout: time.Minute}
	t0 := jaegerconf.T0(time.Now())
	require.NoError(t, jaegerconf.Push(ctx, c, "http://"+cfg.OTLP.HTTPAddr+"/v1/traces", t0))

	qs := jaegerconf.Queries(t0, time.Now())
	equal, documented := 0, 0
	var failures []string
	for _, q := range qs {
		_, ok := g.Answers[q.Name]
		require.True(t, ok, "query %q has no golden: run make jaeger-goldens", q.Name)
		var same bool
		var where string
		// The service graph is written every span_metrics.interval: the
		// dependencies may take a few of them to show every call.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			got, err := jaegerconf.Run(ctx, c, s.api("/jaeger"), q, t0)
			require.NoError(t, err)
			if same, where = jaegerconf.Compare(g, q, got); same || q.Path != "/api/dependencies" || time.Now().After(deadline) {
				break
			}
		}
		switch {
		case !same:
			failures = append(failures, fmt.Sprintf("%q differs from %s: %s", q.Name, g.Reference, where))
		case q.Differs != "":
			documented++
		default:
			equal++
		}
	}
	summary := fmt.Sprintf("Jaeger query API conformance against %s: %d queries, %d answered as Jaeger does, %d as Jaeger does but for a documented difference, %d differ",
		g.Reference, len(qs), equal, documented, len(failures))
	t.Log(summary)
	report(t, "jaeger", summary)
	require.Empty(t, failures, "%s\n%s", summary, strings.Join(failures, "\n"))
}
