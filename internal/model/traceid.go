// Package model holds the small value types every part of Lumen shares.
package model

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// TraceID is a W3C / OTLP trace id.
type TraceID [16]byte

// SpanID is a W3C / OTLP span id.
type SpanID [8]byte

// ErrInvalidTraceID is returned (wrapped) for any trace id that does not parse.
var ErrInvalidTraceID = errors.New("invalid trace id")

// ParseTraceID parses 32 hexadecimal characters, in either case, into a TraceID.
// The all-zero id is invalid, as in the W3C trace context and OTLP.
func ParseTraceID(s string) (TraceID, error) {
	var id TraceID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("%w: want 32 hex characters, got %d", ErrInvalidTraceID, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return id, fmt.Errorf("%w: character %q at position %d is not hexadecimal", ErrInvalidTraceID, s[i], i)
		}
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("%w: %w", ErrInvalidTraceID, err)
	}
	if id.IsEmpty() {
		return id, fmt.Errorf("%w: all zeros", ErrInvalidTraceID)
	}
	return id, nil
}

// IsEmpty reports whether every byte of the id is zero.
func (id TraceID) IsEmpty() bool { return id == TraceID{} }

// String returns the id as 32 lowercase hexadecimal characters.
func (id TraceID) String() string { return hex.EncodeToString(id[:]) }

// IsEmpty reports whether every byte of the id is zero.
func (id SpanID) IsEmpty() bool { return id == SpanID{} }

// String returns the id as 16 lowercase hexadecimal characters.
func (id SpanID) String() string { return hex.EncodeToString(id[:]) }

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}
