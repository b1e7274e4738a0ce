package store

import (
	"encoding/binary"
	"fmt"
	"github.com/dgraph-io/badger/v4"
	"math"

	"github.com/prometheus/prometheus/model/labels"
)

// Metrics keys in a day partition (see docs/metrics-store.md):
//
//	KEY: 0x20 ref[8]                                        -> series labels
//	KEY: 0x21 uvarint(len) name uvarint(len) value ref[8]   -> empty (posting)
//	KEY: 0x22 ref[8] mint[8]                                -> chunk: encoding, uvarint(maxt-mint), bytes
const (
	nsSeries  byte = 0x20
	nsPosting byte = 0x21
	nsChunk   byte = 0x22
	// KEY: 0x25 ref[8] mint[8] -> a chunk of out-of-order samples, same value
	nsChunkOOO byte = 0x25
)

func seriesKey(ref uint64) []byte { return seriesIndex.setKey(ref) }

// labelIndex names the two namespaces of a label index: metric series
// (0x20/0x21) or log streams (0x40/0x41) share the same key shapes.
type labelIndex struct {
	sets, postings byte
	what           string // "series" or "stream", for errors
}

var seriesIndex = labelIndex{sets: nsSeries, postings: nsPosting, what: "series"}

func postingPrefix(name string) []byte { return seriesIndex.postingPrefix(name) }

func postingKey(name, value string, ref uint64) []byte {
	return seriesIndex.postingKey(name, value, ref)
}

func (ix labelIndex) postingPrefix(name string) []byte {
	k := make([]byte, 0, 1+binary.MaxVarintLen64+len(name))
	k = append(k, ix.postings)
	k = binary.AppendUvarint(k, uint64(len(name)))
	return append(k, name...)
}

func (ix labelIndex) postingValuePrefix(name, value string) []byte {
	k := ix.postingPrefix(name)
	k = binary.AppendUvarint(k, uint64(len(value)))
	return append(k, value...)
}

func (ix labelIndex) postingKey(name, value string, ref uint64) []byte {
	return binary.BigEndian.AppendUint64(ix.postingValuePrefix(name, value), ref)
}

// labelsOf reads the labels of set ref.
func (ix labelIndex) labelsOf(txn *badger.Txn, ref uint64, sb *labels.ScratchBuilder) (labels.Labels, error) {
	item, err := txn.Get(ix.setKey(ref))
	if err != nil {
		return labels.EmptyLabels(), fmt.Errorf("%w: labels of %s %d: %v", ErrCorrupt, ix.what, ref, err) //nolint:errorlint // Badger errors stay inside the store
	}
	var lset labels.Labels
	err = item.Value(func(v []byte) error {
		var derr error
		lset, _, derr = decodeLabels(v, sb)
		return derr
	})
	return lset, err
}

func (ix labelIndex) setKey(ref uint64) []byte {
	k := make([]byte, 9)
	k[0] = ix.sets
	binary.BigEndian.PutUint64(k[1:], ref)
	return k
}

// parsePostingKey returns the value and ref of a posting key under the
// prefix of name.
func parsePostingKey(k []byte, namePrefixLen int) (string, uint64, error) {
	rest := k[namePrefixLen:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || uint64(len(rest)-w) != n+8 {
		return "", 0, fmt.Errorf("%w: posting key of %d bytes", ErrCorrupt, len(k))
	}
	value := string(rest[w : w+int(n)])
	return value, binary.BigEndian.Uint64(rest[w+int(n):]), nil
}

// sortableTime maps an int64 time to a uint64 in the same order.
func sortableTime(t int64) uint64 { return uint64(t) ^ (1 << 63) }

func chunkKey(ref uint64, mint int64) []byte { return appendChunkKey(make([]byte, 0, 17), ref, mint) }

func appendChunkKey(k []byte, ref uint64, mint int64) []byte {
	k = append(k, nsChunk)
	k = binary.BigEndian.AppendUint64(k, ref)
	return binary.BigEndian.AppendUint64(k, sortableTime(mint))
}

func parseChunkKey(k []byte) (ref uint64, mint int64, err error) {
	if len(k) != 17 || (k[0] != nsChunk && k[0] != nsChunkOOO) {
		return 0, 0, fmt.Errorf("%w: chunk key of %d bytes", ErrCorrupt, len(k))
	}
	return binary.BigEndian.Uint64(k[1:9]), int64(binary.BigEndian.Uint64(k[9:17]) ^ (1 << 63)), nil
}

// encodeLabels writes a label set as uvarint(count) then length-prefixed
// names and values.
func encodeLabels(b []byte, ls labels.Labels) []byte {
	b = binary.AppendUvarint(b, uint64(ls.Len()))
	ls.Range(func(l labels.Label) {
		b = binary.AppendUvarint(b, uint64(len(l.Name)))
		b = append(b, l.Name...)
		b = binary.AppendUvarint(b, uint64(len(l.Value)))
		b = append(b, l.Value...)
	})
	return b
}

// decodeLabels reads a label set written by encodeLabels and returns the rest.
func decodeLabels(b []byte, sb *labels.ScratchBuilder) (labels.Labels, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return labels.EmptyLabels(), nil, fmt.Errorf("%w: label count", ErrCorrupt)
	}
	b = b[w:]
	sb.Reset()
	str := func() (string, bool) {
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)-w) {
			return "", false
		}
		s := string(b[w : w+int(l)])
		b = b[w+int(l):]
		return s, true
	}
	for range n {
		name, ok1 := str()
		value, ok2 := str()
		if !ok1 || !ok2 {
			return labels.EmptyLabels(), nil, fmt.Errorf("%w: label", ErrCorrupt)
		}
		sb.Add(name, value)
	}
	sb.Sort()
	return sb.Labels(), b, nil
}

// skipLabels returns what follows an encoded label set, without decoding it.
func skipLabels(b []byte) ([]byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: label count", ErrCorrupt)
	}
	b = b[w:]
	for range 2 * n {
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)-w) {
			return nil, fmt.Errorf("%w: label", ErrCorrupt)
		}
		b = b[w+int(l):]
	}
	return b, nil
}

const noTime = math.MinInt64
