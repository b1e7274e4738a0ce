package store

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// Abandon stops the store the way a crash would (see abandon), for the
// tests outside the package.
func (db *DB) Abandon(t *testing.T) { db.abandon(t) }

// KeyOf is the key AppendEncoded finds lset's series by.
func KeyOf(lset labels.Labels) []byte {
	var key []byte
	lset.Range(func(l labels.Label) { key = AppendLabelKey(key, []byte(l.Name), []byte(l.Value)) })
	return key
}

// WriteSpanCodec makes the store write span frames of codec (0x02 or
// 0x05), as earlier builds did, until it is called with 0.
func WriteSpanCodec(codec byte) { writeSpanCodec.Store(uint32(codec)) }

// WritePostingsFormat makes the store write search postings in format 2
// (with the 0x06 batch table) or 3, as earlier builds did, until it is
// called with 0.
func WritePostingsFormat(format byte) { writePostingsFormat.Store(uint32(format)) }

// WriteLogTraceKeys makes the store write the trace index of log blocks
// as earlier builds did (0x43 keys) while on.
func WriteLogTraceKeys(on bool) { writeLogTraceKeys.Store(on) }

// CheckpointMetricsCutting is a metrics checkpoint that cuts every open
// chunk instead of carrying them (the disk budget's).
func (db *DB) CheckpointMetricsCutting() error { return db.checkpointMetrics(false) }
