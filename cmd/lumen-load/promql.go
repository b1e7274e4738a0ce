package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// defaultPromQL are the queries -signal promql times over the data
// -signal metrics -names 1 writes: a rate summed by job over every series,
// and over the 250 that a regexp on the instance picks.
var defaultPromQL = []string{
	`sum by (job) (rate(http_requests_total[1m]))`,
	`sum by (job) (rate(http_requests_total{instance=~"10.1.0.*"}[1m]))`,
}

// runPromQL times each query o.queryRuns times through the Prometheus HTTP
// API of --http (Lumen, VictoriaMetrics and Prometheus answer the same
// API): as an instant query at now and as a range query over the last 30
// minutes at a 60-s step, one at a time. Each answer must be a success with
// at least one series, so that a server that answers fast because it found
// nothing is not counted as fast.
func runPromQL(o options, out io.Writer) error {
	if err := loopbackOnly(o.httpAddr); err != nil {
		return err
	}
	if err := waitReady(o.httpAddr, 10*time.Second); err != nil {
		return err
	}
	queries := o.queries
	if len(queries) == 0 {
		queries = defaultPromQL
	}
	client := &http.Client{Timeout: time.Minute}
	// The queries are asked at the newest sample -signal metrics wrote
	// (its samples end up to a minute before the load ends), so that a
	// 1-minute rate has samples to work on however long ago that was.
	// VictoriaMetrics makes samples searchable a second or so after it
	// takes them: asked until one is found, for up to 30 s.
	at, err := newestSample(client, o.httpAddr)
	for wait := time.Now().Add(30 * time.Second); err != nil && time.Now().Before(wait); {
		time.Sleep(500 * time.Millisecond)
		at, err = newestSample(client, o.httpAddr)
	}
	if err != nil {
		return err
	}
	deadline := time.Now().Add(o.duration)
	for _, q := range queries {
		for _, kind := range []string{"instant", "range 30m step 60s"} {
			var lat []time.Duration
			for range o.queryRuns {
				if time.Now().After(deadline) {
					break
				}
				now := at
				v := url.Values{"query": {q}}
				path := "/api/v1/query"
				if kind == "instant" {
					v.Set("time", strconv.FormatInt(now.Unix(), 10))
				} else {
					path = "/api/v1/query_range"
					v.Set("start", strconv.FormatInt(now.Add(-30*time.Minute).Unix(), 10))
					v.Set("end", strconv.FormatInt(now.Unix(), 10))
					v.Set("step", "60")
				}
				t0 := time.Now()
				n, err := promQuery(client, "http://"+o.httpAddr+path+"?"+v.Encode())
				if err != nil {
					return fmt.Errorf("%s (%s): %w", q, kind, err)
				}
				lat = append(lat, time.Since(t0))
				if n == 0 {
					return fmt.Errorf("%s (%s): no series in the answer", q, kind)
				}
			}
			if len(lat) == 0 {
				return fmt.Errorf("%s (%s): no run within -duration", q, kind)
			}
			slices.Sort(lat)
			fmt.Fprintf(out, "promql %s, %s, %d runs: %s\n", q, kind, len(lat), quantiles(lat))
		}
	}
	return nil
}

// newestSample is the time of the newest sample of http_requests_total
// (or of app_metric_0, with -names above 1).
func newestSample(client *http.Client, addr string) (time.Time, error) {
	v := url.Values{"query": {`max(timestamp({__name__=~"http_requests_total|app_metric_0"}))`}, "time": {strconv.FormatInt(time.Now().Unix(), 10)}}
	resp, err := client.Get("http://" + addr + "/api/v1/query?" + v.Encode())
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Data.Result) == 0 {
		return time.Time{}, fmt.Errorf("newest sample of http_requests_total or app_metric_0 (load -signal metrics first): %v", err)
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("newest sample: %q: %w", s, err)
	}
	return time.Unix(int64(f), 0), nil
}

// promQuery runs one query and returns how many series its answer holds.
func promQuery(client *http.Client, u string) (int, error) {
	resp, err := client.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, body)
	}
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("answer: %w", err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("status %q: %.200s", r.Status, body)
	}
	return len(r.Data.Result), nil
}
