package logfields

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/store"
)

func TestServiceName(t *testing.T) {
	d := New(DefaultConfig())
	for _, c := range []struct{ in, want string }{
		{`{app="cart", job="x"}`, "cart"},
		{`{job="varlogs", container="nginx"}`, "nginx"},
		{`{service="a", app="b"}`, "a"},
		{`{env="dev"}`, UnknownService},
		{`{app="", job="j"}`, "j"},
	} {
		ls, err := labelParser(c.in)
		require.NoError(t, err)
		require.Equal(t, c.want, d.Stream(ls).Get(ServiceNameLabel), c.in)
	}
	// An existing service_name is kept; discovery off adds nothing.
	require.Equal(t, "mine", d.Stream(labels.FromStrings("service_name", "mine", "app", "x")).Get(ServiceNameLabel))
	off := New(Config{})
	require.Nil(t, off)
	require.False(t, off.Stream(labels.FromStrings("app", "x")).Has(ServiceNameLabel))
}

var labelParser = parser.NewParser(parser.Options{}).ParseMetric

func TestDetectedLevel(t *testing.T) {
	d := New(DefaultConfig())
	for _, c := range []struct {
		name, line string
		stream     labels.Labels
		md         labels.Labels
		want       string
	}{
		{"json top level", `{"level":"WARNING","msg":"x"}`, labels.EmptyLabels(), labels.EmptyLabels(), "warn"},
		{"json nested once", `{"log":{"severity":"err"},"msg":"x"}`, labels.EmptyLabels(), labels.EmptyLabels(), "error"},
		{"json too deep: words", `{"a":{"b":{"level":"x"}},"msg":"fatal thing"}`, labels.EmptyLabels(), labels.EmptyLabels(), "fatal"},
		{"json too deep: any word", `{"a":{"b":{"level":"debug"}},"msg":"fatal thing"}`, labels.EmptyLabels(), labels.EmptyLabels(), "debug"},
		{"json number level: words", `{"level":3,"msg":"info here"}`, labels.EmptyLabels(), labels.EmptyLabels(), "info"},
		{"json unknown value kept", `{"level":"notice"}`, labels.EmptyLabels(), labels.EmptyLabels(), "unknown"},
		{"logfmt", `ts=1 LeVeL=Error msg="boom"`, labels.EmptyLabels(), labels.EmptyLabels(), "error"},
		{"logfmt earlier field wins", `lvl=debug level=info`, labels.EmptyLabels(), labels.EmptyLabels(), "info"},
		{"logfmt unquoted end", `level=warn msg="unterminated`, labels.EmptyLabels(), labels.EmptyLabels(), "warn"},
		{"words", `2026-11-30 [main] WARN something slow`, labels.EmptyLabels(), labels.EmptyLabels(), "warn"},
		{"words earliest", `error after info`, labels.EmptyLabels(), labels.EmptyLabels(), "error"},
		{"words need boundaries", `misc:error terror informed`, labels.EmptyLabels(), labels.EmptyLabels(), "unknown"},
		{"no words", `plain text`, labels.EmptyLabels(), labels.EmptyLabels(), "unknown"},
		{"stream label", `anything error`, labels.FromStrings("level", "INFO"), labels.EmptyLabels(), "info"},
		{"metadata field", `anything`, labels.EmptyLabels(), labels.FromStrings("severity", "critical"), "critical"},
		{"otlp severity number", `anything`, labels.EmptyLabels(), labels.FromStrings("severity_number", "17"), "error"},
		{"label value kept", `x`, labels.FromStrings("level", "n/a"), labels.EmptyLabels(), "n/a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			streams := []store.LogStream{{Labels: c.stream, Entries: []store.LogEntry{{T: 1, Line: c.line, Metadata: c.md}}}}
			d.Apply(streams)
			require.Equal(t, c.want, streams[0].Entries[0].Metadata.Get(LevelLabel))
		})
	}
	// A detected_level sent is normalised, not replaced.
	streams := []store.LogStream{{Labels: labels.FromStrings("app", "a"), Entries: []store.LogEntry{{Line: "error", Metadata: labels.FromStrings(LevelLabel, "WRN")}}}}
	d.Apply(streams)
	require.Equal(t, "warn", streams[0].Entries[0].Metadata.Get(LevelLabel))
	require.Equal(t, "a", streams[0].Labels.Get(ServiceNameLabel))

	// Level discovery off: no detected_level.
	cfg := DefaultConfig()
	cfg.DiscoverLogLevels = false
	streams = []store.LogStream{{Labels: labels.FromStrings("app", "a"), Entries: []store.LogEntry{{Line: "error"}}}}
	New(cfg).Apply(streams)
	require.False(t, streams[0].Entries[0].Metadata.Has(LevelLabel))
}

// FuzzDetect: any line, labels and metadata give a level and never panic.
func FuzzDetect(f *testing.F) {
	for _, s := range []string{`{"level":"warn"}`, `{"a":{"level":"x"}}`, `level=info msg="x`, `[ERROR] boom`, `{"a":[{"level":"x"}],"b":"`, "", `=`, `{}`, `{"level":{"x":1}}`} {
		f.Add(s, "info")
	}
	d := New(DefaultConfig())
	f.Fuzz(func(t *testing.T, line, sev string) {
		streams := []store.LogStream{{Labels: labels.FromStrings("job", "j"), Entries: []store.LogEntry{{Line: line, Metadata: labels.FromStrings("severity_number", sev)}, {Line: line}}}}
		d.Apply(streams)
		for _, e := range streams[0].Entries {
			if !e.Metadata.Has(LevelLabel) {
				t.Fatalf("no level for %q", line)
			}
		}
	})
}

// FuzzWordLevel: the one-pass guess over ASCII lines gives what the
// guess over a lowercased copy gives, for any line.
func FuzzWordLevel(f *testing.F) {
	for _, s := range []string{"[ERROR] boom", "misc:error terror informed", "warn\u0130ng", "WARN\u0130NG x", "x Warning: y", "infoerror", "(critical)", "fatal,", "\u0130nfo", "err", "=trace=", "a\tdebug\n", "Error\u212a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if got, want := wordLevel(line), lowerWordLevel(line); got != want {
			t.Fatalf("%q: %s, lowercased: %s", line, got, want)
		}
	})
}

// BenchmarkApply: the cost per line of the ingest-time fields, over the
// line shapes a cluster sends (JSON, logfmt, plain text).
func BenchmarkApply(b *testing.B) {
	d := New(DefaultConfig())
	lines := []string{
		`{"ts":"2026-12-01T10:00:00Z","level":"info","msg":"request served","status":200,"path":"/api/cart","user":{"id":"u1"}}`,
		`ts=2026-12-01T10:00:00Z caller=worker.go:42 level=warn msg="job retried" attempt=2`,
		`2026-12-01 10:00:00.000 [main] ERROR c.e.Billing - charge failed for order 5000`,
	}
	entries := make([]store.LogEntry, 300)
	b.ReportAllocs()
	for b.Loop() {
		for i := range entries {
			entries[i] = store.LogEntry{Line: lines[i%len(lines)]}
		}
		d.Apply([]store.LogStream{{Labels: labels.FromStrings("app", "a"), Entries: entries}})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/line")
}
