package agent

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// shipClient is the HTTP client of the shipper: the server's certificate
// checked as cfg.ServerTLS says for an https:// server.
func shipClient(cfg Config) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if strings.HasPrefix(cfg.Server, "https://") {
		tc, err := cfg.ServerTLS.Load()
		if err != nil {
			return nil, fmt.Errorf("server_tls: %w", err)
		}
		tr.TLSClientConfig = tc
	}
	return &http.Client{Timeout: cfg.Ship.Timeout, Transport: tr}, nil
}

// tokenRecheck is how often the token file is read again.
const tokenRecheck = 10 * time.Second

// tokenFile is a bearer token kept in a file (a mounted secret), read
// again every tokenRecheck and whenever the server refuses it, so that a
// rotated token is used without a restart.
type tokenFile struct {
	path string
	mu   sync.Mutex
	tok  string
	read time.Time
}

// get is the token; when the file cannot be read, the last one read.
func (t *tokenFile) get() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != "" && time.Since(t.read) < tokenRecheck {
		return t.tok, nil
	}
	tok, err := readToken(t.path)
	if err != nil {
		if t.tok != "" {
			return t.tok, nil
		}
		return "", err
	}
	t.tok, t.read = tok, time.Now()
	return tok, nil
}

// reread makes the next get read the file: the server refused the
// token, which may have been rotated since it was read.
func (t *tokenFile) reread() {
	t.mu.Lock()
	t.read = time.Time{}
	t.mu.Unlock()
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("token_file " + path + " is empty")
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", errors.New("token_file " + path + " holds more than one line")
	}
	return tok, nil
}
