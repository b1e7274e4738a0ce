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

// WritePlainSpanFrames makes the store write span frames of codec 0x02,
// as earlier builds did, until it is called with false.
func WritePlainSpanFrames(on bool) { writePlainSpanFrames.Store(on) }

// WritePostingsV2 makes the store write search postings in format 2 with
// the 0x06 batch table, as earlier builds did, until it is called with
// false.
func WritePostingsV2(on bool) { writePostingsV2.Store(on) }
