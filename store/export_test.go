package store

import "testing"

// Abandon stops the store the way a crash would (see abandon), for the
// tests outside the package.
func (db *DB) Abandon(t *testing.T) { db.abandon(t) }
