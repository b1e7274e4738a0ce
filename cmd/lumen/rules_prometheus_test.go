package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/promtest"
)

// The rules both servers evaluate in TestRulesAPIMatchesPrometheus: a
// recording rule, an alert that fires, one that stays pending, one that
// never fires, in two groups with their own interval and limit.
const sharedRules = `groups:
  - name: queue
    interval: 1s
    rules:
      - record: job:queue_length:sum
        expr: sum by (job) (queue_length)
      - alert: QueueTooLong
        expr: queue_length > 100
        for: 2s
        labels:
          severity: page
        annotations:
          summary: "queue {{ $labels.queue }} holds {{ $value }}"
      - alert: QueueEmpty
        expr: queue_length < 1
  - name: jobs
    interval: 2s
    limit: 10
    rules:
      - alert: QueueWaiting
        expr: queue_length{queue="b"} > 1
        for: 1h
        keep_firing_for: 5m
        labels:
          severity: ticket
`

// TestRulesAPIMatchesPrometheus: a real Prometheus scrapes a target and
// evaluates a rule file, and remote-writes what it scrapes to Lumen,
// which evaluates the same file. /api/v1/rules and /api/v1/alerts of the
// two agree — groups, rules, queries, states, health, labels,
// annotations, values — once times are set aside; Lumen's answers may
// only add the fields newer Prometheus releases added.
//
// With LUMEN_RULES_GOLDENS set to a Prometheus 3 binary (`make
// rules-goldens` builds v0.315.0 and runs this), that Prometheus is the
// one run, and its answers are written to testdata/rules-api/; every run
// also compares Lumen's answers with those, field for field.
func TestRulesAPIMatchesPrometheus(t *testing.T) {
	prom := os.Getenv("LUMEN_RULES_GOLDENS")
	update := prom != ""
	if !update {
		prom = lookTool(t, "prometheus", "apt-get install prometheus")
	}
	dir := t.TempDir()
	rules := writeFile(t, dir, "shared.yml", sharedRules)
	var scrapes atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, "# TYPE queue_length gauge\nqueue_length{queue=\"a\"} 500\nqueue_length{queue=\"b\"} 3\n")
	}))
	defer target.Close()

	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.RuleFiles = []string{rules}
	cfg.Rules.EvaluationInterval = time.Second
	s := startServer(t, cfg)

	promAddr := freeAddr(t)
	pcfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: app
    static_configs: [{targets: [%q]}]
remote_write:
  - url: http://%s/api/v1/write
    queue_config: {batch_send_deadline: 100ms, max_shards: 1}
`, rules, strings.TrimPrefix(target.URL, "http://"), s.cfg.HTTPAddr)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(pcfg), 0o600))
	stop, _ := promtest.RunPrometheus(t, prom, dir, promAddr)

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + promAddr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond, "Prometheus did not become ready")
	// Both have QueueTooLong firing and have evaluated every rule.
	ready := func(base string) bool {
		var firing, evaluated bool
		for _, a := range alertsOf(t, base, "/api/v1/alerts") {
			firing = firing || (a.Labels["alertname"] == "QueueTooLong" && a.State == "firing")
		}
		r := rulesJSON(t, base)
		evaluated = !strings.Contains(r, `"lastEvaluation":"0001-01-01T00:00:00Z"`)
		return firing && evaluated
	}
	require.Eventually(t, func() bool { return ready("http://"+promAddr) && ready(s.api("")) }, 60*time.Second, 200*time.Millisecond,
		"QueueTooLong did not fire in both")

	for i, path := range []string{"/api/v1/rules", "/api/v1/alerts", "/api/v1/rules?type=alert", "/api/v1/rules?rule_name[]=QueueTooLong&exclude_alerts=true"} {
		want := normalizedAPI(t, "http://"+promAddr+path)
		got := normalizedAPI(t, s.api(path))
		if d := os.Getenv("LUMEN_RULES_DUMP"); d != "" {
			wj, _ := json.MarshalIndent(want, "", " ")
			gj, _ := json.MarshalIndent(got, "", " ")
			_ = os.WriteFile(filepath.Join(d, fmt.Sprintf("prom-%d.json", i)), wj, 0o644)
			_ = os.WriteFile(filepath.Join(d, fmt.Sprintf("lumen-%d.json", i)), gj, 0o644)
		}
		extra := map[string]bool{}
		if strings.Contains(path, "rule_name[]") && !update {
			// Filters Prometheus 2.42 does not have: the goldens alone.
			want = got
		}
		contains(t, path, want, got, extra)
		var keys []string
		for k := range extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		// Fields Prometheus added after Debian's 2.42 (queryOffset; labels: {}
		// of a recording rule without labels, which 2.42 left out), which Lumen's
		// (Prometheus 3's handlers) answers with.
		for _, k := range keys {
			require.Contains(t, []string{"queryOffset", "labels"}, k, "%s: Lumen answers a field Prometheus does not: %s", path, k)
		}
		golden := filepath.Join("testdata", "rules-api", fmt.Sprintf("%d.json", i))
		if update {
			b, err := json.MarshalIndent(map[string]any{"path": path, "answer": want}, "", "  ")
			require.NoError(t, err)
			require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
			require.NoError(t, os.WriteFile(golden, append(b, '\n'), 0o644))
		}
		var g struct {
			Path   string
			Answer any
		}
		b, err := os.ReadFile(golden)
		require.NoError(t, err, "the goldens are written by `make rules-goldens`")
		require.NoError(t, json.Unmarshal(b, &g))
		require.Equal(t, path, g.Path)
		gj, _ := json.Marshal(g.Answer)
		lj, _ := json.Marshal(got)
		require.JSONEq(t, string(gj), string(lj), "%s: Lumen's answer differs from Prometheus 3's (%s)", path, golden)
	}
	stop()
}

func rulesJSON(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/rules")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// normalizedAPI is an API answer with its times and durations of
// evaluation set aside, lists of alerts sorted by their labels.
func normalizedAPI(t *testing.T, u string) any {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var v any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	return normalize(v)
}

func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			switch k {
			case "lastEvaluation", "activeAt":
				v[k] = "<time>"
			case "evaluationTime":
				v[k] = 0
			case "file":
				if f, ok := x.(string); ok {
					v[k] = filepath.Base(f)
				}
			case "instance":
				v[k] = "<target>" // the test target's address
			default:
				v[k] = normalize(x)
			}
		}
		return v
	case []any:
		for i := range v {
			v[i] = normalize(v[i])
		}
		sort.SliceStable(v, func(i, j int) bool {
			a, _ := json.Marshal(labelsOf(v[i]))
			b, _ := json.Marshal(labelsOf(v[j]))
			return string(a) < string(b)
		})
		return v
	}
	return v
}

// labelsOf is an alert's labels (the order of alerts is not the API's
// to keep); other items keep their order.
func labelsOf(v any) any {
	if m, ok := v.(map[string]any); ok {
		if _, isAlert := m["activeAt"]; isAlert {
			return m["labels"]
		}
	}
	return nil
}

// contains checks that got has everything want has, the same; keys got
// has besides are collected in extra.
func contains(t *testing.T, at string, want, got any, extra map[string]bool) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		require.True(t, ok, "%s: Lumen answers %v, Prometheus an object", at, got)
		for k, wv := range w {
			gv, ok := g[k]
			require.True(t, ok, "%s: Lumen's answer has no %q (Prometheus': %v)", at, k, wv)
			contains(t, at+"."+k, wv, gv, extra)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				extra[k] = true
			}
		}
	case []any:
		g, ok := got.([]any)
		require.True(t, ok, "%s: Lumen answers %v, Prometheus a list", at, got)
		require.Len(t, g, len(w), "%s: Prometheus %v, Lumen %v", at, want, got)
		for i := range w {
			contains(t, fmt.Sprintf("%s[%d]", at, i), w[i], g[i], extra)
		}
	default:
		require.Equal(t, want, got, "%s", at)
	}
}
