//go:build linux

/*
 * SPDX-FileCopyrightText: © Hypermode Inc. <hello@hypermode.com>
 * SPDX-License-Identifier: Apache-2.0
 */

// Added by Lumen (third_party/ristretto.patch): a file is reserved with
// fallocate(2) before it is memory-mapped and written, so a full disk is
// an error returned by the call that makes room, not SIGBUS on a later
// store into the mapping.

package z

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// reserve allocates the bytes [off, off+n) of f on disk, extending f when
// that goes past its end. On a file system that cannot reserve
// (EOPNOTSUPP) it extends f as ftruncate did, and counts it.
func reserve(f *os.File, off, n int64) error {
	return fallocate(f, 0, off, n)
}

// reserveExisting allocates the holes in [0, size) of an existing file
// without changing its size (a file made sparse by an earlier version).
func reserveExisting(f *os.File, size int64) error {
	return fallocate(f, unix.FALLOC_FL_KEEP_SIZE, 0, size)
}

func fallocate(f *os.File, mode uint32, off, n int64) error {
	if n <= 0 {
		return nil
	}
	retried := false
	for {
		err := unix.Fallocate(int(f.Fd()), mode, off, n)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOSPC) && !retried && madeRoom(f.Name(), n):
			retried = true
			continue
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
			unreservedFiles.Add(1)
			if mode&unix.FALLOC_FL_KEEP_SIZE != 0 {
				return nil
			}
			return extend(f, off+n)
		}
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
}
