package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/telemetry"
	"github.com/lumenobs/lumen/store"
)

// migrateOptions are `lumen migrate`'s own flags; the rest are serve's.
type migrateOptions struct {
	from       string // the local store's directory (default: data_dir)
	signals    []string
	start, end time.Time
}

const migrateUsage = `Usage: lumen migrate [--from DIR] [--signals metrics,logs,traces] [--start T] [--end T] [serve's flags]

Copies what a local store keeps into the remote backends the configuration
names (storage.<signal>.backend remote, the same settings as serve's), for
every signal that is remote: metrics by remote write, lines by Loki push,
spans by OTLP, each through a durable queue under DIR/queue-migrate; waits
until every queue is empty, then reports what was sent. Run it with serve
stopped on DIR (the store is opened), before or after serve starts on the
remote backends. Sent at least once: run again after an interruption.

  --from DIR        the local store (default: the configuration's data_dir)
  --signals LIST    which signals to copy (default: every remote one)
  --start, --end T  only what falls in [start, end): RFC 3339 times or
                    durations before now (e.g. 720h); default: everything
`

func parseMigrate(args []string, now time.Time) (migrateOptions, []string, error) {
	var o migrateOptions
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	from := fs.String("from", "", "")
	signals := fs.String("signals", "", "")
	start := fs.String("start", "", "")
	end := fs.String("end", "", "")
	// Migrate's flags come first; the first flag it does not know and all
	// after it are serve's.
	var own []string
	i := 0
	for ; i < len(args); i++ {
		name := strings.TrimLeft(strings.SplitN(args[i], "=", 2)[0], "-")
		if !slices.Contains([]string{"from", "signals", "start", "end", "h", "help"}, name) {
			break
		}
		own = append(own, args[i])
		if !strings.Contains(args[i], "=") && name != "h" && name != "help" && i+1 < len(args) {
			i++
			own = append(own, args[i])
		}
	}
	if err := fs.Parse(own); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, nil, usageError{migrateUsage}
		}
		return o, nil, fmt.Errorf("%w\n%s", err, migrateUsage)
	}
	o.from = *from
	if *signals != "" {
		for s := range strings.SplitSeq(*signals, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains([]string{"metrics", "logs", "traces"}, s) {
				return o, nil, fmt.Errorf("--signals: %q is none of metrics, logs, traces", s)
			}
			o.signals = append(o.signals, s)
		}
	}
	var err error
	if o.start, err = migrateTime(*start, now, time.Unix(0, 0)); err != nil {
		return o, nil, fmt.Errorf("--start: %w", err)
	}
	if o.end, err = migrateTime(*end, now, now.Add(24*time.Hour)); err != nil {
		return o, nil, fmt.Errorf("--end: %w", err)
	}
	if !o.start.Before(o.end) {
		return o, nil, fmt.Errorf("--start %s is not before --end %s", o.start.Format(time.RFC3339), o.end.Format(time.RFC3339))
	}
	return o, args[i:], nil
}

func migrateTime(v string, now, dflt time.Time) (time.Time, error) {
	if v == "" {
		return dflt, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", v)
	}
	return now.Add(-d), nil
}

// migrate copies the local store's remote signals into their backends.
func migrate(ctx context.Context, o migrateOptions, cfg Config, stdout io.Writer) error {
	log, err := telemetry.NewLogger(cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	remote := map[string]bool{"metrics": cfg.Storage.Metrics.Backend == backendRemote, "logs": cfg.Storage.Logs.Backend == backendRemote,
		"traces": cfg.Storage.Traces.Backend == backendRemote}
	if len(o.signals) == 0 {
		for _, s := range []string{"metrics", "logs", "traces"} {
			if remote[s] {
				o.signals = append(o.signals, s)
			}
		}
	}
	if len(o.signals) == 0 {
		return errors.New("no signal has a remote backend in the configuration: nothing to migrate to (storage.<signal>.backend: remote)")
	}
	for _, s := range o.signals {
		if !remote[s] {
			return fmt.Errorf("--signals names %s, whose backend is local in the configuration", s)
		}
	}
	from := cmp.Or(o.from, cfg.DataDir)
	// The default tenant's store, and with tenants each tenant's.
	type source struct{ id, dir string }
	sources := []source{{cfg.Tenants.Default, from}}
	if cfg.Tenants.Enabled {
		entries, err := os.ReadDir(filepath.Join(from, tenantsDir))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("tenants: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() && e.Name() != emptyDir && e.Name() != cfg.Tenants.Default {
				sources = append(sources, source{e.Name(), filepath.Join(from, tenantsDir, e.Name())})
			}
		}
	}
	for _, src := range sources {
		if err := migrateStore(ctx, o, cfg, src.id, src.dir, stdout, log); err != nil {
			return fmt.Errorf("migrate %s: %w", src.dir, err)
		}
	}
	return nil
}

// migrateStore copies one store.
func migrateStore(ctx context.Context, o migrateOptions, cfg Config, id, dir string, stdout io.Writer, log *zap.Logger) error {
	so := store.DefaultOptions(dir)
	so.Retention = 0 // nothing is dropped while it is read
	so.DiskReserveBytes = -1
	if dir == cfg.DataDir || dir == o.from {
		so.ExcludeDir = tenantsDir
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("the local store: %w", err)
	}
	db, err := store.Open(so)
	if err != nil {
		return fmt.Errorf("open the local store: %w", err)
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	qdir := filepath.Join(dir, "queue-migrate")
	fmt.Fprintf(stdout, "migrating %s (tenant %s) to the remote backends; queues in %s\n", dir, id, qdir)
	progress, err := loadProgress(qdir, o)
	if err != nil {
		return err
	}
	start, end := o.start.UnixNano(), o.end.UnixNano()
	for _, s := range o.signals {
		if slices.Contains(progress.Done, s) {
			fmt.Fprintf(stdout, "%s: copied by an earlier run (delete %s to copy again)\n", s, progress.path)
			continue
		}
		skip := progress.Queued[s]
		b := &batches{ctx: ctx, signal: s, p: progress}
		var (
			n     int
			to    string
			close func() error
		)
		switch s {
		case "metrics":
			r, err := openRemoteMetrics(ctx, cfg, id, qdir, log, reg)
			if err != nil {
				return err
			}
			to, close = cfg.Storage.Metrics.Remote.WriteURL, r.close
			n, err = migrateMetrics(ctx, db, b, r.store.Appendable, start/1e6, end/1e6)
			if err != nil {
				return errors.Join(fmt.Errorf("metrics: %w", err), close())
			}
		case "logs":
			r, err := openRemoteLogs(ctx, cfg, id, qdir, log, reg)
			if err != nil {
				return err
			}
			to, close = cfg.Storage.Logs.Remote.PushURL, r.close
			n, err = migrateLogs(ctx, db, b, r.store.Write, start, end)
			if err != nil {
				return errors.Join(fmt.Errorf("logs: %w", err), close())
			}
		case "traces":
			r, err := openRemoteTraces(ctx, cfg, id, qdir, log, reg)
			if err != nil {
				return err
			}
			to, close = cfg.Storage.Traces.Remote.OTLPURL, r.close
			n, err = migrateSpans(ctx, db, b, r.store.Write, uint64(max(start, 0)), uint64(end))
			if err != nil {
				return errors.Join(fmt.Errorf("traces: %w", err), close())
			}
		}
		if err := errors.Join(drainQueue(ctx, reg), close()); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		progress.Done = append(progress.Done, s)
		if err := progress.save(); err != nil {
			return err
		}
		unit := map[string]string{"metrics": "samples", "logs": "lines", "traces": "spans"}[s]
		fmt.Fprintf(stdout, "%s: %d %s sent to %s", s, n, unit, to)
		if skip > 0 {
			fmt.Fprintf(stdout, " (the first %d requests queued by an earlier run)", skip)
		}
		fmt.Fprintln(stdout)
		if failed := gathered(reg, "otelcol_exporter_send_failed_"); failed > 0 {
			fmt.Fprintf(stdout, "%s: %.0f items refused by the backend for good (its log says why)\n", s, failed)
		}
	}
	return nil
}

// batches hands a signal's requests to its queue in the order they are
// read (the same on every run over the same store and flags), and records
// after each how many were queued, so that a run after an interruption
// skips what an earlier run queued (sent from the queue first) instead of
// sending it again: a backend refuses a whole request when one of its
// samples is older than what it holds (Prometheus: out of order), and the
// request's new samples with it.
type batches struct {
	ctx    context.Context
	signal string
	p      *migrateProgress
	n      int // requests read so far
}

// offer queues one request by put, unless an earlier run queued it
// (false); a full queue is waited on (the backend drains it), anything
// else fails.
func (b *batches) offer(put func() error) (bool, error) {
	b.n++
	if b.n <= b.p.Queued[b.signal] {
		return false, nil
	}
	for {
		err := put()
		if err == nil {
			break
		}
		if !errors.Is(err, fault.ErrOverloaded) {
			return false, err
		}
		select {
		case <-b.ctx.Done():
			return false, b.ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	b.p.Queued[b.signal] = b.n
	return true, b.p.save()
}

// migrateProgress is what earlier runs did, kept beside the queues: the
// requests of each signal queued, the signals done, and the flags they ran
// with (other flags start over).
type migrateProgress struct {
	path   string
	Window string         `json:"window"`
	Queued map[string]int `json:"queued"`
	Done   []string       `json:"done"`
}

func loadProgress(dir string, o migrateOptions) (*migrateProgress, error) {
	p := &migrateProgress{path: filepath.Join(dir, "progress.json"), Queued: map[string]int{},
		Window: o.start.UTC().Format(time.RFC3339Nano) + "/" + o.end.UTC().Format(time.RFC3339Nano)}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, os.ErrNotExist) {
		return p, os.MkdirAll(dir, 0o750)
	}
	if err != nil {
		return nil, fmt.Errorf("migration progress: %w", err)
	}
	was, err := decodeProgress(b)
	if err != nil {
		return nil, fmt.Errorf("migration progress %s: %w (delete it to start over)", p.path, err)
	}
	if was.Window == p.Window && was.Queued != nil {
		p.Queued, p.Done = was.Queued, was.Done
	}
	return p, nil
}

// decodeProgress reads a progress file: counts are not negative, signals
// are known.
func decodeProgress(b []byte) (migrateProgress, error) {
	var p migrateProgress
	if err := json.Unmarshal(b, &p); err != nil {
		return p, err
	}
	known := []string{"metrics", "logs", "traces"}
	for s, n := range p.Queued {
		if !slices.Contains(known, s) || n < 0 {
			return p, fmt.Errorf("queued %d requests of %q", n, s)
		}
	}
	for _, s := range p.Done {
		if !slices.Contains(known, s) {
			return p, fmt.Errorf("done: %q is no signal", s)
		}
	}
	return p, nil
}

// save writes the progress durably (a new file renamed over the old).
func (p *migrateProgress) save() error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	tmp := p.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("migration progress: %w", err)
	}
	_, err = f.Write(b)
	err = errors.Join(err, f.Sync(), f.Close())
	if err != nil {
		return fmt.Errorf("migration progress: %w", err)
	}
	if err := os.Rename(tmp, p.path); err != nil {
		return fmt.Errorf("migration progress: %w", err)
	}
	return nil
}

// gathered sums the values of reg's metrics whose names start with prefix.
func gathered(reg *prometheus.Registry, prefix string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

// drainQueue waits until the queue reg reports on is empty.
func drainQueue(ctx context.Context, reg *prometheus.Registry) error {
	for gathered(reg, "otelcol_exporter_queue_size") > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped with items still queued (sent when migrate runs again): %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// migrateSample is one sample (or histogram) held until its batch is
// committed.
type migrateSample struct {
	l  labels.Labels
	t  int64
	v  float64
	fh *histogram.FloatHistogram
	e  *exemplar.Exemplar
}

// migrateMetrics sends every series' samples in [start, end) (ms), their
// exemplars and the metric families' metadata.
func migrateMetrics(ctx context.Context, db *store.DB, b *batches, app storage.Appendable, start, end int64) (int, error) {
	var batch []migrateSample
	sent := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		queued, err := b.offer(func() error {
			a := app.Appender(ctx)
			for _, s := range batch {
				var err error
				switch {
				case s.e != nil:
					_, err = a.AppendExemplar(0, s.l, *s.e)
				case s.fh != nil:
					_, err = a.AppendHistogram(0, s.l, s.t, nil, s.fh)
				default:
					_, err = a.Append(0, s.l, s.t, s.v)
				}
				if err != nil {
					_ = a.Rollback()
					return err
				}
			}
			return a.Commit()
		})
		for _, s := range batch {
			if s.e == nil && queued {
				sent++
			}
		}
		batch = batch[:0]
		return err
	}
	q, err := db.Querier(start, end-1)
	if err != nil {
		return 0, err
	}
	defer q.Close()
	set := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	for set.Next() {
		s := set.At()
		l := s.Labels()
		it := s.Iterator(nil)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			switch vt {
			case chunkenc.ValFloat:
				t, v := it.At()
				batch = append(batch, migrateSample{l: l, t: t, v: v})
			case chunkenc.ValHistogram, chunkenc.ValFloatHistogram:
				t, fh := it.AtFloatHistogram(nil)
				batch = append(batch, migrateSample{l: l, t: t, fh: fh})
			}
			if len(batch) >= 10_000 {
				if err := flush(); err != nil {
					return sent, err
				}
			}
		}
		if err := it.Err(); err != nil {
			return sent, err
		}
	}
	if err := set.Err(); err != nil {
		return sent, err
	}
	eq, err := db.ExemplarQuerier(ctx)
	if err != nil {
		return sent, err
	}
	exs, err := eq.Select(start, end-1, []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+")})
	if err != nil {
		return sent, err
	}
	for _, r := range exs {
		for i := range r.Exemplars {
			batch = append(batch, migrateSample{l: r.SeriesLabels, e: &r.Exemplars[i]})
		}
	}
	if err := flush(); err != nil {
		return sent, err
	}
	// The families' metadata, sent with a last request.
	md := db.Metadata("", 0)
	if len(md) == 0 {
		return sent, nil
	}
	_, err = b.offer(func() error {
		a := app.Appender(ctx)
		for name, ms := range md {
			for _, m := range ms {
				if _, err := a.UpdateMetadata(0, labels.FromStrings(labels.MetricName, name), m); err != nil {
					_ = a.Rollback()
					return err
				}
			}
		}
		return a.Commit()
	})
	return sent, err
}

// migrateLogWindow is the first span of time whose lines are read at once;
// a window with more than migrateMaxLines is halved.
const (
	migrateLogWindow = time.Hour
	migrateMaxLines  = 100_000
)

// migrateLogs sends every line in [start, end) (ns), an hour of lines at a
// time.
func migrateLogs(ctx context.Context, db *store.DB, b *batches, write func(context.Context, []store.LogStream) error, start, end int64) (int, error) {
	lo, hi, ok := storeBounds(db)
	if !ok {
		return 0, nil
	}
	start, end = max(start, lo), min(end, hi)
	sent := 0
	all := labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".*")
	for t := start; t < end; {
		step := int64(migrateLogWindow)
		for {
			to := min(t+step, end)
			streams, err := db.SelectLogs(ctx, store.LogSelect{Matchers: []*labels.Matcher{all}, Start: t, End: to, MaxLines: migrateMaxLines})
			if errors.Is(err, store.ErrTooMuch) && step > int64(time.Second) {
				step /= 2
				continue
			}
			if err != nil {
				return sent, err
			}
			if len(streams) > 0 {
				queued, err := b.offer(func() error { return write(ctx, streams) })
				if err != nil {
					return sent, err
				}
				for _, s := range streams {
					if queued {
						sent += len(s.Entries)
					}
				}
			}
			t = to
			break
		}
	}
	return sent, nil
}

// storeBounds is the time range the store's partitions and heads may hold
// (unix ns): the partitions' oldest and newest events, and up to an hour
// ahead of now for what the heads hold.
func storeBounds(db *store.DB) (lo, hi int64, ok bool) {
	st, err := db.Stats()
	if err != nil {
		return 0, 0, false
	}
	lo, hi = time.Now().UnixNano(), time.Now().Add(time.Hour).UnixNano()
	for _, p := range st.Partitions {
		if !p.MinTime.IsZero() {
			lo = min(lo, p.MinTime.UnixNano())
			hi = max(hi, p.MaxTime.Add(time.Minute).UnixNano())
		}
		lo = min(lo, p.Start.UnixNano())
	}
	return lo, hi, true
}

// migrateSpans sends every stored request's spans that start in
// [start, end) (ns), a request as it was stored.
func migrateSpans(ctx context.Context, db *store.DB, b *batches, write func(context.Context, []byte, int) error, start, end uint64) (int, error) {
	sent := 0
	err := db.ExportSpans(ctx, func(td ptrace.Traces) error {
		td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
			rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
				ss.Spans().RemoveIf(func(s ptrace.Span) bool {
					t := uint64(s.StartTimestamp())
					return t < start || t >= end
				})
				return ss.Spans().Len() == 0
			})
			return rs.ScopeSpans().Len() == 0
		})
		n := td.SpanCount()
		if n == 0 {
			return nil
		}
		body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		if err != nil {
			return fmt.Errorf("encode spans: %w", err)
		}
		queued, err := b.offer(func() error { return write(ctx, body, n) })
		if queued {
			sent += n
		}
		return err
	})
	return sent, err
}
