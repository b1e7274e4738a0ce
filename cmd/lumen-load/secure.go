package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// secure is how the load reaches a server with TLS and tokens
// (-tls-ca, -token): https:// and TLS on gRPC with that CA, and the
// token on every request. Without them, plain HTTP and gRPC.
var secure struct {
	tls   *tls.Config
	token string
}

// setSecure reads -tls-ca and -token.
func setSecure(caFile, token string) error {
	secure.token = token
	if caFile == "" {
		return nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("-tls-ca %s: no certificate", caFile)
	}
	secure.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return nil
}

// httpURL is addr's path over http or https.
func httpURL(addr, path string) string {
	if secure.tls != nil {
		return "https://" + addr + path
	}
	return "http://" + addr + path
}

// httpClient is a client of the server with timeout.
func httpClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: secure.tls, MaxIdleConnsPerHost: 16}}
}

// authorize adds the token to req.
func authorize(req *http.Request) {
	if secure.token != "" {
		req.Header.Set("Authorization", "Bearer "+secure.token)
	}
}

// grpcOptions are the dial options: TLS and the token when set.
func grpcOptions() []grpc.DialOption {
	creds := insecure.NewCredentials()
	if secure.tls != nil {
		creds = credentials.NewTLS(secure.tls)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if secure.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{secure.token, secure.tls != nil}))
	}
	return opts
}

type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }
