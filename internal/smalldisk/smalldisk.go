// Package smalldisk gives tests a small file system to fill: a tmpfs of a
// given size, mounted for the test.
package smalldisk

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new directory for the test and
// returns it; it is unmounted when the test ends. Mounting needs root: the
// test is skipped elsewhere, except in CI (CI set), where it fails.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a tmpfs (the full-disk test needs root): %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here (not root?): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// Free is what the file system of dir has free to an unprivileged writer.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return int64(st.Bavail) * st.Bsize
}
