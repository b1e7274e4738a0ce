package store

import "errors"

var (
	// ErrNotFound is returned when nothing is stored for a trace id.
	ErrNotFound = errors.New("not found")
	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("store closed")
	// ErrCorrupt is returned (wrapped) when a stored key or value does not decode.
	ErrCorrupt = errors.New("corrupt store record")
)

// ErrUnavailable is returned (wrapped) when a write could not be made durable;
// the caller may retry.
var ErrUnavailable = errors.New("store unavailable")

// ErrInvalid is returned (wrapped) for data the store refuses to keep, such as
// a span without a trace id. Retrying does not help.
var ErrInvalid = errors.New("invalid data")

// ErrDiskFull is returned (wrapped) when a write is refused because the
// disk is full or below the free-space floor. Queries keep working; writes
// resume by themselves when space returns.
var ErrDiskFull = errors.New("disk full")
