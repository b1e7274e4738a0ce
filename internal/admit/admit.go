// Package admit bounds the requests an HTTP ingest path writes at once:
// past the bound a request waits a little, then is told to come back later
// (429 with Retry-After) instead of queueing without limit.
package admit

import (
	"fmt"
	"net/http"
	"time"
)

// Gate admits up to n requests at once.
type Gate struct {
	slots chan struct{}
	wait  time.Duration
	what  string
}

// New returns a gate for n requests at once; a request beyond them waits
// up to wait. what names the requests in the 429 message.
func New(n int, wait time.Duration, what string) *Gate {
	return &Gate{slots: make(chan struct{}, n), wait: wait, what: what}
}

// Enter admits r or answers it: it returns false after writing 429 (or
// when the client went away), true with a slot the caller must Leave.
func (g *Gate) Enter(w http.ResponseWriter, r *http.Request) bool {
	select {
	case g.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return true
	case <-t.C:
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("lumen is overloaded: %d %s are being written; retry later", cap(g.slots), g.what), http.StatusTooManyRequests)
		return false
	case <-r.Context().Done():
		return false
	}
}

// Leave frees the slot of an admitted request.
func (g *Gate) Leave() { <-g.slots }
