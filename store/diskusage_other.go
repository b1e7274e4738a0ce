//go:build !unix

package store

import "io/fs"

func allocatedBytes(info fs.FileInfo) int64 { return info.Size() }

// statfs is not known here: the floor never refuses a write.
func statfs(string) (fsSpace, error) { return fsSpace{free: 1 << 62, total: 1 << 62}, nil }
