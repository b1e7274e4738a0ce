package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/agent"
	"github.com/lumenobs/lumen/internal/telemetry"
	"github.com/lumenobs/lumen/internal/tlsconf"
)

// AgentConfig is everything `lumen agent` can be told, from the same
// sources as serve's: defaults, the YAML file, LUMEN_* environment
// variables, flags.
type AgentConfig struct {
	// Server is lumen serve's OTLP/HTTP endpoint.
	Server string `yaml:"server"`
	// NodeName labels everything the agent sends; by default the NODE_NAME
	// environment variable (the downward API's spec.nodeName), else the
	// host name.
	NodeName string `yaml:"node_name"`
	StateDir string `yaml:"state_dir"`
	HTTPAddr string `yaml:"http_addr"`
	// OTLPGRPCAddr and OTLPHTTPAddr receive OTLP from the node's pods.
	OTLPGRPCAddr   string           `yaml:"otlp_grpc_addr"`
	OTLPHTTPAddr   string           `yaml:"otlp_http_addr"`
	BufferMaxBytes ByteSize         `yaml:"buffer_max_bytes"`
	Relay          AgentRelayConfig `yaml:"relay"`
	Logs           agent.LogsConfig `yaml:"logs"`
	NodeMetrics    agent.NodeConfig `yaml:"node_metrics"`
	Kubernetes     agent.KubeConfig `yaml:"kubernetes"`
	Ship           agent.ShipConfig `yaml:"ship"`
	Log            LogConfig        `yaml:"log"`
	// ServerTLS checks an https:// server (CA, client certificate).
	ServerTLS tlsconf.Client `yaml:"server_tls"`
	// TokenFile holds the bearer token sent to the server.
	TokenFile string `yaml:"token_file"`
	// Tenant is sent as X-Scope-OrgID (a server with tenants).
	Tenant string `yaml:"tenant"`
	// TLS is the TLS of the agent's listeners.
	TLS tlsconf.Server `yaml:"tls"`
	// PrepareState, "UID:GID", makes the state directory and gives it
	// (and what it holds) to that user, then exits: the DaemonSet's init
	// container, so that the agent itself runs as that user (flag only).
	PrepareState string `yaml:"-"`

	// lookupHost replaces the DNS lookup of the server's replicas (tests).
	lookupHost func(ctx context.Context, host string) ([]string, error)
}

// AgentRelayConfig bounds the agent's OTLP relay (agent.RelayConfig, with
// sizes that take units).
type AgentRelayConfig struct {
	// MaxRequestBytes bounds one request, after decompression.
	MaxRequestBytes ByteSize `yaml:"max_request_bytes"`
	// MaxInFlightBytes bounds the request bytes being read, decoded and
	// buffered at once on the node.
	MaxInFlightBytes ByteSize `yaml:"max_in_flight_bytes"`
	// PodShare is the part of the bytes in flight and of the buffer one
	// pod may hold.
	PodShare float64 `yaml:"pod_share"`
	// AuthFile, when set, is the tokens (the server's auth file format,
	// write scope) pods must send to the relay.
	AuthFile string `yaml:"auth_file"`
}

func defaultRelayConfig() AgentRelayConfig {
	d := agent.DefaultRelayConfig()
	return AgentRelayConfig{MaxRequestBytes: ByteSize(d.MaxRequestBytes), MaxInFlightBytes: ByteSize(d.MaxInFlightBytes), PodShare: d.PodShare}
}

// DefaultAgentHTTPAddr is the agent's own port: /metrics and health.
const DefaultAgentHTTPAddr = "0.0.0.0:4321"

// DefaultAgentConfig is what `lumen agent` runs with when told nothing.
func DefaultAgentConfig() AgentConfig {
	return AgentConfig{
		Server:         "http://localhost:4318",
		StateDir:       "/var/lib/lumen-agent",
		HTTPAddr:       DefaultAgentHTTPAddr,
		OTLPGRPCAddr:   "0.0.0.0:4317",
		OTLPHTTPAddr:   "0.0.0.0:4318",
		BufferMaxBytes: 1 << 30,
		Relay:          defaultRelayConfig(),
		Logs:           agent.DefaultLogsConfig(),
		NodeMetrics:    agent.DefaultNodeConfig(),
		Kubernetes:     agent.DefaultKubeConfig(),
		Ship:           agent.DefaultShipConfig(),
		Log:            LogConfig{Format: "console", Level: "info"},
	}
}

func (c AgentConfig) agent() agent.Config {
	return agent.Config{
		Server: c.Server, NodeName: c.NodeName, StateDir: c.StateDir, HTTPAddr: c.HTTPAddr,
		OTLPGRPCAddr: c.OTLPGRPCAddr, OTLPHTTPAddr: c.OTLPHTTPAddr, BufferMaxBytes: int64(c.BufferMaxBytes),
		Relay: agent.RelayConfig{MaxRequestBytes: int64(c.Relay.MaxRequestBytes), MaxInFlightBytes: int64(c.Relay.MaxInFlightBytes), PodShare: c.Relay.PodShare},
		Logs:  c.Logs, Node: c.NodeMetrics, Kubernetes: c.Kubernetes, Ship: c.Ship, Version: version,
		ServerTLS: c.ServerTLS, TokenFile: c.TokenFile, TLS: c.TLS, RelayAuthFile: c.Relay.AuthFile, Tenant: c.Tenant,
		LookupHost: c.lookupHost,
	}
}

// Validate reports the first setting that cannot work.
func (c AgentConfig) Validate() error {
	if c.NodeName == "" {
		return errors.New("node_name is empty (set NODE_NAME from the downward API)")
	}
	return c.agent().Validate()
}

func agentSettings() []setting[AgentConfig] {
	dur := func(f func(*AgentConfig) *time.Duration) func(*AgentConfig, string) error {
		return func(c *AgentConfig, v string) error {
			var d Duration
			if err := d.parse(v); err != nil {
				return err
			}
			*f(c) = time.Duration(d)
			return nil
		}
	}
	return []setting[AgentConfig]{
		{"server", "LUMEN_SERVER", "lumen serve's OTLP/HTTP endpoint, e.g. http://lumen:4318", str(func(c *AgentConfig) *string { return &c.Server }), false},
		{"token-file", "LUMEN_TOKEN_FILE", "file holding the bearer token sent to the server (read again when it changes)", str(func(c *AgentConfig) *string { return &c.TokenFile }), false},
		{"tenant", "LUMEN_TENANT", "tenant of everything the agent ships, sent as X-Scope-OrgID (a server with tenants; a token bound to a tenant needs none)", str(func(c *AgentConfig) *string { return &c.Tenant }), false},
		{"server-ca-file", "LUMEN_SERVER_CA_FILE", "CA bundle an https:// server's certificate must chain to (default: the system's)", str(func(c *AgentConfig) *string { return &c.ServerTLS.CAFile }), false},
		{"client-cert-file", "LUMEN_CLIENT_CERT_FILE", "certificate the agent presents to a server that asks for one (mTLS)", str(func(c *AgentConfig) *string { return &c.ServerTLS.CertFile }), false},
		{"client-key-file", "LUMEN_CLIENT_KEY_FILE", "its private key", str(func(c *AgentConfig) *string { return &c.ServerTLS.KeyFile }), false},
		{"tls-cert-file", "LUMEN_TLS_CERT_FILE", "TLS certificate of the agent's listeners (its HTTP port and the relay)", str(func(c *AgentConfig) *string { return &c.TLS.CertFile }), false},
		{"tls-key-file", "LUMEN_TLS_KEY_FILE", "TLS private key of the agent's listeners", str(func(c *AgentConfig) *string { return &c.TLS.KeyFile }), false},
		{"tls-client-ca-file", "LUMEN_TLS_CLIENT_CA_FILE", "CA bundle the certificates of clients of the agent's listeners must chain to (mTLS)", str(func(c *AgentConfig) *string { return &c.TLS.ClientCAFile }), false},
		{"relay-auth-file", "LUMEN_RELAY_AUTH_FILE", "tokens pods must send to the relay (the server's auth file format, write scope)", str(func(c *AgentConfig) *string { return &c.Relay.AuthFile }), false},
		{"prepare-state", "LUMEN_PREPARE_STATE", "UID:GID: make the state directory, give it and its files to that user, and exit (the init container of a non-root agent)", str(func(c *AgentConfig) *string { return &c.PrepareState }), false},
		{"node-name", "LUMEN_NODE_NAME", "the node's name (default: $NODE_NAME, else the host name)", str(func(c *AgentConfig) *string { return &c.NodeName }), false},
		{"log-glob", "LUMEN_LOG_GLOB", "container log files to read (empty: none)", str(func(c *AgentConfig) *string { return &c.Logs.Glob }), false},
		{"state-dir", "LUMEN_STATE_DIR", "directory of the read positions and the on-disk buffer (a hostPath)", str(func(c *AgentConfig) *string { return &c.StateDir }), false},
		{"http-addr", "LUMEN_HTTP_ADDR", "address of the agent's /metrics, /-/healthy and /-/ready", str(func(c *AgentConfig) *string { return &c.HTTPAddr }), false},
		{"otlp-grpc-addr", "LUMEN_OTLP_GRPC_ADDR", "OTLP gRPC address for the node's pods (empty disables)", str(func(c *AgentConfig) *string { return &c.OTLPGRPCAddr }), false},
		{"otlp-http-addr", "LUMEN_OTLP_HTTP_ADDR", "OTLP HTTP address for the node's pods (empty disables)", str(func(c *AgentConfig) *string { return &c.OTLPHTTPAddr }), false},
		{"buffer-max-bytes", "LUMEN_BUFFER_MAX_BYTES", "size of the on-disk buffer, e.g. 1GiB; past it the oldest data is dropped", func(c *AgentConfig, v string) error { return c.BufferMaxBytes.parse(v) }, false},
		{"relay-max-request-bytes", "LUMEN_RELAY_MAX_REQUEST_BYTES", "largest OTLP request the relay takes from a pod, after decompression, e.g. 4MiB", func(c *AgentConfig, v string) error { return c.Relay.MaxRequestBytes.parse(v) }, false},
		{"relay-max-in-flight-bytes", "LUMEN_RELAY_MAX_IN_FLIGHT_BYTES", "OTLP request bytes the relay reads, decodes and buffers at once; past it pods get 429 / RESOURCE_EXHAUSTED", func(c *AgentConfig, v string) error { return c.Relay.MaxInFlightBytes.parse(v) }, false},
		{"relay-pod-share", "LUMEN_RELAY_POD_SHARE", "part of the relay's bytes in flight and of the buffer one pod may hold, e.g. 0.25", func(c *AgentConfig, v string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return fmt.Errorf("%q is not a number", v)
			}
			c.Relay.PodShare = f
			return nil
		}, false},
		{"node-metrics-interval", "LUMEN_NODE_METRICS_INTERVAL", "how often the node's metrics are sent (0 disables)", dur(func(c *AgentConfig) *time.Duration { return &c.NodeMetrics.Interval }), false},
		{"proc-path", "LUMEN_PROC_PATH", "where the host's /proc is mounted", str(func(c *AgentConfig) *string { return &c.NodeMetrics.ProcPath }), false},
		{"sys-path", "LUMEN_SYS_PATH", "where the host's /sys is mounted", str(func(c *AgentConfig) *string { return &c.NodeMetrics.SysPath }), false},
		{"root-path", "LUMEN_ROOT_PATH", "where the host's / is mounted (for file system sizes)", str(func(c *AgentConfig) *string { return &c.NodeMetrics.RootPath }), false},
		{"shard-by-trace-id", "LUMEN_SHARD_BY_TRACE_ID", "send each span to the server replica its trace id picks among the addresses the server's host name resolves to (a headless Service), as the Collector's load-balancing exporter does", boolean(func(c *AgentConfig) *bool { return &c.Ship.ShardByTraceID }), true},
		{"kubernetes", "LUMEN_KUBERNETES", "look pods up in the Kubernetes API (labels, workloads, pod IPs for the relay)", boolean(func(c *AgentConfig) *bool { return &c.Kubernetes.Enabled }), true},
		{"kubernetes-api-url", "LUMEN_KUBERNETES_API_URL", "the API server (default: in-cluster)", str(func(c *AgentConfig) *string { return &c.Kubernetes.APIURL }), false},
		{"log-format", "LUMEN_LOG_FORMAT", "console or json", str(func(c *AgentConfig) *string { return &c.Log.Format }), false},
		{"log-level", "LUMEN_LOG_LEVEL", "debug, info, warn or error", str(func(c *AgentConfig) *string { return &c.Log.Level }), false},
	}
}

// agentGCPercent is the agent's GOGC unless the environment sets one.
const agentGCPercent = 50

// loadAgentConfig builds the agent's configuration; the node name defaults
// to $NODE_NAME, then the host name.
func loadAgentConfig(args []string, env func(string) string) (AgentConfig, error) {
	def := DefaultAgentConfig()
	def.NodeName = env("NODE_NAME")
	if def.NodeName == "" {
		def.NodeName, _ = os.Hostname()
	}
	return load(args, env, "agent", def, agentSettings(), AgentConfig.Validate)
}

func runAgent(ctx context.Context, cfg AgentConfig, _ io.Writer, started func()) error {
	log, err := telemetry.NewLogger(cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if cfg.PrepareState != "" {
		if err := prepareState(cfg.StateDir, cfg.PrepareState); err != nil {
			return err
		}
		log.Info("state directory prepared", zap.String("state_dir", cfg.StateDir), zap.String("owner", cfg.PrepareState))
		return nil
	}
	log.Info("starting lumen agent", zap.String("version", version))
	if os.Getenv("GOGC") == "" {
		// The agent's heap is small and mostly the relayed requests in
		// flight (each several times its size while decoded): collecting
		// at half again, not twice, what is live keeps it well inside the
		// DaemonSet's 128 MiB at a few more collections of a small heap.
		defer debug.SetGCPercent(debug.SetGCPercent(agentGCPercent))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return agent.Run(ctx, cfg.agent(), log, reg, started)
}

// prepareState makes dir and gives it, and everything under it, to
// owner ("UID:GID"), so that an agent running as that user can write its
// read positions and buffer where an older agent running as root left
// them.
func prepareState(dir, owner string) error {
	u, g, ok := strings.Cut(owner, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return fmt.Errorf("--prepare-state=%q: want UID:GID, e.g. 65532:65532", owner)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("prepare state: %w", err)
	}
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("prepare state: %w", err)
	}
	return nil
}
