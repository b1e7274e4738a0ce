package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/metadata"
	"go.uber.org/zap"
)

// Metric metadata (type, unit, help) by metric name, as Prometheus'
// /api/v1/metadata answers it. The newest metadata of a name wins; it is
// written to the head partition when it changes, and read back from every
// partition on open.
//
//	KEY: 0x26 name -> JSON {"type","unit","help"}
const nsMetadata byte = 0x26

type metadataStore struct {
	mu     sync.RWMutex
	byName map[string]metadata.Metadata
	// writtenTo names the partition each name's metadata was last written
	// to: after a rollover it is written again, so that retention, which
	// drops old partitions, never drops the metadata of live metrics.
	writtenTo map[string]string
}

type metadataJSON struct {
	Type string `json:"type"`
	Unit string `json:"unit"`
	Help string `json:"help"`
}

// changed records m for name and reports whether it must be written to
// partition head: it is new, or head does not hold it yet.
func (s *metadataStore) changed(name string, m metadata.Metadata, head string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byName == nil {
		s.byName, s.writtenTo = map[string]metadata.Metadata{}, map[string]string{}
	}
	if old, ok := s.byName[name]; ok && old == m && s.writtenTo[name] == head {
		return false
	}
	s.byName[name] = m
	return true
}

func (s *metadataStore) written(names []pendingMetadata, partition string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pm := range names {
		s.writtenTo[pm.name] = partition
	}
}

// headName is the name of the partition being written ("" before the first).
func (db *DB) headName() string {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.head == nil {
		return ""
	}
	return db.head.name
}

// SetMetadata records metric metadata by metric name and writes what changed
// to the head partition.
func (db *DB) SetMetadata(byName map[string]metadata.Metadata) error {
	if r := db.remoteMetrics(); r != nil {
		return r.setMetadata(byName)
	}
	var changed []pendingMetadata
	head := db.headName()
	for name, m := range byName {
		if name != "" && db.metadata.changed(name, m, head) {
			changed = append(changed, pendingMetadata{name, m})
		}
	}
	return db.writePartition(nil, nil, changed)
}

type pendingMetadata struct {
	name string
	m    metadata.Metadata
}

func metadataKV(pm pendingMetadata) ([]byte, []byte) {
	v, _ := json.Marshal(metadataJSON{Type: string(pm.m.Type), Unit: pm.m.Unit, Help: pm.m.Help}) // plain strings: cannot fail
	return append([]byte{nsMetadata}, pm.name...), v
}

// loadMetadata reads the metadata of every partition, oldest first, so the
// newest wins.
func (db *DB) loadMetadata() error {
	for _, p := range db.parts {
		if p.db == nil {
			continue // a head left closed by a full disk: its metadata is sent again by clients
		}
		err := p.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsMetadata}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				name := string(it.Item().Key()[1:])
				err := it.Item().Value(func(v []byte) error {
					var mj metadataJSON
					if err := json.Unmarshal(v, &mj); err != nil {
						return fmt.Errorf("%w: metadata of %q: %w", ErrCorrupt, name, err)
					}
					db.metadata.changed(name, metadata.Metadata{Type: modelType(mj.Type), Unit: mj.Unit, Help: mj.Help}, "")
					db.metadata.written([]pendingMetadata{{name: name}}, p.name)
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("partition %s: %w", p.name, err)
		}
	}
	return nil
}

// Metadata returns the metadata of metric (all metrics when empty), at most
// limit names (0: no limit), sorted by name.
func (db *DB) Metadata(metric string, limit int) map[string][]metadata.Metadata {
	if r := db.remoteMetrics(); r != nil {
		m, err := r.Metadata(context.Background(), metric, limit)
		if err != nil {
			db.log.Warn("metadata from the metrics backend", zap.Error(err))
		}
		return m
	}
	db.metadata.mu.RLock()
	defer db.metadata.mu.RUnlock()
	names := make([]string, 0, len(db.metadata.byName))
	for name := range db.metadata.byName {
		if metric == "" || name == metric {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, strings.Compare)
	if limit > 0 && len(names) > limit {
		names = names[:limit]
	}
	out := make(map[string][]metadata.Metadata, len(names))
	for _, name := range names {
		out[name] = []metadata.Metadata{db.metadata.byName[name]}
	}
	return out
}

func modelType(s string) model.MetricType { return model.MetricType(s) }
