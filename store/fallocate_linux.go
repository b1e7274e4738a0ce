package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// fallocate allocates size bytes of f on disk.
func fallocate(f *os.File, size int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
			return fmt.Errorf("%w: %s: %w", errCannotAllocate, f.Name(), err)
		}
		return fmt.Errorf("disk reserve: allocate %s: %w", f.Name(), err)
	}
}
