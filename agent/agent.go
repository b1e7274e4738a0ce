// Package agent is `lumen agent`, the node agent: it reads the node's
// container logs, relays OTLP from the node's pods, reads the node's
// metrics, and ships all of it to `lumen serve` over OTLP/HTTP through a
// bounded on-disk buffer, so nothing is lost while the server is away.
// It talks to the server over HTTP(S) only, with a bearer token from a
// file when the server asks for one.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/auth"
	"github.com/lumenobs/lumen/internal/tenant"
	"github.com/lumenobs/lumen/internal/tlsconf"
)

// ShipConfig configures the requests to the server.
type ShipConfig struct {
	Timeout    time.Duration `yaml:"timeout"`
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// UnreadyAfter is how long shipping may fail (the server unreachable
	// or refusing, the buffer unreadable) before /-/ready says so.
	UnreadyAfter time.Duration `yaml:"unready_after"`
	// ShardByTraceID sends each span to one replica of the server chosen
	// by its trace id, among the addresses the server URL's host name
	// resolves to (a headless Service: one address per replica), as the
	// Collector's load-balancing exporter does: every span of a trace
	// reaches the same replica, whose service graph then sees both ends
	// of each call. Logs and metrics go to any replica.
	ShardByTraceID bool `yaml:"shard_by_trace_id"`
	// ResolveInterval is how often the host name is looked up again when
	// sharding.
	ResolveInterval time.Duration `yaml:"resolve_interval"`
}

// DefaultShipConfig retries from half a second up to half a minute apart,
// and is not ready after two minutes without shipping.
func DefaultShipConfig() ShipConfig {
	return ShipConfig{Timeout: 10 * time.Second, MinBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second, UnreadyAfter: 2 * time.Minute,
		ResolveInterval: 5 * time.Second}
}

// Config is what the agent runs with.
type Config struct {
	// Server is lumen serve's OTLP/HTTP endpoint, e.g. http://lumen:4318.
	Server   string
	NodeName string
	StateDir string
	// HTTPAddr serves /metrics, /-/healthy and /-/ready.
	HTTPAddr string
	// OTLPGRPCAddr and OTLPHTTPAddr receive OTLP from the node's pods;
	// empty turns a protocol off.
	OTLPGRPCAddr, OTLPHTTPAddr string
	BufferMaxBytes             int64
	Relay                      RelayConfig
	Logs                       LogsConfig
	Node                       NodeConfig
	Kubernetes                 KubeConfig
	Ship                       ShipConfig
	Version                    string
	// ServerTLS is how an https:// server is checked (and, for mTLS, the
	// certificate the agent presents).
	ServerTLS tlsconf.Client
	// TokenFile, when set, holds the bearer token sent to the server (read
	// again when it changes, as a mounted secret does).
	TokenFile string
	// TLS is the TLS of the agent's listeners (its HTTP port, the relay's
	// gRPC and HTTP); off without a certificate.
	TLS tlsconf.Server
	// RelayAuthFile, when set, is the auth file (the server's format) of
	// the tokens pods must send to the relay, with the write scope.
	RelayAuthFile string
	// Tenant, when set, is sent as X-Scope-OrgID: the tenant of everything
	// the agent ships (a token bound to a tenant needs none).
	Tenant string

	// LookupHost, when set, replaces the DNS lookup of the server's
	// replicas (tests: two replicas on the loopback addresses).
	LookupHost func(ctx context.Context, host string) ([]string, error)
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case !strings.HasPrefix(c.Server, "http://") && !strings.HasPrefix(c.Server, "https://"):
		return fmt.Errorf("server %q is not an http:// or https:// URL of lumen serve's OTLP/HTTP port", c.Server)
	case c.StateDir == "":
		return errors.New("state_dir is empty")
	case c.HTTPAddr == "":
		return errors.New("http_addr is empty")
	case c.BufferMaxBytes < 1<<20:
		return fmt.Errorf("buffer_max_bytes %d is below 1MiB", c.BufferMaxBytes)
	case c.Ship.Timeout <= 0 || c.Ship.MinBackoff <= 0 || c.Ship.MaxBackoff < c.Ship.MinBackoff || c.Ship.UnreadyAfter <= 0:
		return fmt.Errorf("ship: timeout %s, min_backoff %s and unready_after %s must be positive, max_backoff %s at least min_backoff",
			c.Ship.Timeout, c.Ship.MinBackoff, c.Ship.UnreadyAfter, c.Ship.MaxBackoff)
	case c.Ship.ShardByTraceID && c.Ship.ResolveInterval <= 0:
		return fmt.Errorf("ship: resolve_interval %s is not positive", c.Ship.ResolveInterval)
	case c.Node.Interval < 0:
		return fmt.Errorf("node_metrics: interval %s is negative", c.Node.Interval)
	case c.Kubernetes.Enabled && c.Kubernetes.Resync <= 0:
		return fmt.Errorf("kubernetes: resync %s is not positive", c.Kubernetes.Resync)
	}
	if err := c.Relay.Validate(); err != nil {
		return err
	}
	if err := c.TLS.Validate("tls"); err != nil {
		return err
	}
	if strings.HasPrefix(c.Server, "https://") {
		if _, err := c.ServerTLS.Load(); err != nil {
			return fmt.Errorf("server_tls: %w", err)
		}
	}
	if c.TokenFile != "" {
		if _, err := readToken(c.TokenFile); err != nil {
			return err
		}
	}
	if c.Tenant != "" {
		if err := tenant.ValidID(c.Tenant); err != nil {
			return fmt.Errorf("tenant: %w", err)
		}
	}
	if c.RelayAuthFile != "" {
		if _, err := auth.ReadFile(c.RelayAuthFile); err != nil {
			return fmt.Errorf("relay: %w", err)
		}
	}
	return c.Logs.Validate()
}

// Run runs the agent until ctx ends, then stops taking data, writes what
// it holds to the buffer and returns; unshipped records wait on disk for
// the next start. started, when not nil, is called once it listens.
func Run(ctx context.Context, cfg Config, log *zap.Logger, reg *prometheus.Registry, started func()) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	m := NewMetrics(reg)
	buf, err := OpenBuffer(filepath.Join(cfg.StateDir, "buffer"), cfg.BufferMaxBytes, m)
	if err != nil {
		return err
	}
	defer buf.Close()
	pods, err := newPodCache(cfg.Kubernetes, cfg.NodeName, log)
	if err != nil {
		return err
	}

	client, err := shipClient(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	var ready sync.WaitGroup
	s := &shipper{buf: buf, server: strings.TrimSuffix(cfg.Server, "/"), client: client,
		log: log.Named("ship"), m: m, minBackoff: cfg.Ship.MinBackoff, maxBackoff: cfg.Ship.MaxBackoff}
	if cfg.TokenFile != "" {
		s.token = &tokenFile{path: cfg.TokenFile}
	}
	s.tenant = cfg.Tenant
	if cfg.Ship.ShardByTraceID {
		if s.shards, err = newEndpoints(s.server, cfg.Ship.ResolveInterval, cfg.Ship.Timeout, client.Transport.(*http.Transport),
			cfg.LookupHost, log.Named("ship"), m); err != nil {
			_ = ln.Close()
			return err
		}
	}
	isReady := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "lumen agent is healthy") })
	mux.HandleFunc("GET /-/ready", readiness(isReady, &s.health, cfg.Ship.UnreadyAfter))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	if srv.TLSConfig, err = cfg.TLS.Load(); err != nil {
		_ = ln.Close()
		return err
	}
	go func() {
		serve := func() error { return srv.Serve(ln) }
		if srv.TLSConfig != nil {
			serve = func() error { return srv.ServeTLS(ln, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("agent HTTP server", zap.Error(err))
		}
	}()
	defer srv.Close()

	collect, stopCollect := context.WithCancel(context.Background())
	defer stopCollect()
	var wg sync.WaitGroup
	if pods != nil {
		wg.Go(func() { pods.run(collect) })
		// The first list, so the first lines and requests find their pods.
		select {
		case <-pods.ready:
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			log.Warn("the Kubernetes API has not answered in 10s; starting without pod metadata")
		}
	}
	if cfg.OTLPGRPCAddr != "" || cfg.OTLPHTTPAddr != "" {
		var relayAuth *auth.Authenticator
		if cfg.RelayAuthFile != "" {
			if relayAuth, err = auth.New(cfg.RelayAuthFile, log.Named("relay.auth"), reg); err != nil {
				return err
			}
			go relayAuth.Watch(collect, 5*time.Second)
		}
		recv, err := newRelay(cfg, relayAuth, pods, buf, log, m)
		if err != nil {
			return err
		}
		if err := recv.Start(ctx); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := recv.Shutdown(sctx); err != nil {
				log.Error("stop the OTLP relay", zap.Error(err))
			}
		}()
	}
	if cfg.Logs.Glob != "" {
		c, err := newCollector(cfg.Logs, cfg.NodeName, cfg.StateDir, buf, pods, log.Named("logs"), m)
		if err != nil {
			return err
		}
		ready.Add(1)
		wg.Go(func() {
			c.scan() // the files there are now, before the agent says it is ready
			ready.Done()
			c.run(collect)
		})
	}
	if cfg.Node.Interval > 0 {
		n, err := newNodeMetrics(cfg.Node, cfg.NodeName, buf, log)
		if err != nil {
			return err
		}
		wg.Go(func() { n.run(collect) })
	}
	ship, stopShip := context.WithCancel(context.Background())
	defer stopShip()
	shipped := make(chan struct{})
	go func() { s.run(ship); close(shipped) }()

	ready.Wait()
	close(isReady)
	log.Info("lumen agent started", zap.String("server", cfg.Server), zap.String("node", cfg.NodeName),
		zap.String("log_glob", cfg.Logs.Glob), zap.String("http_addr", ln.Addr().String()),
		zap.String("otlp_grpc_addr", cfg.OTLPGRPCAddr), zap.String("otlp_http_addr", cfg.OTLPHTTPAddr))
	if started != nil {
		started()
	}
	<-ctx.Done()
	log.Info("stopping lumen agent")
	stopCollect()
	wg.Wait()
	stopShip()
	<-shipped
	return nil
}

// readiness answers /-/ready: 200 once the agent started (started is
// closed) while the shipper runs and has not failed to ship for longer
// than unreadyAfter; else 503 with the reason.
func readiness(started <-chan struct{}, h *shipHealth, unreadyAfter time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-started:
		default:
			http.Error(w, "lumen agent is starting", http.StatusServiceUnavailable)
			return
		}
		if err := h.check(time.Now(), unreadyAfter); err != nil {
			http.Error(w, "lumen agent is not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "lumen agent is ready")
	}
}
