package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/lumenobs/lumen/internal/model"
)

// Exemplar keys in a day partition:
//
//	KEY: 0x23 trace_id[16] ref[8] t[8] -> empty: the exemplar of series ref at t points at trace_id
//	KEY: 0x24 ref[8] t[8]              -> float64bits[8] labels: the exemplar itself
const (
	nsExemplarByTrace  byte = 0x23
	nsExemplarBySeries byte = 0x24
)

// exemplarTraceLabels are the exemplar label names read as a trace id, in
// order: Prometheus' and OpenTelemetry's spelling first.
var exemplarTraceLabels = []string{"trace_id", "traceID", "traceId", "trace.id"}

// exemplarTraceID returns the trace id an exemplar points at, if any. A
// 64-bit (16 hex digit) id is taken as the low half of a 128-bit one, as
// Jaeger and Tempo do.
func exemplarTraceID(ls labels.Labels) (model.TraceID, bool) {
	for _, name := range exemplarTraceLabels {
		v := ls.Get(name)
		if len(v) == 16 {
			v = strings.Repeat("0", 16) + v
		}
		if id, err := model.ParseTraceID(v); err == nil {
			return id, true
		}
	}
	return model.TraceID{}, false
}

func exemplarSeriesKey(ref uint64, t int64) []byte {
	k := make([]byte, 17)
	k[0] = nsExemplarBySeries
	binary.BigEndian.PutUint64(k[1:9], ref)
	binary.BigEndian.PutUint64(k[9:], sortableTime(t))
	return k
}

func exemplarTraceKey(id model.TraceID, ref uint64, t int64) []byte {
	k := make([]byte, 33)
	k[0] = nsExemplarByTrace
	copy(k[1:17], id[:])
	binary.BigEndian.PutUint64(k[17:25], ref)
	binary.BigEndian.PutUint64(k[25:], sortableTime(t))
	return k
}

// exemplarKeys returns the keys and values that store e of series ref.
func exemplarKeys(ref uint64, e exemplar.Exemplar) [][2][]byte {
	val := binary.BigEndian.AppendUint64(nil, math.Float64bits(e.Value))
	val = encodeLabels(val, e.Labels)
	out := [][2][]byte{{exemplarSeriesKey(ref, e.Ts), val}}
	if id, ok := exemplarTraceID(e.Labels); ok {
		out = append(out, [2][]byte{exemplarTraceKey(id, ref, e.Ts), nil})
	}
	return out
}

func decodeExemplar(k, v []byte, sb *labels.ScratchBuilder) (exemplar.Exemplar, error) {
	if len(k) != 17 || len(v) < 8 {
		return exemplar.Exemplar{}, fmt.Errorf("%w: exemplar of %d+%d bytes", ErrCorrupt, len(k), len(v))
	}
	ls, rest, err := decodeLabels(v[8:], sb)
	if err != nil {
		return exemplar.Exemplar{}, err
	}
	if len(rest) != 0 {
		return exemplar.Exemplar{}, fmt.Errorf("%w: exemplar has %d trailing bytes", ErrCorrupt, len(rest))
	}
	return exemplar.Exemplar{
		Labels: ls,
		Value:  math.Float64frombits(binary.BigEndian.Uint64(v[:8])),
		Ts:     int64(binary.BigEndian.Uint64(k[9:]) ^ (1 << 63)),
		HasTs:  true,
	}, nil
}

// exemplarResults groups exemplars by their series labels.
type exemplarResults struct {
	order []string
	by    map[string]*exemplar.QueryResult
}

func (r *exemplarResults) add(series labels.Labels, e exemplar.Exemplar) {
	if r.by == nil {
		r.by = map[string]*exemplar.QueryResult{}
	}
	k := series.String()
	qr := r.by[k]
	if qr == nil {
		qr = &exemplar.QueryResult{SeriesLabels: series}
		r.by[k] = qr
		r.order = append(r.order, k)
	}
	qr.Exemplars = append(qr.Exemplars, e)
}

func (r *exemplarResults) list() []exemplar.QueryResult {
	out := make([]exemplar.QueryResult, 0, len(r.order))
	for _, k := range r.order {
		out = append(out, *r.by[k])
	}
	return out
}

// TraceExemplars returns the exemplars that point at trace id, grouped by
// series: one prefix scan per partition.
func (db *DB) TraceExemplars(ctx context.Context, id model.TraceID) ([]exemplar.QueryResult, error) {
	parts, err := db.snapshot()
	if err != nil {
		return nil, err
	}
	var res exemplarResults
	prefix := make([]byte, 17)
	prefix[0] = nsExemplarByTrace
	copy(prefix[1:], id[:])
	for i := len(parts) - 1; i >= 0; i-- { // oldest first: results in time order
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := parts[i]
		err := p.view(func(txn *badger.Txn) error {
			var sb labels.ScratchBuilder
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()
				if len(k) != 33 {
					return fmt.Errorf("%w: exemplar trace key of %d bytes", ErrCorrupt, len(k))
				}
				ref := binary.BigEndian.Uint64(k[17:25])
				sk := exemplarSeriesKey(ref, int64(binary.BigEndian.Uint64(k[25:])^(1<<63)))
				item, err := txn.Get(sk)
				if err != nil {
					return fmt.Errorf("%w: exemplar named by trace %s: %v", ErrCorrupt, id, err) //nolint:errorlint // Badger errors stay inside the store
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return fmt.Errorf("%w: read exemplar: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
				}
				e, err := decodeExemplar(sk, v, &sb)
				if err != nil {
					return err
				}
				series, err := seriesIndex.labelsOf(txn, ref, &sb)
				if err != nil {
					return err
				}
				res.add(series, e)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return res.list(), nil
}

// ExemplarQuerier answers Prometheus' query_exemplars. It implements
// storage.ExemplarQueryable.
func (db *DB) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	if r := db.remoteMetrics(); r != nil {
		return r.Exemplars.ExemplarQuerier(ctx)
	}
	return exemplarQuerier{db: db, ctx: ctx}, nil
}

type exemplarQuerier struct {
	db  *DB
	ctx context.Context
}

// Select returns the exemplars in [start, end] (ms) of the series matching
// any of the matcher sets.
func (q exemplarQuerier) Select(start, end int64, sets ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	parts, err := q.db.snapshot()
	if err != nil {
		return nil, err
	}
	var res exemplarResults
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		lo, hi := p.bounds()
		if lo == 0 || hi < msToNanos(start) || lo > msToNanos(end) {
			continue
		}
		pv := p.postings.view()
		err := p.view(func(txn *badger.Txn) error {
			var sb labels.ScratchBuilder
			seen := map[uint64]bool{}
			for _, ms := range sets {
				refs, err := candidateRefs(txn, pv, ms)
				if err != nil {
					return err
				}
				for _, ref := range refs {
					if seen[ref] {
						continue
					}
					seen[ref] = true
					series, err := seriesIndex.labelsOf(txn, ref, &sb)
					if err != nil {
						return err
					}
					if !matchesAll(series, ms) {
						continue
					}
					it := txn.NewIterator(badger.IteratorOptions{Prefix: exemplarSeriesKey(ref, 0)[:9]})
					for it.Seek(exemplarSeriesKey(ref, start)); it.Valid(); it.Next() {
						k := it.Item().Key()
						v, err := it.Item().ValueCopy(nil)
						if err != nil {
							it.Close()
							return fmt.Errorf("%w: read exemplar: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
						}
						e, err := decodeExemplar(k, v, &sb)
						if err != nil {
							it.Close()
							return err
						}
						if e.Ts > end {
							break
						}
						res.add(series, e)
					}
					it.Close()
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return res.list(), nil
}
