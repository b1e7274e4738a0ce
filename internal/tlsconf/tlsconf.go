// Package tlsconf is the TLS configuration of Lumen's listeners and
// clients, in one YAML shape, built on the OpenTelemetry Collector's
// configtls (the library the embedded OTLP receiver already uses): the
// certificate and key are read again when they change (checked every
// reload interval, on the next handshake), the client CA file likewise,
// TLS 1.2 at least, and a client CA file means every client must present
// a certificate it signed (mTLS).
package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/config/configtls"
)

// DefaultReloadInterval is how often a listener's certificate and key
// files are checked for a new pair (on the next handshake after it).
const DefaultReloadInterval = time.Minute

// Server is a listener's TLS. Without a certificate file it is off.
type Server struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, is the CA bundle client certificates must
	// chain to; a client without one is refused in the handshake.
	ClientCAFile string `yaml:"client_ca_file"`
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ReloadInterval is how often the files are read again; 0: the default.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Enabled says whether the listener speaks TLS.
func (s Server) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" }

// Collector is s as the Collector's configtls server configuration.
func (s Server) Collector() configtls.ServerConfig {
	c := configtls.NewDefaultServerConfig()
	c.CertFile, c.KeyFile = s.CertFile, s.KeyFile
	c.MinVersion = s.MinVersion
	if c.MinVersion == "" {
		c.MinVersion = "1.2"
	}
	c.ReloadInterval = s.ReloadInterval
	if c.ReloadInterval == 0 {
		c.ReloadInterval = DefaultReloadInterval
	}
	if s.ClientCAFile != "" {
		c.ClientCAFile = s.ClientCAFile
		c.ReloadClientCAFile = true
	}
	return c
}

// Validate reports a configuration that cannot work, reading the files as
// a listener would. what names the setting in the message.
func (s Server) Validate(what string) error {
	if !s.Enabled() {
		if s.ClientCAFile != "" {
			return fmt.Errorf("%s: client_ca_file needs cert_file and key_file", what)
		}
		return nil
	}
	if s.CertFile == "" || s.KeyFile == "" {
		return fmt.Errorf("%s: cert_file and key_file go together", what)
	}
	switch s.MinVersion {
	case "", "1.2", "1.3":
	default:
		return fmt.Errorf("%s: min_version %q: want 1.2 or 1.3", what, s.MinVersion)
	}
	if s.ReloadInterval < 0 {
		return fmt.Errorf("%s: reload_interval %s is negative", what, s.ReloadInterval)
	}
	if _, err := s.Load(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Load is the listener's *tls.Config, nil when TLS is off.
func (s Server) Load() (*tls.Config, error) {
	if !s.Enabled() {
		return nil, nil
	}
	c := s.Collector()
	cfg, err := c.LoadTLSConfig(context.Background())
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return cfg, nil
}

// Or is s when it is set (any field), else def: a listener's own block
// replaces the shared one whole.
func (s *Server) Or(def Server) Server {
	if s == nil {
		return def
	}
	return *s
}

// Client is how a Lumen client (the agent's shipper, Alertmanager and
// remote backends later) checks the server and, for mTLS, presents itself.
type Client struct {
	// CAFile is the CA bundle the server's certificate must chain to;
	// empty: the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate, for servers that
	// ask for one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate (tests only).
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	MinVersion         string `yaml:"min_version"`
}

// Collector is c as the Collector's configtls client configuration.
func (c Client) Collector() configtls.ClientConfig {
	cc := configtls.NewDefaultClientConfig()
	cc.CAFile, cc.CertFile, cc.KeyFile = c.CAFile, c.CertFile, c.KeyFile
	cc.ServerName = c.ServerName
	cc.InsecureSkipVerify = c.InsecureSkipVerify
	cc.MinVersion = c.MinVersion
	if cc.MinVersion == "" {
		cc.MinVersion = "1.2"
	}
	cc.ReloadInterval = DefaultReloadInterval
	return cc
}

// Load is the client's *tls.Config (used for https:// URLs).
func (c Client) Load() (*tls.Config, error) {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("tls: cert_file and key_file go together")
	}
	cc := c.Collector()
	cfg, err := cc.LoadTLSConfig(context.Background())
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return cfg, nil
}
