package store

import (
	"errors"
	"strings"
	"syscall"

	"github.com/lumenobs/lumen/internal/fault"
)

// The store's errors are of the kinds internal/fault names, so every API
// answers them alike.
var (
	// ErrNotFound is returned when nothing is stored for a trace id.
	ErrNotFound = fault.ErrNotFound
	// ErrClosed is returned by every call made after Close.
	ErrClosed = fault.ErrClosed
	// ErrCorrupt is returned (wrapped) when a stored key or value does not decode.
	ErrCorrupt = errors.New("corrupt store record")
	// ErrUnavailable is returned (wrapped) when a write could not be made
	// durable; the caller may retry.
	ErrUnavailable = fault.ErrUnavailable
	// ErrInvalid is returned (wrapped) for data the store refuses to keep,
	// such as a span without a trace id. Retrying does not help.
	ErrInvalid = fault.ErrInvalid
	// ErrDiskFull is returned (wrapped) when a write is refused because the
	// disk is below the free-space floor. Queries keep working; writes
	// resume by themselves when space returns.
	ErrDiskFull = fault.ErrDiskFull
	// ErrLimit is returned (wrapped) when a write would pass a limit of
	// the head (active series or streams); the message names it.
	ErrLimit = fault.ErrLimit
)

// isDiskFull reports whether err is the file system running out of space
// or quota. Badger formats the errors it wraps into text, so their text is
// looked at too.
func isDiskFull(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error())
}
