//go:build unix

package store

import (
	"io/fs"
	"syscall"
)

// allocatedBytes is the space a file occupies on disk: Badger preallocates
// sparse value-log files, so the apparent size would overstate it.
func allocatedBytes(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
