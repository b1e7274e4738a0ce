// Package loopback gives tests addresses to listen on.
package loopback

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	handedMu sync.Mutex
	handed   = map[int]bool{}
)

// FreeAddr picks a free loopback port below Linux's ephemeral range
// (32768–60999). A port the kernel hands out for ":0" can be taken, between
// the pick and the server's bind, by an outgoing connection of a test running
// in parallel; ports below the range are only ever taken by explicit listens.
// A port is handed out once per process: a test that picks several
// addresses before it starts the servers on them would otherwise find the
// first still free when it picks the second.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		handedMu.Lock()
		taken := handed[port]
		handed[port] = true
		handedMu.Unlock()
		if taken {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
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

// SlowClients opens n connections to addr that each send head (a request
// line and headers, declaring a longer body) and then nothing more, as a
// client on a bad link or a slowloris would. The returned function waits,
// at most wait, for the server to answer each, and returns the status line
// each got ("" when none).
func SlowClients(addr, head string, n int, wait time.Duration) func() []string {
	lines := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				lines[i] = err.Error()
				return
			}
			defer c.Close()
			if _, err := io.WriteString(c, head); err != nil {
				lines[i] = err.Error()
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(wait))
			line, _ := bufio.NewReader(c).ReadString('\n')
			lines[i] = strings.TrimSpace(line)
		})
	}
	return func() []string {
		wg.Wait()
		return lines
	}
}
