package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// badgerDiscardFile is Badger's table of value-log bytes to discard: a
// 1-MiB file mapped by a writable Badger, 16 bytes a value-log file that
// has any, reserved whole on disk while it is mapped (third_party/
// ristretto: a write into a hole would fault on a full disk). A read-only
// Badger does not open it.
const badgerDiscardFile = "DISCARD"

// releaseDiscard gives back the disk of the zero pages of dir's DISCARD
// file once no writable Badger maps it: a page or two of its megabyte is
// used. The file reads the same after, and a writable open reserves the
// holes again before Badger maps it. Best effort: an error leaves the file
// as it was.
func releaseDiscard(dir string) error {
	return digHoles(filepath.Join(dir, badgerDiscardFile))
}

// digHoles frees the disk of every page of path that holds only zeros,
// leaving the rest of the file and its size as they were.
func digHoles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dig holes: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && allocatedBytes(fi) < fi.Size() {
		return nil // dug already (a sealed partition at each open): no need to read it again
	}
	page := int64(os.Getpagesize())
	buf := make([]byte, page)
	zeros := make([]byte, page)
	var off, run, runAt int64
	flush := func() error {
		if run == 0 {
			return nil
		}
		err := punchHole(f, runAt, run)
		run = 0
		return err
	}
	for {
		n, err := f.ReadAt(buf, off)
		if n > 0 && bytes.Equal(buf[:n], zeros[:n]) {
			if run == 0 {
				runAt = off
			}
			run += int64(n)
		} else if ferr := flush(); ferr != nil {
			return ferr
		}
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return flush()
		}
		if err != nil {
			return fmt.Errorf("dig holes: %w", err)
		}
	}
}
