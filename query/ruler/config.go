// Package ruler evaluates recording and alerting rules over Lumen's store
// with Prometheus' own rule manager: PromQL rules in Prometheus' format,
// LogQL rules in Loki ruler's (the same YAML, LogQL expressions), and
// sends their alerts to Alertmanager through Prometheus' notifier.
package ruler

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/lumenobs/lumen/internal/tlsconf"
)

// Config is how rules are evaluated, for every tenant.
type Config struct {
	// EvaluationInterval is a group's interval when the group sets none,
	// as Prometheus' global.evaluation_interval.
	EvaluationInterval time.Duration `yaml:"evaluation_interval"`
	// QueryOffset delays every evaluation's time, for groups that set no
	// query_offset (Prometheus' global.rule_query_offset).
	QueryOffset time.Duration `yaml:"query_offset"`
	// OutageTolerance is how long Lumen may have been down for an alert's
	// pending time to be restored from ALERTS_FOR_STATE (Prometheus'
	// --rules.alert.for-outage-tolerance); ForGracePeriod is the least an
	// alert with a 'for' waits after a restart before it fires
	// (--rules.alert.for-grace-period); ResendDelay is how often a firing
	// alert is sent again (--rules.alert.resend-delay).
	OutageTolerance time.Duration `yaml:"outage_tolerance"`
	ForGracePeriod  time.Duration `yaml:"for_grace_period"`
	ResendDelay     time.Duration `yaml:"resend_delay"`
	// MaxConcurrentEvals lets up to this many rules that do not depend on
	// each other be evaluated at once (Prometheus'
	// --enable-feature=concurrent-rule-eval with
	// --rules.max-concurrent-evals); 1, the default: one at a time,
	// in order, as Prometheus does by default.
	MaxConcurrentEvals int64 `yaml:"max_concurrent_evals"`
	// ExternalURL is where Lumen's UI is reached from outside: the alerts'
	// generatorURL and lumen_traces_url start with it, and templates see
	// it as $externalURL. Empty: http://<hostname>:<HTTP port>.
	ExternalURL string `yaml:"external_url"`
	// ExternalLabels are added to every alert sent (and seen by templates
	// as $externalLabels), as Prometheus' global.external_labels.
	ExternalLabels map[string]string `yaml:"external_labels"`
	// Builtin are the ready-made rule sets to evaluate (Builtins lists
	// them); none by default.
	Builtin []string `yaml:"builtin"`
	// ReloadInterval is how often the rule files are checked for changes
	// (read again when they changed); 0: only on SIGHUP and POST /-/reload.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// DefaultConfig is Prometheus' defaults.
func DefaultConfig() Config {
	return Config{
		EvaluationInterval: time.Minute,
		OutageTolerance:    time.Hour,
		ForGracePeriod:     10 * time.Minute,
		ResendDelay:        time.Minute,
		MaxConcurrentEvals: 1,
		ReloadInterval:     10 * time.Second,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.EvaluationInterval <= 0 || c.OutageTolerance <= 0 || c.ResendDelay <= 0 || c.MaxConcurrentEvals <= 0 {
		return fmt.Errorf("rules: evaluation_interval %s, outage_tolerance %s, resend_delay %s and max_concurrent_evals %d must be positive",
			c.EvaluationInterval, c.OutageTolerance, c.ResendDelay, c.MaxConcurrentEvals)
	}
	if c.QueryOffset < 0 || c.ForGracePeriod < 0 || c.ReloadInterval < 0 {
		return fmt.Errorf("rules: query_offset %s, for_grace_period %s and reload_interval %s must not be negative", c.QueryOffset, c.ForGracePeriod, c.ReloadInterval)
	}
	if c.ExternalURL != "" {
		u, err := url.Parse(c.ExternalURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("rules.external_url %q is not an http(s) URL", c.ExternalURL)
		}
	}
	for k, v := range c.ExternalLabels {
		if !model.UTF8Validation.IsValidLabelName(k) || k == model.MetricNameLabel || v == "" {
			return fmt.Errorf("rules.external_labels: %q=%q is not a label", k, v)
		}
	}
	for _, b := range c.Builtin {
		if _, ok := builtinFiles[b]; !ok {
			return fmt.Errorf("rules.builtin: %q is none of %s", b, strings.Join(Builtins(), ", "))
		}
	}
	return nil
}

// ExternalURLOr is c's external URL, or def when it has none, without a
// trailing slash.
func (c Config) ExternalURLOr(def string) string {
	if c.ExternalURL != "" {
		return strings.TrimRight(c.ExternalURL, "/")
	}
	return strings.TrimRight(def, "/")
}

// DefaultExternalURL is http://<hostname>:<port of addr>, as Prometheus
// makes its own.
func DefaultExternalURL(addr string, tls bool) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	port := addr[strings.LastIndex(addr, ":")+1:]
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + host + ":" + port
}

// AlertingConfig is where alerts go.
type AlertingConfig struct {
	Alertmanagers []AlertmanagerConfig `yaml:"alertmanagers"`
	// QueueCapacity bounds the alerts waiting to be sent; past it the
	// oldest are dropped (prometheus_notifications_dropped_total), as
	// Prometheus' --alertmanager.notification-queue-capacity.
	QueueCapacity int `yaml:"queue_capacity"`
}

// DefaultAlertingConfig: no Alertmanager, Prometheus' queue of 10,000.
func DefaultAlertingConfig() AlertingConfig { return AlertingConfig{QueueCapacity: 10000} }

// AlertmanagerConfig is one Alertmanager, with the TLS options Lumen's
// other clients take.
type AlertmanagerConfig struct {
	// URL is the Alertmanager's base URL (http://am:9093, with a path
	// prefix when it is served under one); alerts go to <URL>/api/v2/alerts.
	URL string         `yaml:"url"`
	TLS tlsconf.Client `yaml:"tls"`
	// BearerTokenFile is a file holding a token sent as Authorization:
	// Bearer, read on every request.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// BasicAuth: a user and a file with the password, read on every request.
	BasicAuth *BasicAuth `yaml:"basic_auth"`
	// Timeout bounds one send; 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// BasicAuth is a user and the file holding its password.
type BasicAuth struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// Validate reports the first Alertmanager that cannot be used.
func (c AlertingConfig) Validate() error {
	if c.QueueCapacity <= 0 {
		return fmt.Errorf("alerting.queue_capacity %d is not positive", c.QueueCapacity)
	}
	for i, am := range c.Alertmanagers {
		u, err := url.Parse(am.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("alerting.alertmanagers[%d]: url %q is not an http(s) URL", i, am.URL)
		}
		if u.User != nil {
			return fmt.Errorf("alerting.alertmanagers[%d]: url %q holds credentials: use basic_auth with a password_file", i, am.URL)
		}
		if am.BearerTokenFile != "" && am.BasicAuth != nil {
			return fmt.Errorf("alerting.alertmanagers[%d]: bearer_token_file and basic_auth are exclusive", i)
		}
		if am.BasicAuth != nil && (am.BasicAuth.Username == "" || am.BasicAuth.PasswordFile == "") {
			return fmt.Errorf("alerting.alertmanagers[%d]: basic_auth needs username and password_file", i)
		}
		if am.Timeout < 0 {
			return fmt.Errorf("alerting.alertmanagers[%d]: timeout %s is negative", i, am.Timeout)
		}
		if _, err := am.TLS.Load(); err != nil {
			return fmt.Errorf("alerting.alertmanagers[%d].tls: %w", i, err)
		}
	}
	return nil
}
