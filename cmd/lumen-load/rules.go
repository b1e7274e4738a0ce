package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/snappy"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
)

// The rule-evaluation benchmark (cmd/lumen-load/rules-bench.sh) in three
// modes: -signal rulefile writes N recording rules over the metrics mode's
// series; -signal live sends every series once per 15 s of wall time, as
// a fleet of scraped targets would; -signal ruleeval watches a server's
// rule groups (Lumen's or Prometheus': the same metrics) and its CPU.

// metricLabels are the label sets of the metrics modes: names metric
// names, each on series/names instances.
func metricLabels(series, names int) [][]prompb.Label {
	names = max(names, 1)
	sets := make([][]prompb.Label, series)
	for i := range sets {
		name := fmt.Sprintf("app_metric_%d", i%names)
		if names == 1 {
			name = "http_requests_total"
		}
		sets[i] = []prompb.Label{
			{Name: "__name__", Value: name},
			{Name: "instance", Value: fmt.Sprintf("10.1.%d.%d:9100", (i/names)/250, (i/names)%250)},
			{Name: "job", Value: "node"},
			{Name: "region", Value: "eu-west-1"},
		}
	}
	return sets
}

// writeRuleFile writes n recording rules in groups of 100 (interval 15 s),
// each over one of the 100 metric names, in the shapes dashboards and
// SLO rules use.
func writeRuleFile(path string, n int) error {
	shapes := []string{
		`sum by (job) (rate(app_metric_%d[1m]))`,
		`avg by (region) (app_metric_%d)`,
		`max by (job) (app_metric_%d)`,
		`count by (region) (app_metric_%d > 10)`,
		`sum(rate(app_metric_%d{instance=~"10.1.0.*"}[1m]))`,
		`quantile(0.9, app_metric_%d)`,
		`sum by (instance) (app_metric_%d) > 50`,
		`topk(5, app_metric_%d)`,
	}
	var b strings.Builder
	b.WriteString("groups:\n")
	for i := range n {
		if i%100 == 0 {
			fmt.Fprintf(&b, "  - name: bench-%d\n    interval: 15s\n    rules:\n", i/100)
		}
		fmt.Fprintf(&b, "      - record: bench:rule_%d\n        expr: '%s'\n", i, fmt.Sprintf(shapes[i%len(shapes)], i%100))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// runLive sends every series once per 15 s, time-stamped now, for
// o.duration.
func runLive(o options, out io.Writer) error {
	if err := loopbackOnly(o.httpAddr); err != nil {
		return err
	}
	if err := waitReady(o.httpAddr, 30*time.Second); err != nil {
		return err
	}
	sets := metricLabels(o.series, 100)
	client := &http.Client{Timeout: 30 * time.Second}
	deadline := time.Now().Add(o.duration)
	var sent, refused int64
	var mu sync.Mutex
	for round := 0; time.Now().Before(deadline); round++ {
		next := time.Now().Add(15 * time.Second)
		ts := time.Now().UnixMilli()
		var wg sync.WaitGroup
		work := make(chan int)
		for range o.concurrency {
			wg.Go(func() {
				for first := range work {
					var req prompb.WriteRequest
					for s := first; s < min(first+o.batch, o.series); s++ {
						req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: sets[s], Samples: []prompb.Sample{{Timestamp: ts, Value: sampleValue(s, round)}}})
					}
					pb, _ := req.Marshal()
					hr, _ := http.NewRequest(http.MethodPost, "http://"+o.httpAddr+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, pb)))
					hr.Header.Set("Content-Encoding", "snappy")
					hr.Header.Set("Content-Type", "application/x-protobuf")
					hr.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
					resp, err := client.Do(hr)
					ok := err == nil && resp.StatusCode/100 == 2
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					mu.Lock()
					if ok {
						sent += int64(len(req.Timeseries))
					} else {
						refused += int64(len(req.Timeseries))
					}
					mu.Unlock()
				}
			})
		}
		for first := 0; first < o.series; first += o.batch {
			work <- first
		}
		close(work)
		wg.Wait()
		if d := time.Until(next); d > 0 && time.Now().Add(d).Before(deadline) {
			time.Sleep(d)
		} else if d > 0 {
			break
		}
	}
	fmt.Fprintf(out, "live: sent %d samples (%d series every 15s), refused %d\n", sent, o.series, refused)
	return nil
}

// runRuleEval watches the server's rule groups for o.duration: every
// group evaluation's duration (prometheus_rule_group_last_duration_seconds,
// read each time its last-evaluation timestamp moves) and the server's
// CPU time, and prints their summary.
func runRuleEval(o options, out io.Writer) error {
	if err := loopbackOnly(o.httpAddr); err != nil {
		return err
	}
	cpu0, err := procCPUSeconds(o.pid)
	if err != nil {
		return fmt.Errorf("-pid: %w", err)
	}
	t0 := time.Now()
	last := map[string]float64{} // group → last evaluation timestamp seen
	var durations []float64      // of group evaluations, seconds
	var ruleP99 float64
	var evals, rules int
	deadline := t0.Add(o.duration)
	for {
		fams, err := scrapeFamilies(o.httpAddr)
		if err != nil {
			return err
		}
		ts := gauges(fams["prometheus_rule_group_last_evaluation_timestamp_seconds"])
		ds := gauges(fams["prometheus_rule_group_last_duration_seconds"])
		for g, at := range ts {
			if at > 0 && at != last[g] && at >= float64(t0.Unix()) {
				last[g] = at
				durations = append(durations, ds[g])
			}
		}
		rules = int(sum(gauges(fams["prometheus_rule_group_rules"])))
		ruleP99 = quantileOf(fams["prometheus_rule_evaluation_duration_seconds"], 0.99)
		if !time.Now().Before(deadline) {
			break
		}
		time.Sleep(min(time.Second, time.Until(deadline)))
	}
	elapsed := time.Since(t0).Seconds()
	cpu1, _ := procCPUSeconds(o.pid)
	sort.Float64s(durations)
	evals = len(durations)
	fmt.Fprintf(out, "rules: %d; group evaluations in %.0f s: %d; group duration p50 %s, p99 %s, max %s; slowest rule's evaluation p99 (the server's summary) %s\n",
		rules, elapsed, evals, ms(pct(durations, 0.5)), ms(pct(durations, 0.99)), ms(pct(durations, 1)), ms(ruleP99))
	fmt.Fprintf(out, "server CPU: %.1f s in %.0f s: %.1f %% of one core\n", cpu1-cpu0, elapsed, (cpu1-cpu0)/elapsed*100)
	if rss, err := procStatus(o.pid, "VmHWM"); err == nil {
		fmt.Fprintf(out, "server peak RSS: %s\n", rss)
	}
	return nil
}

func scrapeFamilies(addr string) (map[string]*dto.MetricFamily, error) {
	resp, err := httpClient(10 * time.Second).Get(httpURL(addr, "/metrics"))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	return fams, nil
}

// gauges are a family's values by their rule_group label.
func gauges(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		var g string
		for _, l := range m.GetLabel() {
			if l.GetName() == "rule_group" {
				g = l.GetValue()
			}
		}
		out[g] = m.GetGauge().GetValue()
	}
	return out
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// quantileOf is the largest q-quantile a summary family reports (NaN
// quantiles, of windows without observations, left out).
func quantileOf(f *dto.MetricFamily, q float64) float64 {
	var v float64
	if f == nil {
		return 0
	}
	for _, m := range f.GetMetric() {
		for _, qq := range m.GetSummary().GetQuantile() {
			if qq.GetQuantile() == q && !math.IsNaN(qq.GetValue()) {
				v = max(v, qq.GetValue())
			}
		}
	}
	return v
}

func pct(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(s float64) string { return fmt.Sprintf("%.1f ms", s*1000) }
