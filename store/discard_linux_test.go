package store

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return allocatedBytes(fi)
}

func TestDigHolesKeepsWhatTheFileReads(t *testing.T) {
	page := os.Getpagesize()
	content := make([]byte, 6*page+100)
	content[page+7] = 1         // page 1 holds data
	content[4*page] = 2         // so does page 4
	content[len(content)-1] = 3 // and the last, short one
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, fallocate(f, int64(len(content))))
	_, err = f.WriteAt(content, 0)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	before := allocated(t, path)

	require.NoError(t, digHoles(path))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(content, got), "the file reads the same")
	after := allocated(t, path)
	if after == before {
		t.Skipf("this file system keeps the blocks of punched holes (%d bytes before and after)", before)
	}
	// Pages 0, 2, 3 and 5 are zeros: four pages less.
	require.Equal(t, before-4*int64(page), after)

	require.NoError(t, digHoles(path), "again: nothing left to free")
	require.Equal(t, after, allocated(t, path))
	require.NoError(t, digHoles(filepath.Join(t.TempDir(), "absent")), "no file: nothing to do")
}
