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

func statfs(dir string) (fsSpace, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fsSpace{}, err
	}
	bs := int64(st.Bsize) //nolint:unconvert // int32 or int64 by platform
	return fsSpace{free: int64(st.Bavail) * bs, total: int64(st.Blocks) * bs}, nil
}
