package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/lumenobs/lumen/internal/tlsconf"
	"github.com/lumenobs/lumen/internal/tlsconf/tlstest"
	"github.com/lumenobs/lumen/query/ruler"
)

// webhookAlert is an alert as Alertmanager's webhook delivers it.
type webhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
}

// receiver is a webhook receiver: what a real Alertmanager delivers.
type receiver struct {
	mu     sync.Mutex
	alerts []received
}

type received struct {
	at time.Time
	webhookAlert
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var msg struct {
		Alerts []webhookAlert `json:"alerts"`
	}
	if err := json.NewDecoder(req.Body).Decode(&msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, a := range msg.Alerts {
		r.alerts = append(r.alerts, received{time.Now(), a})
	}
	r.mu.Unlock()
}

// find is the first alert delivered with that name and status.
func (r *receiver) find(name, status string) (received, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.alerts {
		if a.Labels["alertname"] == name && a.Status == status {
			return a, true
		}
	}
	return received{}, false
}

// alertmanagerWithHook is a real Alertmanager delivering to a webhook
// receiver: the receiver and the Alertmanager's URL.
func alertmanagerWithHook(t *testing.T) (*receiver, string) {
	t.Helper()
	hook := &receiver{}
	hs := httptest.NewServer(hook)
	t.Cleanup(hs.Close)
	return hook, startAlertmanager(t, hs.URL)
}

// startAlertmanager runs Debian's Alertmanager on loopback, delivering
// every alert to hook; it returns its URL.
func startAlertmanager(t *testing.T, hook string) string {
	t.Helper()
	return startAlertmanagerWith(t, hook, "", http.DefaultClient)
}

// startAlertmanagerWith runs Alertmanager with a web configuration (TLS,
// basic auth: exporter-toolkit's web.yml) when webConfig is not empty;
// client reaches it.
func startAlertmanagerWith(t *testing.T, hook, webConfig string, client *http.Client) string {
	t.Helper()
	bin := ""
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		bin = lookTool(t, "prometheus-alertmanager", "apt-get install prometheus-alertmanager")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: true
`, hook)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "am.yml"), []byte(cfg), 0o600))
	addr := freeAddr(t)
	args := []string{"--config.file=" + filepath.Join(dir, "am.yml"), "--storage.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--cluster.listen-address=", "--log.level=warn"}
	scheme := "http"
	if webConfig != "" {
		args = append(args, "--web.config.file="+webConfig)
		scheme = "https"
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	u := scheme + "://" + addr
	require.Eventually(t, func() bool {
		resp, err := client.Get(u + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "alertmanager did not become ready")
	return u
}

// writeSample remote-writes one sample of one series.
func writeSample(t *testing.T, s *server, name string, lbls map[string]string, ts time.Time, v float64) {
	t.Helper()
	series := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}}}
	for k, val := range lbls {
		series.Labels = append(series.Labels, prompb.Label{Name: k, Value: val})
	}
	req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series}}
	req.Timeseries[0].Samples = []prompb.Sample{{Timestamp: ts.UnixMilli(), Value: v}}
	pb, err := req.Marshal()
	require.NoError(t, err)
	code, _, body := remoteWrite(t, s, snappy.Encode(nil, pb), 1)
	require.Equal(t, http.StatusNoContent, code, body)
}

// apiAlert is an alert of /api/v1/alerts.
type apiAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

func alertsOf(t *testing.T, base, path string) []apiAlert {
	t.Helper()
	resp, err := http.Get(base + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct {
		Data struct {
			Alerts []apiAlert `json:"alerts"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Data.Alerts
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

const queueRules = `groups:
  - name: queue
    interval: 1s
    rules:
      - alert: QueueTooLong
        expr: queue_length > 100
        for: 3s
        labels:
          severity: page
        annotations:
          summary: "queue {{ $labels.queue }} holds {{ $value }}"
`

const shopLogRules = `groups:
  - name: shop-errors
    interval: 1s
    rules:
      - record: app:errors:count1m
        expr: sum by (app) (count_over_time({app="shop"} |= "error" [1m]))
      - alert: ShopErrorsLogged
        expr: sum by (app) (count_over_time({app="shop"} |= "error" [1m])) > 2
        labels:
          severity: ticket
        annotations:
          summary: "{{ $labels.app }} logged {{ $value }} errors in a minute"
`

// TestAlertsReachAlertmanager: PromQL and LogQL alerting rules evaluated
// over pushed data, their alerts sent to a real Alertmanager and
// delivered by its webhook: pending, then firing once 'for' has passed,
// templated, linked to Lumen's UI, and resolved.
func TestAlertsReachAlertmanager(t *testing.T) {
	hook, am := alertmanagerWithHook(t)

	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.RuleFiles = []string{writeFile(t, dir, "queue.yml", queueRules)}
	cfg.LogQLRuleFiles = []string{writeFile(t, dir, "shop.yml", shopLogRules)}
	cfg.Rules.EvaluationInterval = time.Second
	cfg.Rules.ExternalURL = "http://lumen.example:4320/"
	require.NoError(t, alertmanagerURLs(&cfg, am))
	require.NoError(t, cfg.Validate())
	s := startServer(t, cfg)

	// PromQL: pending, then firing no sooner than 'for' after it became
	// active.
	writeSample(t, s, "queue_length", map[string]string{"queue": "a"}, time.Now(), 500)
	writeSample(t, s, "queue_length", map[string]string{"queue": "b"}, time.Now(), 3)
	var pending apiAlert
	require.Eventually(t, func() bool {
		for _, a := range alertsOf(t, s.api(""), "/api/v1/alerts") {
			if a.Labels["alertname"] == "QueueTooLong" {
				pending = a
				return true
			}
		}
		return false
	}, 10*time.Second, 100*time.Millisecond)
	require.Equal(t, "pending", pending.State, "a 3s 'for' starts pending")
	require.Equal(t, "a", pending.Labels["queue"])

	var fired received
	require.Eventually(t, func() bool {
		var ok bool
		fired, ok = hook.find("QueueTooLong", "firing")
		return ok
	}, 30*time.Second, 100*time.Millisecond, "Alertmanager delivered no firing QueueTooLong")
	require.GreaterOrEqual(t, fired.at.Sub(pending.ActiveAt), 3*time.Second, "fired before its 'for'")
	require.Equal(t, map[string]string{"alertname": "QueueTooLong", "queue": "a", "severity": "page"}, fired.Labels)
	require.Equal(t, "queue a holds 500", fired.Annotations["summary"])
	require.True(t, strings.HasPrefix(fired.GeneratorURL, "http://lumen.example:4320/graph?g0.expr=queue_length"), fired.GeneratorURL)
	link := fired.Annotations[ruler.TracesURLAnnotation]
	require.True(t, strings.HasPrefix(link, "http://lumen.example:4320/#/alert?"), link)
	lq, err := url.ParseQuery(link[strings.Index(link, "?")+1:])
	require.NoError(t, err)
	require.Equal(t, "queue_length > 100", lq.Get("expr"))
	require.Contains(t, lq.Get("labels"), `queue="a"`)

	// The generatorURL's path opens the metrics page on the expression.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(s.api(fired.GeneratorURL[len("http://lumen.example:4320"):]))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "/#/metrics?q=queue_length%20%3E%20100", resp.Header.Get("Location"))

	// /api/v1/alertmanagers names the Alertmanager.
	_, ams := promGet(t, s, "/api/v1/alertmanagers", nil)
	require.Contains(t, string(ams.Data), strings.TrimPrefix(am, "http://")+"/api/v2/alerts")

	// Resolved once the queue drains.
	writeSample(t, s, "queue_length", map[string]string{"queue": "a"}, time.Now(), 5)
	require.Eventually(t, func() bool {
		_, ok := hook.find("QueueTooLong", "resolved")
		return ok
	}, 30*time.Second, 100*time.Millisecond, "Alertmanager delivered no resolved QueueTooLong")

	// LogQL: lines pushed, the alert fires, the recording rule's result is
	// a metric series PromQL reads.
	now := time.Now()
	var entries []push.Entry
	for i := range 5 {
		entries = append(entries, push.Entry{Timestamp: now.Add(time.Duration(i) * time.Millisecond),
			Line: fmt.Sprintf("level=error msg=\"payment failed\" trace_id=%032x", i+1)})
	}
	entries = append(entries, push.Entry{Timestamp: now.Add(10 * time.Millisecond), Line: "level=info msg=ok"})
	code, body := lokiPush(t, s, "application/x-protobuf", promtailBody(t, push.Stream{Labels: `{app="shop"}`, Entries: entries}))
	require.Equal(t, http.StatusNoContent, code, body)
	var logFired received
	require.Eventually(t, func() bool {
		var ok bool
		logFired, ok = hook.find("ShopErrorsLogged", "firing")
		return ok
	}, 30*time.Second, 100*time.Millisecond, "Alertmanager delivered no firing ShopErrorsLogged")
	require.Equal(t, "shop logged 5 errors in a minute", logFired.Annotations["summary"])
	require.Equal(t, "ticket", logFired.Labels["severity"])
	require.True(t, strings.HasPrefix(logFired.GeneratorURL, "http://lumen.example:4320/#/logs?q="), logFired.GeneratorURL)
	require.Eventually(t, func() bool {
		_, r := promGet(t, s, "/api/v1/query", url.Values{"query": {`app:errors:count1m{app="shop"}`}})
		return strings.Contains(string(r.Data), `"5"`)
	}, 10*time.Second, 100*time.Millisecond, "the LogQL recording rule wrote no series")

	// Loki's ruler APIs list the LogQL group, Prometheus' the PromQL one.
	logAlerts := alertsOf(t, s.api(""), "/prometheus/api/v1/alerts")
	require.Len(t, logAlerts, 1)
	require.Equal(t, "firing", logAlerts[0].State)
	_, rules := promGet(t, s, "/prometheus/api/v1/rules", nil)
	require.Contains(t, string(rules.Data), `"name":"shop-errors"`)
	require.NotContains(t, string(rules.Data), `"name":"queue"`)
	_, rules = promGet(t, s, "/api/v1/rules", nil)
	require.Contains(t, string(rules.Data), `"name":"queue"`)
	require.NotContains(t, string(rules.Data), `"name":"shop-errors"`)
	resp, err = http.Get(s.api("/loki/api/v1/rules"))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	var ns map[string][]struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert, Record, Expr string
		} `yaml:"rules"`
	}
	require.NoError(t, yaml.Unmarshal(b, &ns), string(b))
	require.Len(t, ns[cfg.LogQLRuleFiles[0]], 1)
	require.Equal(t, "shop-errors", ns[cfg.LogQLRuleFiles[0]][0].Name)
	require.Equal(t, `sum by (app) (count_over_time({app="shop"} |= "error" [1m])) > 2`, ns[cfg.LogQLRuleFiles[0]][0].Rules[1].Expr)

	// The alert's evidence: the lines it counts, newest first, with their
	// traces.
	_, ev := promGet(t, s, "/api/v1/alert_evidence", url.Values{"lang": {"logql"}, "expr": {shopExpr}, "labels": {`{app="shop"}`},
		"start": {fmt.Sprint(now.Add(-time.Minute).UnixMilli())}, "end": {fmt.Sprint(time.Now().UnixMilli())}})
	var evidence ruler.Evidence
	require.NoError(t, json.Unmarshal(ev.Data, &evidence))
	require.Len(t, evidence.Lines, 5)
	require.Equal(t, fmt.Sprintf("%032x", 5), evidence.Lines[0].TraceID)
	require.Equal(t, fmt.Sprintf("%032x", 1), evidence.Lines[4].TraceID)
}

const shopExpr = `sum by (app) (count_over_time({app="shop"} |= "error" [1m])) > 2`

// TestRecordingRulesEqualInstantQueries: every sample a recording rule
// writes equals a PromQL instant query of its expression at the time it
// was evaluated.
func TestRecordingRulesEqualInstantQueries(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.RuleFiles = []string{writeFile(t, dir, "rec.yml", `groups:
  - name: rec
    interval: 1s
    rules:
      - record: job:http_requests:rate1m
        expr: sum by (job) (rate(http_requests_total[1m]))
      - record: job:http_requests:max
        expr: max by (job) (http_requests_total) * 2
`)}
	cfg.Rules.EvaluationInterval = time.Second
	s := startServer(t, cfg)
	end := time.Now()
	start := end.Add(-10 * time.Minute)
	var req prompb.WriteRequest
	for j, job := range []string{"api", "web"} {
		for i, inst := range []string{"i1", "i2"} {
			ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "instance", Value: inst}, {Name: "job", Value: job}}}
			for k := range 120 {
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: start.Add(time.Duration(k) * 5 * time.Second).UnixMilli(), Value: float64(k * (i + 1) * (j + 3))})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
	}
	pb, err := req.Marshal()
	require.NoError(t, err)
	code, _, msg := remoteWrite(t, s, snappy.Encode(nil, pb), 1)
	require.Equal(t, http.StatusNoContent, code, msg)
	for _, rec := range []struct{ name, expr string }{
		{"job:http_requests:rate1m", "sum by (job) (rate(http_requests_total[1m]))"},
		{"job:http_requests:max", "max by (job) (http_requests_total) * 2"},
	} {
		var m []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		}
		require.Eventually(t, func() bool {
			_, r := promGet(t, s, "/api/v1/query", url.Values{"query": {rec.name + "[30s]"}})
			m = nil
			require.NoError(t, json.Unmarshal(r.Data, &struct {
				Result any `json:"result"`
			}{&m}))
			return len(m) == 2 && len(m[0].Values) >= 3 && len(m[1].Values) >= 3
		}, 20*time.Second, 200*time.Millisecond, "%s: fewer than 3 evaluations recorded", rec.name)
		for _, series := range m {
			for _, v := range series.Values {
				ts := fmt.Sprintf("%.3f", v[0].(float64))
				_, r := promGet(t, s, "/api/v1/query", url.Values{"query": {rec.expr}, "time": {ts}})
				var inst []struct {
					Metric map[string]string `json:"metric"`
					Value  [2]any            `json:"value"`
				}
				require.NoError(t, json.Unmarshal(r.Data, &struct {
					Result any `json:"result"`
				}{&inst}))
				found := false
				for _, i := range inst {
					if i.Metric["job"] == series.Metric["job"] {
						require.Equal(t, v[1], i.Value[1], "%s{job=%q} at %s", rec.name, series.Metric["job"], ts)
						found = true
					}
				}
				require.True(t, found, "%s at %s: the instant query has no job %q", rec.expr, ts, series.Metric["job"])
			}
		}
	}
}

// TestAlertStateSurvivesSIGKILL: a firing alert is firing again at once
// after kill -9 and a restart, with the time it became active, from
// ALERTS_FOR_STATE, as Prometheus restores it.
func TestAlertStateSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	rules := writeFile(t, dir, "slow.yml", strings.ReplaceAll(queueRules, "for: 3s", "for: 8s"))
	conf := writeFile(t, dir, "lumen.yml", "rules:\n  evaluation_interval: 1s\n  for_grace_period: 1s\n")
	args := fmt.Sprintf("serve --config %s --rules %s --data-dir %s --http-addr %s --otlp-grpc-addr %s --otlp-http-addr %s --retention 0",
		conf, rules, cfg.DataDir, cfg.HTTPAddr, cfg.OTLP.GRPCAddr, cfg.OTLP.HTTPAddr)
	cmd := startLumenChild(t, args, cfg.HTTPAddr, io.Discard)
	s := &server{cfg: cfg}
	writeSample(t, s, "queue_length", map[string]string{"queue": "a"}, time.Now(), 500)
	before := waitFiring(t, s.api(""), "/api/v1/alerts", 30*time.Second)
	time.Sleep(1500 * time.Millisecond) // an evaluation after firing writes ALERTS_FOR_STATE again
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	restarted := time.Now()
	startLumenChild(t, args, cfg.HTTPAddr, io.Discard)
	after := waitFiring(t, s.api(""), "/api/v1/alerts", 30*time.Second)
	require.Less(t, time.Since(restarted), 8*time.Second+30*time.Second, "sanity")
	require.True(t, after.ActiveAt.Before(restarted), "activeAt %s is after the restart (%s): the state was not restored", after.ActiveAt, restarted)
	require.Equal(t, before.ActiveAt.Unix(), after.ActiveAt.Unix(), "activeAt restored to the second")
}

// TestRuleFileErrors: rule files with errors are refused at start and on
// reload, each error with its file, line and column, group and rule; a
// failed reload keeps the rules before.
func TestRuleFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yml", `groups:
  - name: g
    rules:
      - record: x:y
        expr: sum by (job) (up
      - alert: NoFor
        expr: up == 0
        for: 5q
`)
	err := run(t.Context(), []string{"check-config", "--rules", bad}, io.Discard, io.Discard)
	require.Error(t, err)
	require.Contains(t, err.Error(), "bad.yml")
	require.Contains(t, err.Error(), "8:14") // the YAML decoder stops at the bad duration first
	bad2 := writeFile(t, dir, "bad2.yml", "groups:\n  - name: g\n    rules:\n      - record: x:y\n        expr: sum by (job) (up\n")
	err = run(t.Context(), []string{"check-config", "--rules", bad2}, io.Discard, io.Discard)
	require.ErrorContains(t, err, `bad2.yml: 5:15: group "g", rule 1, "x:y": could not parse expression`)
	logBad := writeFile(t, dir, "logbad.yml", "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: '{app=\"x\"} |= \"error\"'\n")
	err = run(t.Context(), []string{"check-config", "--logql-rules", logBad}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "is a log query: a rule needs a metric query")
	err = run(t.Context(), []string{"check-config", "--rules", filepath.Join(dir, "missing-*.yml")}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "no file matches")
	var out strings.Builder
	good := writeFile(t, dir, "good.yml", queueRules)
	require.NoError(t, run(t.Context(), []string{"check-config", "--rules", good, "--rules-builtin", "spanmetrics,lumen"}, &out, io.Discard))
	require.Contains(t, out.String(), "rules of tenant default: 3 groups, 14 rules")

	// Reload: a broken file is refused with its position, the old rules stay.
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.RuleFiles = []string{good}
	cfg.Rules.ReloadInterval = 0 // only SIGHUP and /-/reload here
	s := startServer(t, cfg)
	require.NoError(t, os.WriteFile(good, []byte(strings.ReplaceAll(queueRules, "queue_length > 100", "queue_length >")), 0o600))
	code, body := post(t, s.api("/-/reload"), "text/plain", nil)
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, body, `good.yml: 6:15: group "queue", rule 1, "QueueTooLong": could not parse expression`)
	_, rules := promGet(t, s, "/api/v1/rules", nil)
	require.Contains(t, string(rules.Data), `"name":"QueueTooLong"`)
	metrics := get(t, s.api("/metrics"))
	require.Contains(t, metrics, "lumen_rules_config_last_reload_successful 0")

	// Mended, and reloaded on SIGHUP.
	require.NoError(t, os.WriteFile(good, []byte(strings.ReplaceAll(queueRules, "QueueTooLong", "QueueFull")), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		_, rules := promGet(t, s, "/api/v1/rules", nil)
		return strings.Contains(string(rules.Data), `"name":"QueueFull"`)
	}, 10*time.Second, 50*time.Millisecond, "SIGHUP did not reload the rules")
	require.Contains(t, get(t, s.api("/metrics")), "lumen_rules_config_last_reload_successful 1")
}

func get(t *testing.T, u string) string {
	t.Helper()
	code, body := fetch(t, u)
	require.Equal(t, http.StatusOK, code, body)
	return body
}

// fetch is the status and body of a GET of u.
func fetch(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestBuiltinRules: the ready-made sets load and evaluate without error
// over real data; with "lumen" on, Lumen's own metrics are in its store.
func TestBuiltinRules(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Rules.Builtin = []string{"spanmetrics", "lumen"}
	cfg.Rules.EvaluationInterval = time.Second
	cfg.SpanMetrics.Interval = 200 * time.Millisecond
	s := startServer(t, cfg)
	sendCallTrees(t, s, &seqIDs{}, 3, time.Now().Add(-time.Minute))
	require.Eventually(t, func() bool {
		_, r := promGet(t, s, "/api/v1/query", url.Values{"query": {`lumen_ingest_items_received_total{job="lumen", signal="traces"}`}})
		return strings.Contains(string(r.Data), `"instance"`)
	}, 15*time.Second, 100*time.Millisecond, "Lumen's own metrics are not in its store")
	type rule struct {
		Name, Health, LastError string
		LastEvaluation          time.Time
	}
	var groups []struct {
		Name  string
		Rules []rule
	}
	require.Eventually(t, func() bool {
		_, r := promGet(t, s, "/api/v1/rules", nil)
		var d struct{ Groups json.RawMessage }
		require.NoError(t, json.Unmarshal(r.Data, &d))
		groups = nil
		require.NoError(t, json.Unmarshal(d.Groups, &groups))
		for _, g := range groups {
			for _, r := range g.Rules {
				if r.LastEvaluation.Year() < 2000 {
					return false
				}
			}
		}
		return len(groups) == 2
	}, 90*time.Second, 500*time.Millisecond, "the ready-made groups were not all evaluated")
	for _, g := range groups {
		for _, r := range g.Rules {
			require.Equal(t, "ok", r.Health, "%s/%s: %s", g.Name, r.Name, r.LastError)
		}
	}
	// The recording rules over span metrics have values.
	require.Eventually(t, func() bool {
		_, r := promGet(t, s, "/api/v1/query", url.Values{"query": {`service:traces_spanmetrics_calls:rate5m`}})
		return strings.Contains(string(r.Data), `"frontend"`)
	}, 90*time.Second, 500*time.Millisecond, "service:traces_spanmetrics_calls:rate5m has no frontend series")
}

// waitFiring is the first firing alert of the API at base+path.
func waitFiring(t *testing.T, base, path string, limit time.Duration) apiAlert {
	t.Helper()
	var firing apiAlert
	require.Eventually(t, func() bool {
		for _, a := range alertsOf(t, base, path) {
			if a.State == "firing" {
				firing = a
				return true
			}
		}
		return false
	}, limit, 100*time.Millisecond, "no alert fired at %s", path)
	return firing
}

// TestTenantRules: with tenants, each tenant's rules read its own data
// only, its groups are listed to it alone, and its alerts reach
// Alertmanager with its tenant label.
func TestTenantRules(t *testing.T) {
	hook, am := alertmanagerWithHook(t)
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.Tenants.Enabled = true
	cfg.RuleFiles = []string{writeFile(t, dir, "default.yml", queueRules)}
	cfg.Tenants.Rules = map[string]TenantRules{"team-b": {RuleFiles: []string{writeFile(t, dir, "team-b.yml",
		strings.ReplaceAll(strings.ReplaceAll(queueRules, "QueueTooLong", "TeamBQueue"), "name: queue", "name: team-b-queue"))}}}
	cfg.Rules.EvaluationInterval = time.Second
	require.NoError(t, alertmanagerURLs(&cfg, am))
	require.NoError(t, cfg.Validate())
	s := startServer(t, cfg)

	// Only team-b's queue is long; the default tenant's is short.
	write := func(tenant string, v float64) {
		req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "queue_length"}, {Name: "queue", Value: "a"}},
			Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: v}}}}}
		pb, err := req.Marshal()
		require.NoError(t, err)
		code, body := post(t, s.api("/api/v1/write"), "application/x-protobuf", snappy.Encode(nil, pb),
			"Content-Encoding", "snappy", "X-Prometheus-Remote-Write-Version", "0.1.0", "X-Scope-OrgID", tenant)
		require.Equal(t, http.StatusNoContent, code, body)
	}
	write("default", 5)
	write("team-b", 700)
	var fired received
	require.Eventually(t, func() bool {
		var ok bool
		fired, ok = hook.find("TeamBQueue", "firing")
		return ok
	}, 30*time.Second, 100*time.Millisecond, "team-b's alert was not delivered")
	require.Equal(t, "team-b", fired.Labels["tenant"])
	require.Contains(t, fired.Annotations[ruler.TracesURLAnnotation], "tenant=team-b")
	_, ok := hook.find("QueueTooLong", "firing")
	require.False(t, ok, "the default tenant's rule fired on team-b's data")

	groups := func(tenant string) string {
		code, body := apiGet(t, s, "/api/v1/rules", nil, "X-Scope-OrgID", tenant)
		require.Equal(t, http.StatusOK, code, string(body))
		return string(body)
	}
	require.Contains(t, groups("team-b"), `"name":"team-b-queue"`)
	require.NotContains(t, groups("team-b"), `"name":"queue"`)
	require.Contains(t, groups("default"), `"name":"queue"`)
	require.NotContains(t, groups("default"), `"name":"team-b-queue"`)
	require.NotContains(t, groups("team-c"), `-queue"`, "a tenant without rules lists none")
}

// TestRuleFilesReloadOnChange: an edited rule file, and a new file a glob
// matches, are read without a signal (as a Kubernetes ConfigMap update
// arrives).
func TestRuleFilesReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yml", queueRules)
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.RuleFiles = []string{filepath.Join(dir, "*.yml")}
	cfg.Rules.ReloadInterval = 100 * time.Millisecond
	s := startServer(t, cfg)
	has := func(name string) func() bool {
		return func() bool {
			_, r := promGet(t, s, "/api/v1/rules", nil)
			return strings.Contains(string(r.Data), `"name":"`+name+`"`)
		}
	}
	require.True(t, has("QueueTooLong")())
	writeFile(t, dir, "a.yml", strings.ReplaceAll(queueRules, "QueueTooLong", "QueueFull"))
	require.Eventually(t, has("QueueFull"), 10*time.Second, 50*time.Millisecond, "the edited file was not read")
	writeFile(t, dir, "b.yml", strings.ReplaceAll(strings.ReplaceAll(queueRules, "QueueTooLong", "Second"), "name: queue", "name: second"))
	require.Eventually(t, has("Second"), 10*time.Second, 50*time.Millisecond, "the new file was not read")
	// A broken edit keeps the rules, once (not retried until it changes).
	writeFile(t, dir, "b.yml", "groups: [")
	require.Eventually(t, func() bool {
		return strings.Contains(get(t, s.api("/metrics")), "lumen_rules_config_last_reload_successful 0")
	}, 10*time.Second, 50*time.Millisecond)
	require.True(t, has("Second")())
}

// TestAlertmanagerOverTLSWithBasicAuth: alerts reach an Alertmanager
// served over TLS that asks for basic auth, with the TLS options Lumen's
// other clients take and the password read from a file.
func TestAlertmanagerOverTLSWithBasicAuth(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "am")
	cert, key := ca.Issue(t, "alertmanager", "127.0.0.1")
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	web := writeFile(t, dir, "web.yml", fmt.Sprintf("tls_server_config: {cert_file: %s, key_file: %s}\nbasic_auth_users: {lumen: %q}\n", cert, key, hash))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	authed := &http.Client{Transport: basicAuth{"lumen", "s3cret", client.Transport}}
	hook := &receiver{}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	am := startAlertmanagerWith(t, hs.URL, web, authed)
	// Without the password, Alertmanager refuses: the check below is not
	// passed by an open Alertmanager.
	resp, err := client.Get(am + "/api/v2/status")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.RuleFiles = []string{writeFile(t, dir, "queue.yml", queueRules)}
	cfg.Rules.EvaluationInterval = time.Second
	cfg.Alerting.Alertmanagers = []ruler.AlertmanagerConfig{{URL: am, TLS: tlsconf.Client{CAFile: ca.File},
		BasicAuth: &ruler.BasicAuth{Username: "lumen", PasswordFile: writeFile(t, dir, "am-password", "s3cret\n")}}}
	require.NoError(t, cfg.Validate())
	s := startServer(t, cfg)
	writeSample(t, s, "queue_length", map[string]string{"queue": "a"}, time.Now(), 500)
	require.Eventually(t, func() bool {
		_, ok := hook.find("QueueTooLong", "firing")
		return ok
	}, 30*time.Second, 100*time.Millisecond, "the alert did not reach the Alertmanager over TLS")
	require.Contains(t, get(t, s.api("/metrics")), `prometheus_notifications_errors_total{alertmanager="`+am+`/api/v2/alerts"} 0`)
}

// basicAuth adds a user's basic auth to every request.
type basicAuth struct {
	user, pass string
	next       http.RoundTripper
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pass)
	return b.next.RoundTrip(r)
}
