//go:build !linux

package store

import (
	"fmt"
	"os"
)

// fallocate is not known here: there is no disk reserve, and Badger's
// files are not reserved either (third_party/ristretto).
func fallocate(f *os.File, _ int64) error {
	return fmt.Errorf("%w: %s", errCannotAllocate, f.Name())
}

// punchHole does nothing where holes are not known: the file keeps its
// bytes.
func punchHole(*os.File, int64, int64) error { return nil }
