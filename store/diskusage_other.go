//go:build !unix

package store

import "io/fs"

func allocatedBytes(info fs.FileInfo) int64 { return info.Size() }
