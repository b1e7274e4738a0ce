package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/ingest/logfields"
)

// indexFixture is what TestLokiIndexEndpoints pushes: a logfmt stream
// with structured metadata on its even lines, a JSON stream, and free
// text for patterns, 10 seconds apart from base.
type indexFixture struct {
	base               time.Time
	api, web, pat      []push.Entry
	apiBytes, webBytes int // Loki's uncompressed size of each stream
}

func newIndexFixture(base time.Time) indexFixture {
	f := indexFixture{base: base}
	at := func(i int) time.Time { return base.Add(time.Duration(i) * 10 * time.Second) }
	symbols := map[string]bool{}
	for i := range 10 {
		e := push.Entry{Timestamp: at(i), Line: fmt.Sprintf(`level=info msg="request served" status=200 dur=%dms user=u%d`, 10+i, i%3)}
		f.apiBytes += len(e.Line)
		if i%2 == 0 {
			e.StructuredMetadata = push.LabelsAdapter{{Name: "pod", Value: fmt.Sprintf("api-%d", i%4)}}
			f.apiBytes += 8 // one metadata pair: two 4-byte symbol references
			for _, s := range []string{"pod", e.StructuredMetadata[0].Value} {
				if !symbols[s] {
					symbols[s] = true
					f.apiBytes += len(s)
				}
			}
		}
		f.api = append(f.api, e)
	}
	for i := range 5 {
		e := push.Entry{Timestamp: at(i).Add(time.Millisecond), Line: fmt.Sprintf(`{"level":"warn","user":{"id":"u%d"},"latency":%d.5,"ok":true}`, i, i)}
		f.webBytes += len(e.Line)
		f.web = append(f.web, e)
	}
	for i := range 40 {
		f.pat = append(f.pat, push.Entry{Timestamp: at(i).Add(2 * time.Millisecond), Line: fmt.Sprintf("connected to 10.0.0.%d port 80", i)})
	}
	return f
}

func indexGet(t *testing.T, s *server, path string, params url.Values) (int, []byte) {
	t.Helper()
	resp, err := http.Get(s.api(path) + "?" + params.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func nanos(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

// TestLokiIndexEndpoints pushes real lines and checks the answers of the
// endpoints Grafana's Loki data source and Logs Drilldown call besides
// queries, value by value.
func TestLokiIndexEndpoints(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.LogFields = logfields.Config{} // no service_name nor detected_level: the sizes below are the lines'
	s := startServer(t, cfg)
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Minute)
	f := newIndexFixture(base)
	code, body := lokiPush(t, s, "application/x-protobuf", promtailBody(t,
		push.Stream{Labels: `{app="api", env="prod"}`, Entries: f.api},
		push.Stream{Labels: `{app="web", env="dev"}`, Entries: f.web},
		push.Stream{Labels: `{app="pat", env="dev"}`, Entries: f.pat},
	))
	require.Equal(t, http.StatusNoContent, code, body)
	whole := url.Values{"start": {nanos(base.Add(-time.Minute))}, "end": {nanos(base.Add(10 * time.Minute))}}
	with := func(v url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = vs
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}

	t.Run("stats", func(t *testing.T) {
		code, b := indexGet(t, s, "/loki/api/v1/index/stats", with(whole, "query", `{app=~"api|web"}`))
		require.Equal(t, http.StatusOK, code, string(b))
		require.JSONEq(t, fmt.Sprintf(`{"streams":2,"chunks":2,"entries":15,"bytes":%d}`, f.apiBytes+f.webBytes), string(b))

		// Half of api's span (its lines are 0s…90s): Loki counts half of
		// its lines and bytes, whatever lies where.
		code, b = indexGet(t, s, "/loki/api/v1/index/stats", url.Values{"query": {`{app="api"}`},
			"start": {nanos(base.Add(-time.Minute))}, "end": {nanos(base.Add(45 * time.Second))}})
		require.Equal(t, http.StatusOK, code, string(b))
		require.JSONEq(t, fmt.Sprintf(`{"streams":1,"chunks":1,"entries":5,"bytes":%d}`, f.apiBytes/2), string(b))

		code, b = indexGet(t, s, "/loki/api/v1/index/stats", with(whole, "query", `{app="nope"}`))
		require.Equal(t, http.StatusOK, code, string(b))
		require.JSONEq(t, `{"streams":0,"chunks":0,"entries":0,"bytes":0}`, string(b))
	})

	t.Run("volume", func(t *testing.T) {
		type sample struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
			Values [][2]any          `json:"values"`
		}
		volume := func(path string, v url.Values) (string, map[string][]string) {
			code, b := indexGet(t, s, path, v)
			require.Equal(t, http.StatusOK, code, string(b))
			var r struct {
				Status string `json:"status"`
				Data   struct {
					ResultType string   `json:"resultType"`
					Result     []sample `json:"result"`
				} `json:"data"`
			}
			require.NoError(t, json.Unmarshal(b, &r), string(b))
			require.Equal(t, "success", r.Status)
			out := map[string][]string{}
			for _, s := range r.Data.Result {
				keys := make([]string, 0, len(s.Metric))
				for k, v := range s.Metric {
					keys = append(keys, k+"="+v)
				}
				sort.Strings(keys)
				name := strings.Join(keys, ",")
				if r.Data.ResultType == "vector" {
					out[name] = append(out[name], fmt.Sprint(s.Value[1]))
				}
				for _, p := range s.Values {
					out[name] = append(out[name], fmt.Sprint(p[1]))
				}
			}
			return r.Data.ResultType, out
		}
		typ, got := volume("/loki/api/v1/index/volume", with(whole, "query", `{app=~"api|web"}`))
		require.Equal(t, "vector", typ)
		require.Equal(t, map[string][]string{"app=api": {strconv.Itoa(f.apiBytes)}, "app=web": {strconv.Itoa(f.webBytes)}}, got)

		_, got = volume("/loki/api/v1/index/volume", with(whole, "query", `{app=~"api|web"}`, "targetLabels", "env"))
		require.Equal(t, map[string][]string{"env=prod": {strconv.Itoa(f.apiBytes)}, "env=dev": {strconv.Itoa(f.webBytes)}}, got)

		_, got = volume("/loki/api/v1/index/volume", with(whole, "query", `{app=~"api|web"}`, "aggregateBy", "labels"))
		total := strconv.Itoa(f.apiBytes + f.webBytes)
		require.Equal(t, map[string][]string{"app=": {total}, "env=": {total}}, got)

		// Steps of 20s from base (a multiple of 20s): web's chunk spans
		// 1ms…40.001s, and each step counts the share of that span it
		// covers, in whole seconds, as Loki estimates it.
		typ, got = volume("/loki/api/v1/index/volume_range", url.Values{"query": {`{app="web"}`},
			"start": {nanos(base)}, "end": {nanos(base.Add(time.Minute))}, "step": {"20s"}})
		require.Equal(t, "matrix", typ)
		share := func(from, through time.Duration) string {
			lo, hi := time.Millisecond, 40*time.Second+time.Millisecond
			covered := hi - lo - max(0, from-lo) - max(0, hi-through)
			return strconv.FormatUint(uint64(float64(f.webBytes)*(float64(covered)/float64(hi-lo))), 10)
		}
		require.Equal(t, map[string][]string{"app=web": {share(0, 19*time.Second), share(20*time.Second, 39*time.Second), share(40*time.Second, time.Minute)}}, got)
	})

	t.Run("detected_labels", func(t *testing.T) {
		code, b := indexGet(t, s, "/loki/api/v1/detected_labels", with(whole, "query", `{app=~".+"}`))
		require.Equal(t, http.StatusOK, code, string(b))
		require.JSONEq(t, `{"detectedLabels":[{"label":"app","cardinality":3},{"label":"env","cardinality":2}]}`, string(b))
	})

	t.Run("detected_fields", func(t *testing.T) {
		code, b := indexGet(t, s, "/loki/api/v1/detected_fields", with(whole, "query", `{app="api"}`))
		require.Equal(t, http.StatusOK, code, string(b))
		require.JSONEq(t, `{"fields":[
			{"label":"dur","type":"duration","cardinality":10,"parsers":["logfmt"]},
			{"label":"level","type":"string","cardinality":1,"parsers":["logfmt"]},
			{"label":"msg","type":"string","cardinality":1,"parsers":["logfmt"]},
			{"label":"pod","type":"string","cardinality":2,"parsers":null},
			{"label":"status","type":"int","cardinality":1,"parsers":["logfmt"]},
			{"label":"user","type":"string","cardinality":3,"parsers":["logfmt"]}],"limit":1000}`, string(b))

		code, b = indexGet(t, s, "/loki/api/v1/detected_fields", with(whole, "query", `{app="web"}`, "line_limit", "3", "limit", "10"))
		require.Equal(t, http.StatusOK, code, string(b))
		require.JSONEq(t, `{"fields":[
			{"label":"latency","type":"float","cardinality":3,"parsers":["json"],"jsonPath":["latency"]},
			{"label":"level","type":"string","cardinality":1,"parsers":["json"],"jsonPath":["level"]},
			{"label":"ok","type":"boolean","cardinality":1,"parsers":["json"],"jsonPath":["ok"]},
			{"label":"user_id","type":"string","cardinality":3,"parsers":["json"],"jsonPath":["user","id"]}],"limit":10}`, string(b))

		code, b = indexGet(t, s, "/loki/api/v1/detected_field/user/values", with(whole, "query", `{app="api"}`))
		require.Equal(t, http.StatusOK, code, string(b))
		require.JSONEq(t, `{"values":["u0","u1","u2"],"limit":1000}`, string(b))

		code, b = indexGet(t, s, "/loki/api/v1/detected_fields", with(whole, "query", `{app="nope"}`))
		require.Equal(t, http.StatusOK, code, string(b))
		require.JSONEq(t, `{}`, string(b))
	})

	t.Run("patterns", func(t *testing.T) {
		code, b := indexGet(t, s, "/loki/api/v1/patterns", url.Values{"query": {`{app="pat"}`},
			"start": {nanos(base)}, "end": {nanos(base.Add(time.Hour))}, "step": {"1h"}})
		require.Equal(t, http.StatusOK, code, string(b))
		var r struct {
			Status string `json:"status"`
			Data   []struct {
				Pattern string     `json:"pattern"`
				Level   string     `json:"level"`
				Samples [][2]int64 `json:"samples"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(b, &r), string(b))
		require.Equal(t, "success", r.Status)
		require.Len(t, r.Data, 1, string(b))
		require.Equal(t, "connected to <_> port 80", r.Data[0].Pattern)
		require.Equal(t, "unknown", r.Data[0].Level)
		hour := base.Truncate(time.Hour).Unix()
		var total int64
		for _, smp := range r.Data[0].Samples {
			require.Contains(t, []int64{hour, hour + 3600}, smp[0], "samples start at multiples of step")
			total += smp[1]
		}
		require.EqualValues(t, 40, total)

		// Fewer than 30 lines make no pattern.
		code, b = indexGet(t, s, "/loki/api/v1/patterns", url.Values{"query": {`{app="pat"}`},
			"start": {nanos(base)}, "end": {nanos(base.Add(200 * time.Second))}})
		require.Equal(t, http.StatusOK, code, string(b))
		require.JSONEq(t, `{"status":"success","data":[]}`, string(b))
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name, path string
			params     url.Values
			want       string
		}{
			{"stats of a pipeline", "/loki/api/v1/index/stats", with(whole, "query", `{app="api"} |= "x"`), "only label matchers are supported"},
			{"end before start", "/loki/api/v1/index/stats", url.Values{"query": {`{app="api"}`}, "start": {"200"}, "end": {"100"}}, "end timestamp must not be before or equal to start time"},
			{"zero step", "/loki/api/v1/index/volume_range", with(whole, "query", `{app="api"}`, "step", "0"), "zero or negative query resolution step widths are not accepted. Try a positive integer"},
			{"bad aggregateBy", "/loki/api/v1/index/volume", with(whole, "query", `{app="api"}`, "aggregateBy", "pods"), "invalid aggregation option"},
			{"negative limit", "/loki/api/v1/index/volume", with(whole, "query", `{app="api"}`, "limit", "-1"), "limit must be a positive value"},
			{"zero line_limit", "/loki/api/v1/detected_fields", with(whole, "query", `{app="api"}`, "line_limit", "0"), "limit must be a positive value"},
			{"bad since", "/loki/api/v1/detected_labels", url.Values{"since": {"soon"}}, `could not parse 'since' parameter`},
			{"bad selector", "/loki/api/v1/patterns", with(whole, "query", `{app=~".*"}`), "queries require at least one regexp or equality matcher"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, b := indexGet(t, s, tc.path, tc.params)
				require.Equal(t, http.StatusBadRequest, code, string(b))
				require.Contains(t, string(b), tc.want)
			})
		}
	})
}
