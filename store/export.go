package store

import (
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// ExportSpans calls fn with the spans of every request the store keeps, one
// stored frame at a time (the spans of one request as it came, decoded),
// oldest partition first, until fn fails or every frame was read. fn is
// called outside any read of the store, so it may wait (a full queue to a
// backend). A frame that cannot be read is ErrCorrupt, named.
func (db *DB) ExportSpans(ctx context.Context, fn func(ptrace.Traces) error) error {
	if db.opts.RemoteTraces != nil {
		return ErrRemoteTraces
	}
	parts, err := db.snapshot()
	if err != nil {
		return err
	}
	for i := len(parts) - 1; i >= 0; i-- { // snapshot is newest first
		p := parts[i]
		var refs []frameRef
		err := p.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsFrame, byte(KindSpans)}, PrefetchValues: false})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				ref, err := parseFrameKey(it.Item().KeyCopy(nil))
				if err != nil {
					return err
				}
				refs = append(refs, ref)
			}
			return nil
		})
		if err != nil {
			return wrapRead(err)
		}
		for _, ref := range refs {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("export spans: %w", err)
			}
			var td ptrace.Traces
			err := p.view(func(txn *badger.Txn) error {
				item, err := txn.Get(frameKey(ref))
				if err != nil {
					return fmt.Errorf("%w: frame %c/%d/%d: %v", ErrCorrupt, ref.Kind, ref.Seq, ref.Frame, err) //nolint:errorlint // Badger errors stay inside the store
				}
				return item.Value(func(val []byte) error {
					codec, payload, err := db.codec.decodeTo(nil, val)
					if err != nil {
						return fmt.Errorf("%w: frame %c/%d/%d: %w", ErrCorrupt, ref.Kind, ref.Seq, ref.Frame, err)
					}
					td, err = decodeSpans(codec, payload)
					return err
				})
			})
			if err != nil {
				return wrapRead(err)
			}
			if td.SpanCount() == 0 {
				continue
			}
			if err := fn(td); err != nil {
				return err
			}
		}
	}
	return nil
}
