package store

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/store/wlog"
)

var walT0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// floats returns every float sample of the series named name, by its
// labels' string.
func floats(t *testing.T, db *DB, name string) map[string][]float64 {
	t.Helper()
	q, err := db.Querier(0, walT0.Add(24*time.Hour).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", name))
	out := map[string][]float64{}
	for ss.Next() {
		s := ss.At()
		it := s.Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			out[s.Labels().String()] = append(out[s.Labels().String()], v)
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, ss.Err())
	return out
}

// A request that is rolled back after it made a new series (remote write
// 1.0 rolls back a whole request when one sample is refused) must not
// leave a WAL whose next record refers to a series it never defined.
func TestWALRolledBackSeriesThenCrash(t *testing.T) {
	dir := t.TempDir()
	db, o := openMetricsStore(t, dir)
	o.Now = func() time.Time { return walT0 }
	require.NoError(t, db.Close())
	db, err := Open(o)
	require.NoError(t, err)

	a := db.Appender(context.Background())
	_, err = a.Append(0, labels.FromStrings("__name__", "up", "job", "a"), walT0.Add(-time.Minute).UnixMilli(), 1)
	require.NoError(t, err)
	_, err = a.Append(0, labels.FromStrings("__name__", "up", "job", "b"), walT0.Add(time.Hour).UnixMilli(), 1)
	require.ErrorIs(t, err, storage.ErrOutOfBounds)
	require.NoError(t, a.Rollback())

	a = db.Appender(context.Background())
	_, err = a.Append(0, labels.FromStrings("__name__", "up", "job", "a"), walT0.UnixMilli(), 2)
	require.NoError(t, err)
	require.NoError(t, a.Commit())
	db.abandon(t)

	db, err = Open(o)
	require.NoError(t, err, "the store opens after the crash")
	defer db.Close()
	require.Equal(t, map[string][]float64{`{__name__="up", job="a"}`: {2}}, floats(t, db, "up"))
	require.Empty(t, db.WALReplaySkipped())
}

// Two requests bringing the same new series: the one that found it
// already made commits first.
func TestWALConcurrentNewSeriesCommitOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	db, o := openMetricsStore(t, dir)
	ls := labels.FromStrings("__name__", "jobs", "job", "x")

	slow := db.Appender(context.Background())
	_, err := slow.Append(0, ls, walT0.UnixMilli(), 1) // creates the series
	require.NoError(t, err)
	fast := db.Appender(context.Background())
	_, err = fast.Append(0, ls, walT0.Add(time.Second).UnixMilli(), 2)
	require.NoError(t, err)
	require.NoError(t, fast.Commit())
	require.NoError(t, slow.Commit())
	db.abandon(t)

	db, err = Open(o)
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, []float64{1, 2}, floats(t, db, "jobs")[ls.String()])
}

// A request whose WAL append fails leaves its new series in the head; the
// next request to use it must define it.
func TestWALFailedAppendThenCrash(t *testing.T) {
	dir := t.TempDir()
	db, o := openMetricsStore(t, dir)
	ls := labels.FromStrings("__name__", "jobs", "job", "y")

	db.metrics.wal.seg.Fail(errors.New("injected write failure"))
	a := db.Appender(context.Background())
	_, err := a.Append(0, ls, walT0.UnixMilli(), 1)
	require.NoError(t, err)
	require.ErrorIs(t, a.Commit(), ErrUnavailable)
	db.metrics.wal.seg.Fail(nil)

	a = db.Appender(context.Background())
	_, err = a.Append(0, ls, walT0.Add(time.Second).UnixMilli(), 2)
	require.NoError(t, err)
	require.NoError(t, a.Commit())
	db.abandon(t)

	db, err = Open(o)
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, []float64{2}, floats(t, db, "jobs")[ls.String()])
}

// The same for log streams: a failed request made the stream, a later one
// writes to it, then a crash.
func TestLogWALFailedAppendThenCrash(t *testing.T) {
	dir := t.TempDir()
	db, o := openMetricsStore(t, dir)
	ls := labels.FromStrings("app", "cart")
	line := func(s string, sec int) []LogStream {
		return []LogStream{{Labels: ls, Entries: []LogEntry{{T: walT0.Add(time.Duration(sec) * time.Second).UnixNano(), Line: s}}}}
	}
	db.logs.wal.seg.Fail(errors.New("injected write failure"))
	require.ErrorIs(t, db.WriteLogStreams(context.Background(), line("lost", 0)), ErrUnavailable)
	db.logs.wal.seg.Fail(nil)
	require.NoError(t, db.WriteLogStreams(context.Background(), line("kept", 1)))
	db.abandon(t)

	db, err := Open(o)
	require.NoError(t, err)
	defer db.Close()
	got := walHourLogs(t, db, "cart")
	require.Len(t, got, 1)
	require.Len(t, got[0].Entries, 1)
	require.Equal(t, "kept", got[0].Entries[0].Line)
}

// A log WAL generation written by builds whose records were zstd frames,
// followed by one whose records are S2 frames: both replay, every line with
// its trace id and metadata.
func TestLogWALReplaysZstdAndS2Frames(t *testing.T) {
	dir := t.TempDir()
	ls := labels.FromStrings("app", "cart")
	tid := model.TraceID{1, 2, 3}
	rec := func(streams []walStream, line string, sec int) []byte {
		return encodeLogWALRecord(streams, func(add func(uint64, *LogEntry)) {
			add(1, &LogEntry{T: walT0.Add(time.Duration(sec) * time.Second).UnixNano(), Line: line, TraceID: tid, Metadata: labels.FromStrings("k", line)})
		})
	}
	writeZstdThenS2Generation(t, filepath.Join(dir, logsWALDir), rec([]walStream{{ref: 1, lset: ls}}, "zstd", 0), rec(nil, "s2", 1))
	o := DefaultOptions(dir)
	o.Retention = 0
	db, err := Open(o)
	require.NoError(t, err)
	defer db.Close()
	got := walHourLogs(t, db, "cart")
	require.Len(t, got, 1)
	require.Len(t, got[0].Entries, 2)
	for i, want := range []string{"zstd", "s2"} {
		e := got[0].Entries[i]
		require.Equal(t, want, e.Line)
		require.Equal(t, tid, e.TraceID)
		require.Equal(t, want, e.Metadata.Get("k"))
	}
	require.Empty(t, db.WALReplaySkipped())
	// What this build writes to the log WAL is S2.
	require.NoError(t, db.WriteLogStreams(context.Background(), []LogStream{{Labels: ls, Entries: []LogEntry{{T: walT0.UnixNano(), Line: "new"}}}}))
	b, err := os.ReadFile(newestSegment(t, dir, logsWALDir))
	require.NoError(t, err)
	require.Equal(t, codecS2, b[len(wlog.Magic)+1+wlog.FrameHeader], "the first frame's codec")
}

// Many writers making the same new streams and series at once, then a
// crash: every acknowledged line and sample is back.
func TestWALConcurrentWritersThenCrash(t *testing.T) {
	dir := t.TempDir()
	db, o := openMetricsStore(t, dir)
	const writers, rounds = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				ts := walT0.Add(time.Duration(r*writers+w) * time.Millisecond)
				stream := labels.FromStrings("app", "s", "n", string(rune('a'+r%5)))
				require.NoError(t, db.WriteLogStreams(context.Background(), []LogStream{{Labels: stream, Entries: []LogEntry{{T: ts.UnixNano(), Line: "x"}}}}))
				a := db.Appender(context.Background())
				_, err := a.Append(0, labels.FromStrings("__name__", "c", "w", string(rune('a'+w)), "r", string(rune('a'+r%7))), ts.UnixMilli(), float64(r))
				require.NoError(t, err)
				require.NoError(t, a.Commit())
			}
		})
	}
	wg.Wait()
	db.abandon(t)

	db, err := Open(o)
	require.NoError(t, err)
	defer db.Close()
	n := 0
	for _, vs := range floats(t, db, "c") {
		n += len(vs)
	}
	require.Equal(t, writers*rounds, n)
	got := walHourLogs(t, db, "s")
	lines := 0
	for _, s := range got {
		lines += len(s.Entries)
	}
	require.Equal(t, writers*rounds, lines)
	require.Empty(t, db.WALReplaySkipped())
}

// newestSegment is the path of the metrics WAL generation being written.
func newestSegment(t *testing.T, dir, sub string) string {
	t.Helper()
	gens, err := wlog.List(filepath.Join(dir, sub))
	require.NoError(t, err)
	require.NotEmpty(t, gens)
	return wlog.SegmentPath(filepath.Join(dir, sub), gens[len(gens)-1].N)
}

// A crash can leave a torn frame, a frame whose bytes went bad, or a
// record for a series the WAL never defined: replay counts each, keeps
// everything else, and the store opens.
func TestWALReplaySkipsWhatItCannotUse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string, frames []int64)
		reason string
		want   []float64
	}{
		{"torn tail", func(t *testing.T, path string, frames []int64) {
			require.NoError(t, os.Truncate(path, frames[len(frames)-1]-3))
		}, wlog.SkipTornTail, []float64{0, 1}},
		{"garbage after the last frame", func(t *testing.T, path string, _ []int64) {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.Write([]byte{0, 0, 0, 9, 1, 2})
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, wlog.SkipTornTail, []float64{0, 1, 2}},
		{"a flipped byte in the middle", func(t *testing.T, path string, frames []int64) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			require.NoError(t, err)
			b := make([]byte, 1)
			_, err = f.ReadAt(b, frames[1]-2)
			require.NoError(t, err)
			b[0] ^= 0xff
			_, err = f.WriteAt(b, frames[1]-2)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, wlog.SkipChecksum, []float64{0, 2}},
		{"a sample of a series never defined", func(t *testing.T, path string, _ []int64) {
			c, err := newCodec(LogCompressionFast)
			require.NoError(t, err)
			defer c.close()
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			_, err = f.Write(walFrame(c.encodeFast(codecZstdOTLP, encodeWALRecord(nil, []walSample{{ref: 999, point: point{t: walT0.UnixMilli(), v: 9}}}))))
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, wlog.SkipUnknownSeries, []float64{0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db, o := openMetricsStore(t, dir)
			ls := labels.FromStrings("__name__", "jobs", "job", "z")
			path := newestSegment(t, dir, metricsWALDir)
			var ends []int64 // the file's size after each record
			for i := range 3 {
				a := db.Appender(context.Background())
				_, err := a.Append(0, ls, walT0.Add(time.Duration(i)*time.Second).UnixMilli(), float64(i))
				require.NoError(t, err)
				require.NoError(t, a.Commit())
				st, err := os.Stat(path)
				require.NoError(t, err)
				ends = append(ends, st.Size())
			}
			db.abandon(t)
			tc.damage(t, path, ends)

			db, err := Open(o)
			require.NoError(t, err, "the store opens")
			defer db.Close()
			require.Equal(t, tc.want, floats(t, db, "jobs")[ls.String()])
			skipped := db.WALReplaySkipped()
			require.Equal(t, uint64(1), skipped[[2]string{"metrics", tc.reason}], "%v", skipped)
			gens, err := wlog.List(filepath.Join(dir, metricsWALDir))
			require.NoError(t, err)
			require.Len(t, gens, 1, "the damaged generation is replayed and deleted")
		})
	}
}

// A data dir written before segment files keeps its WAL as Badger
// directories: they replay once, then are deleted.
func TestLegacyWALGenerationReplays(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions(dir)
	o.Retention = 0
	o.Logger = zap.NewNop()
	c, err := newCodec(LogCompressionFast)
	require.NoError(t, err)
	defer c.close()
	ls := labels.FromStrings("__name__", "old", "job", "l")
	rec := encodeWALRecord([]walSeries{{ref: 7, lset: ls}}, []walSample{{ref: 7, point: point{t: walT0.UnixMilli(), v: 42}}})
	stream := encodeLogWALRecord([]walStream{{ref: 3, lset: labels.FromStrings("app", "legacy")}}, func(add func(uint64, *LogEntry)) {
		add(3, &LogEntry{T: walT0.UnixNano(), Line: "from before"})
	})
	for sub, payload := range map[string][]byte{metricsWALDir: rec, logsWALDir: stream} {
		bo := badgerOptions(wlog.LegacyDir(filepath.Join(dir, sub), 5), o, false).WithLogger(nil)
		wdb, err := badger.Open(bo)
		require.NoError(t, err)
		key := make([]byte, 9)
		key[0] = nsWAL
		binary.BigEndian.PutUint64(key[1:], 1)
		require.NoError(t, wdb.Update(func(txn *badger.Txn) error { return txn.Set(key, c.encodeFast(codecZstdOTLP, payload)) }))
		require.NoError(t, wdb.Close())
	}

	db, err := Open(o)
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, []float64{42}, floats(t, db, "old")[ls.String()])
	got := walHourLogs(t, db, "legacy")
	require.Len(t, got, 1)
	require.Equal(t, "from before", got[0].Entries[0].Line)
	for _, sub := range []string{metricsWALDir, logsWALDir} {
		_, err := os.Stat(wlog.LegacyDir(filepath.Join(dir, sub), 5))
		require.ErrorIs(t, err, os.ErrNotExist, "the legacy generation is deleted")
		gens, err := wlog.List(filepath.Join(dir, sub))
		require.NoError(t, err)
		require.Equal(t, []wlog.Gen{{N: 6}}, gens, "writing continues after it")
	}
}

// FuzzWALSegment opens a store whose metrics and log WALs hold the given
// bytes as a segment: it always opens, whatever they are.
func FuzzWALSegment(f *testing.F) {
	c, err := newCodec(LogCompressionFast)
	require.NoError(f, err)
	defer c.close()
	frame := func(payload []byte) []byte { return walFrame(c.encodeFast(codecZstdOTLP, payload)) }
	hdr := append([]byte(wlog.Magic), wlog.Version)
	ls := labels.FromStrings("__name__", "up")
	good := append(append([]byte{}, hdr...), frame(encodeWALRecord([]walSeries{{ref: 1, lset: ls}}, []walSample{{ref: 1, point: point{t: 1000, v: 1}}}))...)
	good = append(good, frame(encodeWALRecord(nil, []walSample{{ref: 1, point: point{t: 2000, v: 2}}, {ref: 2, point: point{t: 2000, v: 2}}}))...)
	logs := append(append([]byte{}, hdr...), frame(encodeLogWALRecord([]walStream{{ref: 1, lset: labels.FromStrings("a", "b")}}, func(add func(uint64, *LogEntry)) {
		add(1, &LogEntry{T: 5, Line: "l"})
		add(4, &LogEntry{T: 6, Line: "m"})
	}))...)
	f.Add(good)
	f.Add(logs)
	f.Add(append(append([]byte{}, hdr...), walFrame(appendS2(nil, encodeLogWALRecord([]walStream{{ref: 1, lset: labels.FromStrings("a", "b")}}, func(add func(uint64, *LogEntry)) {
		add(1, &LogEntry{T: 5, Line: "l"})
	})))...))
	f.Add(good[:len(good)-5])
	f.Add(hdr)
	f.Add([]byte("LWA"))
	f.Add(append(append([]byte{}, hdr...), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1))
	f.Fuzz(func(t *testing.T, seg []byte) {
		dir := t.TempDir()
		for _, sub := range []string{metricsWALDir, logsWALDir} {
			require.NoError(t, os.MkdirAll(filepath.Join(dir, sub), 0o750))
			require.NoError(t, os.WriteFile(wlog.SegmentPath(filepath.Join(dir, sub), 1), seg, 0o640))
		}
		o := DefaultOptions(dir)
		o.Retention = 0
		db, err := Open(o)
		require.NoError(t, err)
		require.NoError(t, db.Close())
	})
}

// walHourLogs is the lines of {app="<app>"} in the hour from walT0.
func walHourLogs(t *testing.T, db *DB, app string) []LogStream {
	t.Helper()
	got, err := db.SelectLogs(context.Background(), LogSelect{Start: walT0.UnixNano(), End: walT0.Add(time.Hour).UnixNano(),
		Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", app)}})
	require.NoError(t, err)
	return got
}

// writeZstdThenS2Generation writes generation 1 of a WAL in dir: the
// record first in a zstd frame, as builds before the WAL's S2 frames wrote
// it, then second in an S2 frame.
func writeZstdThenS2Generation(t *testing.T, dir string, first, second []byte) {
	t.Helper()
	c, err := newCodec(LogCompressionFast)
	require.NoError(t, err)
	defer c.close()
	require.NoError(t, os.MkdirAll(dir, 0o750))
	seg := append([]byte(wlog.Magic), wlog.Version)
	seg = append(seg, walFrame(c.encodeFast(codecZstdOTLP, first))...)
	seg = append(seg, walFrame(appendS2(nil, second))...)
	require.NoError(t, os.WriteFile(wlog.SegmentPath(dir, 1), seg, 0o640))
}

// walFrame is body framed as a WAL segment frames it (store/wlog).
func walFrame(body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
	return append(b, body...)
}
