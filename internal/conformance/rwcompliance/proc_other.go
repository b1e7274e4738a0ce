//go:build !linux

package main

import "syscall"

// sysProcAttr: outside Linux, lumen is stopped by the deferred stop only.
func sysProcAttr() *syscall.SysProcAttr { return nil }
