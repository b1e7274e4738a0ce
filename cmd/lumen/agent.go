package main

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/agent"
	"github.com/lumenobs/lumen/internal/telemetry"
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
	Logs           agent.LogsConfig `yaml:"logs"`
	NodeMetrics    agent.NodeConfig `yaml:"node_metrics"`
	Kubernetes     agent.KubeConfig `yaml:"kubernetes"`
	Ship           agent.ShipConfig `yaml:"ship"`
	Log            LogConfig        `yaml:"log"`
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
		Logs: c.Logs, Node: c.NodeMetrics, Kubernetes: c.Kubernetes, Ship: c.Ship, Version: version,
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
		{"node-name", "LUMEN_NODE_NAME", "the node's name (default: $NODE_NAME, else the host name)", str(func(c *AgentConfig) *string { return &c.NodeName }), false},
		{"log-glob", "LUMEN_LOG_GLOB", "container log files to read (empty: none)", str(func(c *AgentConfig) *string { return &c.Logs.Glob }), false},
		{"state-dir", "LUMEN_STATE_DIR", "directory of the read positions and the on-disk buffer (a hostPath)", str(func(c *AgentConfig) *string { return &c.StateDir }), false},
		{"http-addr", "LUMEN_HTTP_ADDR", "address of the agent's /metrics, /-/healthy and /-/ready", str(func(c *AgentConfig) *string { return &c.HTTPAddr }), false},
		{"otlp-grpc-addr", "LUMEN_OTLP_GRPC_ADDR", "OTLP gRPC address for the node's pods (empty disables)", str(func(c *AgentConfig) *string { return &c.OTLPGRPCAddr }), false},
		{"otlp-http-addr", "LUMEN_OTLP_HTTP_ADDR", "OTLP HTTP address for the node's pods (empty disables)", str(func(c *AgentConfig) *string { return &c.OTLPHTTPAddr }), false},
		{"buffer-max-bytes", "LUMEN_BUFFER_MAX_BYTES", "size of the on-disk buffer, e.g. 1GiB; past it the oldest data is dropped", func(c *AgentConfig, v string) error { return c.BufferMaxBytes.parse(v) }, false},
		{"node-metrics-interval", "LUMEN_NODE_METRICS_INTERVAL", "how often the node's metrics are sent (0 disables)", dur(func(c *AgentConfig) *time.Duration { return &c.NodeMetrics.Interval }), false},
		{"proc-path", "LUMEN_PROC_PATH", "where the host's /proc is mounted", str(func(c *AgentConfig) *string { return &c.NodeMetrics.ProcPath }), false},
		{"sys-path", "LUMEN_SYS_PATH", "where the host's /sys is mounted", str(func(c *AgentConfig) *string { return &c.NodeMetrics.SysPath }), false},
		{"root-path", "LUMEN_ROOT_PATH", "where the host's / is mounted (for file system sizes)", str(func(c *AgentConfig) *string { return &c.NodeMetrics.RootPath }), false},
		{"kubernetes", "LUMEN_KUBERNETES", "look pods up in the Kubernetes API (labels, workloads, pod IPs for the relay)", boolean(func(c *AgentConfig) *bool { return &c.Kubernetes.Enabled }), true},
		{"kubernetes-api-url", "LUMEN_KUBERNETES_API_URL", "the API server (default: in-cluster)", str(func(c *AgentConfig) *string { return &c.Kubernetes.APIURL }), false},
		{"log-format", "LUMEN_LOG_FORMAT", "console or json", str(func(c *AgentConfig) *string { return &c.Log.Format }), false},
		{"log-level", "LUMEN_LOG_LEVEL", "debug, info, warn or error", str(func(c *AgentConfig) *string { return &c.Log.Level }), false},
	}
}

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
	log.Info("starting lumen agent", zap.String("version", version))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return agent.Run(ctx, cfg.agent(), log, reg, started)
}
