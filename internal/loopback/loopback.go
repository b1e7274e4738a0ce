// Package loopback gives tests addresses to listen on.
package loopback

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// FreeAddr picks a free loopback port below Linux's ephemeral range
// (32768–60999). A port the kernel hands out for ":0" can be taken, between
// the pick and the server's bind, by an outgoing connection of a test running
// in parallel; ports below the range are only ever taken by explicit listens.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return addr
	}
	t.Fatal("no free port in 127.0.0.1:20000-31999")
	return ""
}
