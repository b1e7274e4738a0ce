package ruler

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/telemetry"
)

// Notifier sends the alerts of every tenant's rules to the configured
// Alertmanagers through Prometheus' notifier: its queue, batches, retries
// and metrics (prometheus_notifications_*).
type Notifier struct {
	m     *notifier.Manager
	tsets chan map[string][]*targetgroup.Group
	done  chan struct{}
}

// NewNotifier starts sending to cfg's Alertmanagers; nil when there are
// none.
func NewNotifier(cfg AlertingConfig, externalLabels map[string]string, log *zap.Logger, reg prometheus.Registerer) (*Notifier, error) {
	if len(cfg.Alertmanagers) == 0 {
		return nil, nil
	}
	pc := config.DefaultConfig
	pc.GlobalConfig.ExternalLabels = labels.FromMap(externalLabels)
	pc.GlobalConfig.MetricNameValidationScheme = model.UTF8Validation
	targets := map[string][]*targetgroup.Group{}
	for i, am := range cfg.Alertmanagers {
		ac, addr, err := alertmanagerConfig(am)
		if err != nil {
			return nil, fmt.Errorf("alerting.alertmanagers[%d]: %w", i, err)
		}
		pc.AlertingConfig.AlertmanagerConfigs = append(pc.AlertingConfig.AlertmanagerConfigs, ac)
		// The keys are those config.AlertmanagerConfigs.ToMap gives.
		targets[fmt.Sprintf("config-%d", i)] = []*targetgroup.Group{{
			Source:  am.URL,
			Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(addr)}},
		}}
	}
	m := notifier.NewManager(&notifier.Options{
		QueueCapacity:   cfg.QueueCapacity,
		DrainOnShutdown: true,
		Registerer:      reg,
	}, model.UTF8Validation, telemetry.Slog(log.Named("notifier")))
	if err := m.ApplyConfig(&pc); err != nil {
		return nil, fmt.Errorf("alerting: %w", err)
	}
	n := &Notifier{m: m, tsets: make(chan map[string][]*targetgroup.Group, 1), done: make(chan struct{})}
	n.tsets <- targets
	go func() { defer close(n.done); m.Run(n.tsets) }()
	return n, nil
}

// alertmanagerConfig is am as Prometheus' configuration, and the address
// its one static target has.
func alertmanagerConfig(am AlertmanagerConfig) (*config.AlertmanagerConfig, string, error) {
	u, err := url.Parse(am.URL)
	if err != nil {
		return nil, "", fmt.Errorf("url %q: %w", am.URL, err)
	}
	ac := config.DefaultAlertmanagerConfig
	ac.Scheme = u.Scheme
	ac.PathPrefix = strings.TrimRight(u.Path, "/")
	if am.Timeout > 0 {
		ac.Timeout = model.Duration(am.Timeout)
	}
	hc := commoncfg.DefaultHTTPClientConfig
	hc.TLSConfig = commoncfg.TLSConfig{
		CAFile:             am.TLS.CAFile,
		CertFile:           am.TLS.CertFile,
		KeyFile:            am.TLS.KeyFile,
		ServerName:         am.TLS.ServerName,
		InsecureSkipVerify: am.TLS.InsecureSkipVerify,
		MinVersion:         commoncfg.TLSVersion(tls.VersionTLS12),
	}
	if v, ok := tlsVersions[am.TLS.MinVersion]; ok {
		hc.TLSConfig.MinVersion = commoncfg.TLSVersion(v)
	} else if am.TLS.MinVersion != "" {
		return nil, "", fmt.Errorf("tls.min_version %q is none of 1.2, 1.3", am.TLS.MinVersion)
	}
	if am.BearerTokenFile != "" {
		hc.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: am.BearerTokenFile}
	}
	if am.BasicAuth != nil {
		hc.BasicAuth = &commoncfg.BasicAuth{Username: am.BasicAuth.Username, PasswordFile: am.BasicAuth.PasswordFile}
	}
	if err := hc.Validate(); err != nil {
		return nil, "", err
	}
	ac.HTTPClientConfig = hc
	return &ac, u.Host, nil
}

var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// Send queues alerts; they go to every Alertmanager.
func (n *Notifier) Send(alerts ...*notifier.Alert) { n.m.Send(alerts...) }

// Alertmanagers are the Alertmanagers alerts go to (/api/v1/alertmanagers).
func (n *Notifier) Alertmanagers() []*url.URL {
	if n == nil {
		return nil
	}
	return n.m.Alertmanagers()
}

// DroppedAlertmanagers is always empty: every one is configured by URL.
func (n *Notifier) DroppedAlertmanagers() []*url.URL {
	if n == nil {
		return nil
	}
	return n.m.DroppedAlertmanagers()
}

// Stop sends what is queued (within the notifier's timeout), then stops.
func (n *Notifier) Stop() {
	if n == nil {
		return
	}
	n.m.Stop()
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
	}
}
