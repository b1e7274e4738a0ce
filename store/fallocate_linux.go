package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// fallocate allocates size bytes of f on disk.
func fallocate(f *os.File, size int64) error {
	err := fallocateRetried(f, 0, 0, size)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
		return fmt.Errorf("%w: %s: %w", errCannotAllocate, f.Name(), err)
	}
	return fmt.Errorf("disk reserve: allocate %s: %w", f.Name(), err)
}

// punchHole frees n bytes of f's disk from off on, keeping its size: the
// range reads as zeros after.
func punchHole(f *os.File, off, n int64) error {
	const mode = 0x01 | 0x02 // FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
	err := fallocateRetried(f, mode, off, n)
	switch {
	case err == nil, errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
		return nil // a file system without holes keeps the bytes
	}
	return fmt.Errorf("punch a hole in %s: %w", f.Name(), err)
}

// fallocateRetried is fallocate(2), tried again when a signal interrupts it.
func fallocateRetried(f *os.File, mode uint32, off, n int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), mode, off, n)
		if !errors.Is(err, syscall.EINTR) {
			return err // wrapped by the callers, with what they did
		}
	}
}
