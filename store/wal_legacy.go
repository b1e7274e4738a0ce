package store

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/lumenobs/lumen/store/wlog"
)

// replayLegacyWALGen reads a generation written before segment files: a
// Badger directory of records keyed 0x30 seq[8] -> codec body. It is only
// read, once, on the first open after an upgrade, then deleted.
func replayLegacyWALGen(walDir string, gen uint64, o Options, fn func(body []byte) error, c *wlog.Counts) error {
	dir := wlog.LegacyDir(walDir, gen)
	bo := badgerOptions(dir, o, false).
		WithSyncWrites(true).
		WithCompression(0).
		WithMemTableSize(8 << 20).
		WithValueThreshold(1 << 10)
	wdb, err := badger.Open(bo)
	if err != nil {
		return fmt.Errorf("open legacy WAL %q: %w", dir, err)
	}
	defer wdb.Close()
	return wdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsWAL}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if len(it.Item().Key()) != 9 {
				c.Skip(wlog.SkipUndecodable, 1)
				continue
			}
			val, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("%w: read legacy WAL: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
			}
			if err := fn(val); err != nil {
				return err
			}
		}
		return nil
	})
}
