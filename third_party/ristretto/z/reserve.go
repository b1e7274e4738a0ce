/*
 * SPDX-FileCopyrightText: © Hypermode Inc. <hello@hypermode.com>
 * SPDX-License-Identifier: Apache-2.0
 */

// Added by Lumen (third_party/ristretto.patch).

package z

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
)

// unreservedFiles counts the files extended without a reservation, on a
// file system that has none.
var unreservedFiles atomic.Int64

// UnreservedFiles is how many files were extended without reserving their
// space because the file system cannot (those can still fault with SIGBUS
// when the disk fills).
func UnreservedFiles() int64 { return unreservedFiles.Load() }

// errUnreserved marks a failure to reserve a new file's space: the file
// is removed again.
var errUnreserved = errors.New("cannot reserve the file's space")

// extend grows f to size (never shrinks it).
func extend(f *os.File, size int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() >= size {
		return nil
	}
	return f.Truncate(size)
}

// noSpace holds the functions told when a reservation finds the disk full.
var noSpace struct {
	sync.RWMutex
	next     int
	handlers map[int]func(path string, need int64) bool
}

// OnNoSpace registers h, called when reserving need bytes for the file at
// path finds the disk full. When h made room (it returns true), the
// reservation is tried once more. The returned function unregisters h.
func OnNoSpace(h func(path string, need int64) bool) (remove func()) {
	noSpace.Lock()
	defer noSpace.Unlock()
	if noSpace.handlers == nil {
		noSpace.handlers = map[int]func(string, int64) bool{}
	}
	id := noSpace.next
	noSpace.next++
	noSpace.handlers[id] = h
	return func() {
		noSpace.Lock()
		defer noSpace.Unlock()
		delete(noSpace.handlers, id)
	}
}

// madeRoom tells the handlers that path needs need bytes the disk does not
// have; true when one of them made room.
func madeRoom(path string, need int64) bool {
	noSpace.RLock()
	defer noSpace.RUnlock()
	for _, h := range noSpace.handlers {
		if h(path, need) {
			return true
		}
	}
	return false
}
