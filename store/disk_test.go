package store

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/store/wlog"
)

// fakeDisk is a file system whose free space a test sets.
type fakeDisk struct {
	mu   sync.Mutex
	free int64
	now  time.Time
}

func (d *fakeDisk) statfs(string) (fsSpace, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fsSpace{free: d.free, total: 100 << 30}, nil
}

func (d *fakeDisk) set(free int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.free = free
	d.now = d.now.Add(2 * diskCheckEvery) // the next write looks again
}

func (d *fakeDisk) Now() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.now
}

func openOnFakeDisk(t *testing.T, dir string, d *fakeDisk, mutate ...func(*Options)) (*DB, Options) {
	t.Helper()
	o := DefaultOptions(dir)
	o.Retention = 0
	o.MinFreeDiskBytes = 1 << 30
	o.statfs = d.statfs
	o.Now = d.Now
	for _, m := range mutate {
		m(&o)
	}
	db, err := Open(o)
	require.NoError(t, err)
	return db, o
}

func writeAll(db *DB, sec int) []error {
	ts := walT0.Add(time.Duration(sec) * time.Second)
	a := db.Appender(context.Background())
	_, err := a.Append(0, labels.FromStrings("__name__", "up", "job", "d"), ts.UnixMilli(), float64(sec))
	if err == nil {
		err = a.Commit()
	}
	return []error{
		db.WriteTraces(context.Background(), otlptest.New(uint64(sec)).Traces(2, 2)),
		db.WriteLogStreams(context.Background(), []LogStream{{Labels: labels.FromStrings("app", "d"), Entries: []LogEntry{{T: ts.UnixNano(), Line: "x"}}}}),
		err,
	}
}

// Below the free-space floor every write path is refused with a message
// naming the floor; queries go on; writes resume by themselves when space
// comes back.
func TestFreeSpaceFloor(t *testing.T) {
	d := &fakeDisk{free: 10 << 30, now: walT0}
	db, _ := openOnFakeDisk(t, t.TempDir(), d)
	defer db.Close()
	for _, err := range writeAll(db, 0) {
		require.NoError(t, err)
	}

	d.set(512 << 20)
	for i, err := range writeAll(db, 1) {
		require.ErrorIs(t, err, ErrDiskFull, "write path %d", i)
		require.ErrorContains(t, err, "below the floor of 1.0 GiB")
	}
	require.True(t, db.DiskStatus().Full)
	require.Equal(t, uint64(3), db.DiskStatus().Refused)
	require.Equal(t, map[string][]float64{`{__name__="up", job="d"}`: {0}}, floats(t, db, "up"), "queries are answered")

	d.set(2 << 30)
	for _, err := range writeAll(db, 2) {
		require.NoError(t, err)
	}
	require.False(t, db.DiskStatus().Full)
	require.Equal(t, []float64{0, 2}, floats(t, db, "up")[`{__name__="up", job="d"}`])
}

// A store stopped by a full disk opens again while the disk is still full:
// what the WALs hold stays in the head (readable) and on disk, and the
// first checkpoint after space returns writes it and deletes them.
func TestOpenOnAFullDisk(t *testing.T) {
	dir := t.TempDir()
	d := &fakeDisk{free: 10 << 30, now: walT0}
	db, o := openOnFakeDisk(t, dir, d)
	for i := range 3 {
		for _, err := range writeAll(db, i) {
			require.NoError(t, err)
		}
	}
	db.abandon(t)

	d.set(100 << 20) // below half the floor: not even the head's own writes
	db, err := Open(o)
	require.NoError(t, err, "the store opens on a full disk")
	require.Equal(t, []float64{0, 1, 2}, floats(t, db, "up")[`{__name__="up", job="d"}`])
	gens, err := wlog.List(filepath.Join(dir, metricsWALDir))
	require.NoError(t, err)
	require.Len(t, gens, 2, "the replayed generation is kept while it cannot be written")
	require.ErrorIs(t, db.CheckpointMetrics(), ErrDiskFull)
	require.Equal(t, []float64{0, 1, 2}, floats(t, db, "up")[`{__name__="up", job="d"}`], "a failed checkpoint keeps the head")

	d.set(10 << 30)
	require.NoError(t, db.CheckpointMetrics())
	require.NoError(t, db.CheckpointLogs())
	gens, err = wlog.List(filepath.Join(dir, metricsWALDir))
	require.NoError(t, err)
	require.Len(t, gens, 1, "written, the old generations are deleted")
	db.abandon(t)

	db, err = Open(o)
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, []float64{0, 1, 2}, floats(t, db, "up")[`{__name__="up", job="d"}`])
	got, err := db.SelectLogs(context.Background(), LogSelect{Start: walT0.UnixNano(), End: walT0.Add(time.Hour).UnixNano(),
		Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "d")}})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Len(t, got[0].Entries, 3)
}

// The budget counts everything under the data dir and is enforced as soon
// as enough is written, not only on the timer: a burst into the partition
// being written cuts it.
func TestDiskBudgetEnforcedByWrites(t *testing.T) {
	dir := t.TempDir()
	const budget = 24 << 20
	clk := &fakeDisk{free: 100 << 30, now: time.Now()}
	db, _ := openOnFakeDisk(t, dir, clk, func(o *Options) {
		o.MaxDiskBytes = budget
		o.RetentionInterval = time.Hour // only writes start an enforcement
	})
	defer db.Close()
	var peak int64
	for i := range 120 {
		clk.mu.Lock()
		clk.now = clk.now.Add(2 * time.Second)
		clk.mu.Unlock()
		td := otlptest.New(uint64(i)).Traces(20, 10) // 1 MiB of incompressible spans
		randomizeBytes(td, 5<<10)
		require.NoError(t, db.WriteTraces(context.Background(), td))
		peak = max(peak, db.budgetBytes())
		// Left out: the disk reserve, and the files reserved ahead (a
		// value-log mapping, up to three memtable logs) of the head and
		// of a head just cut, on its way out.
		reservedAhead := 2*valueLogFileBytes + 3*2*db.opts.MemTableBytes
		require.LessOrEqual(t, dirDiskBytes(dir)-db.budgetBytes(), 2*reservedAhead+db.disk.spare(),
			"what the budget leaves out is files reserved ahead and the disk reserve, not data")
	}
	require.Eventually(t, func() bool { return db.budgetBytes() <= budget }, 10*time.Second, 50*time.Millisecond,
		"within the budget once enforced: %d bytes", db.budgetBytes())
	t.Logf("peak %d bytes for a budget of %d (margin %d)", peak, budget, db.budgetMargin())
	require.Less(t, peak, int64(budget)+db.budgetMargin()+2*db.opts.MemTableBytes+(8<<20), "a burst overruns the budget by at most the margin and Badger's memtables")
	st, err := db.Stats()
	require.NoError(t, err)
	require.NotEmpty(t, st.Partitions)
	require.True(t, st.Partitions[len(st.Partitions)-1].Writable, "a head to write to is always there")
}

// randomize makes the spans incompressible (512 bytes of random letters
// each), so the burst is bytes on disk, not zstd's best case.
func randomize(td ptrace.Traces) { randomizeBytes(td, 512) }

// randomizeBytes gives every span n bytes of random letters.
func randomizeBytes(td ptrace.Traces, n int) {
	var seed [32]byte
	seed[0], seed[1] = byte(td.SpanCount()), byte(n)
	r := rand.NewChaCha8(seed)
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				b := make([]byte, n)
				_, _ = r.Read(b)
				for i := range b {
					b[i] = 'a' + b[i]%26
				}
				sp.Attributes().PutStr("payload", string(b))
			}
		}
	}
}

// TestDiskGroupSharesOneBudget: two stores (tenants) in one group, one
// under the other's data dir as the server lays them out: their sum stays
// within the budget, the oldest partitions go first whichever store holds
// them, and the outer store does not count the inner one.
func TestDiskGroupSharesOneBudget(t *testing.T) {
	dir := t.TempDir()
	const budget = 48 << 20
	clk := &fakeDisk{free: 100 << 30, now: time.Now().Truncate(time.Hour)}
	g := NewDiskGroup()
	open := func(sub, exclude string) *DB {
		db, _ := openOnFakeDisk(t, filepath.Join(dir, sub), clk, func(o *Options) {
			o.MaxDiskBytes, o.DiskGroup, o.ExcludeDir = budget, g, exclude
			o.PartitionDuration = 5 * time.Minute
			o.RetentionInterval = time.Hour // writes start the enforcement
		})
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	a, b := open("", "tenants"), open("tenants/b", "")
	write := func(db *DB, i int) {
		clk.mu.Lock()
		clk.now = clk.now.Add(time.Minute)
		clk.mu.Unlock()
		td := otlptest.New(uint64(i)).Traces(20, 10) // 1 MiB of incompressible spans
		randomizeBytes(td, 5<<10)
		require.NoError(t, db.WriteTraces(context.Background(), td))
	}
	first := func(db *DB) string {
		st, err := db.Stats()
		require.NoError(t, err)
		return st.Partitions[0].Name
	}
	for i := range 30 { // a first: its partitions are the oldest
		write(a, i)
	}
	aFirst := first(a)
	aGen, _ := a.MetricsPast(time.Minute)
	for i := range 30 {
		write(b, 100+i)
	}
	bFirst := first(b)
	// Writes start an enforcement every 1 % of the budget; the last bytes
	// wait for the timer, which the test does not.
	require.Eventually(t, func() bool { b.EnforceRetention(); return g.DiskBytes() <= budget }, 10*time.Second, 50*time.Millisecond,
		"the group within its budget once enforced: %d bytes", g.DiskBytes())
	require.NotEqual(t, aFirst, first(a), "the older store's oldest partition went")
	gen, _ := a.MetricsPast(time.Minute)
	require.NotEqual(t, aGen, gen, "answers kept over the older store's data are stale: its generation moved")
	require.Equal(t, bFirst, first(b), "the newer store's oldest partition stays while the older one has older partitions")
	require.LessOrEqual(t, a.budgetBytes(), dirDiskBytes(dir)-dirDiskBytes(filepath.Join(dir, "tenants")), "the outer store does not count the inner one")
	for _, db := range []*DB{a, b} {
		st, err := db.Stats()
		require.NoError(t, err)
		require.True(t, st.Partitions[len(st.Partitions)-1].Writable, "each keeps a head to write to")
	}
}
