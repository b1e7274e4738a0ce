/*
 * SPDX-FileCopyrightText: © Hypermode Inc. <hello@hypermode.com>
 * SPDX-License-Identifier: Apache-2.0
 */

package z

import (
	"fmt"
)

// Truncate would truncate the mmapped file to the given size. On Linux, we truncate
// the underlying file and then call mremap, but on other systems, we unmap first,
// then truncate, then re-map.
func (m *MmapFile) Truncate(maxSz int64) error {
	if err := m.Sync(); err != nil {
		return fmt.Errorf("while sync file: %s, error: %v\n", m.Fd.Name(), err)
	}
	// Lumen: growing reserves the new bytes first (see reserve).
	if fi, err := m.Fd.Stat(); err != nil {
		return fmt.Errorf("while stat file: %s, error: %w", m.Fd.Name(), err)
	} else if grow := maxSz - fi.Size(); grow > 0 {
		if err := reserve(m.Fd, fi.Size(), grow); err != nil {
			return fmt.Errorf("while reserving file: %s, error: %w", m.Fd.Name(), err)
		}
	}
	if err := m.Fd.Truncate(maxSz); err != nil {
		return fmt.Errorf("while truncate file: %s, error: %v\n", m.Fd.Name(), err)
	}

	var err error
	m.Data, err = mremap(m.Data, int(maxSz)) // Mmap up to max size.
	return err
}
