package main

import "syscall"

// sysProcAttr has the kernel kill lumen when this process dies, however
// it dies (even kill -9), so no server outlives a run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
