package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
)

// KubeConfig configures the enrichment of logs and relayed telemetry with
// pod metadata from the Kubernetes API.
type KubeConfig struct {
	// Enabled turns the lookups on; when APIURL is empty the in-cluster
	// address (KUBERNETES_SERVICE_HOST/PORT) is used, and without it the
	// lookups are off.
	Enabled bool `yaml:"enabled"`
	// APIURL is the API server, e.g. https://kubernetes.default.svc.
	APIURL string `yaml:"api_url"`
	// TokenFile and CAFile are the service account's token and the API
	// server's CA; the token is read again for every request (it rotates).
	TokenFile string `yaml:"token_file"`
	CAFile    string `yaml:"ca_file"`
	// Resync is how often the node's pods are listed again; a pod not yet
	// known also asks for a list (at most once a second).
	Resync time.Duration `yaml:"resync"`
}

// DefaultKubeConfig uses the pod's service account.
func DefaultKubeConfig() KubeConfig {
	return KubeConfig{
		Enabled:   true,
		TokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token",
		CAFile:    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
		Resync:    30 * time.Second,
	}
}

// PodMeta is what the API says of a pod.
type PodMeta struct {
	Namespace, Name, UID, IP string
	Labels                   map[string]string
	// Workload are the attributes naming the pod's owners, e.g.
	// k8s.deployment.name and k8s.replicaset.name.
	Workload map[string]string
}

// serviceName is the pod's service: the app.kubernetes.io/name or app
// label, else its workload's name.
func (m *PodMeta) serviceName() string {
	if m == nil {
		return ""
	}
	for _, l := range []string{"app.kubernetes.io/name", "app"} {
		if v := m.Labels[l]; v != "" {
			return v
		}
	}
	for _, k := range []string{"k8s.deployment.name", "k8s.statefulset.name", "k8s.daemonset.name", "k8s.cronjob.name", "k8s.job.name"} {
		if v := m.Workload[k]; v != "" {
			return v
		}
	}
	return ""
}

// podCache holds the metadata of the node's pods, by uid and by IP.
type podCache struct {
	cfg    KubeConfig
	api    string
	node   string
	client *http.Client
	log    *zap.Logger

	mu    sync.RWMutex
	uid   map[string]*PodMeta
	ip    map[string]*PodMeta
	kick  chan struct{}
	ready chan struct{}
	once  sync.Once
}

// newPodCache returns nil (no enrichment) when the API is off or unknown.
func newPodCache(cfg KubeConfig, node string, log *zap.Logger) (*podCache, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	api := cfg.APIURL
	if api == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			log.Info("not in a Kubernetes cluster and no kubernetes.api_url: pods' labels and workloads are not looked up")
			return nil, nil
		}
		api = "https://" + net.JoinHostPort(host, port)
	}
	if node == "" {
		return nil, fmt.Errorf("kubernetes: the node name is needed to list its pods (set NODE_NAME from the downward API)")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if strings.HasPrefix(api, "https://") && cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kubernetes: CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubernetes: no certificate in %s", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if cfg.TokenFile != "" && !strings.HasPrefix(api, "https://") {
		// A bearer token over plain HTTP is the service account's
		// credentials to whoever is on the path: it is not sent.
		log.Warn("kubernetes.api_url is not https: the service account's token is not sent, and the API must answer without it",
			zap.String("api_url", api))
		cfg.TokenFile = ""
	}
	return &podCache{
		cfg: cfg, api: strings.TrimSuffix(api, "/"), node: node, log: log.Named("kubernetes"),
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		uid:    map[string]*PodMeta{}, ip: map[string]*PodMeta{}, kick: make(chan struct{}, 1), ready: make(chan struct{}),
	}, nil
}

func (p *podCache) run(ctx context.Context) {
	limit := time.NewTicker(time.Second)
	defer limit.Stop()
	for {
		if err := p.list(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("list the node's pods", zap.Error(err))
		}
		p.once.Do(func() { close(p.ready) })
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.cfg.Resync):
		case <-p.kick:
			select { // at most one list a second
			case <-ctx.Done():
				return
			case <-limit.C:
			}
		}
	}
}

func (p *podCache) list(ctx context.Context) error {
	u := p.api + "/api/v1/pods?" + url.Values{"fieldSelector": {"spec.nodeName=" + p.node}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if p.cfg.TokenFile != "" {
		if tok, err := os.ReadFile(p.cfg.TokenFile); err == nil {
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /api/v1/pods: %s", resp.Status)
	}
	var pods corev1.PodList
	if err := json.NewDecoder(resp.Body).Decode(&pods); err != nil {
		return fmt.Errorf("decode the pod list: %w", err)
	}
	uid := make(map[string]*PodMeta, len(pods.Items))
	ip := make(map[string]*PodMeta, len(pods.Items))
	for i := range pods.Items {
		m := podMeta(&pods.Items[i])
		uid[m.UID] = m
		if !pods.Items[i].Spec.HostNetwork { // host-network pods share the node's address
			for _, a := range pods.Items[i].Status.PodIPs {
				ip[a.IP] = m
			}
		}
	}
	p.mu.Lock()
	p.uid, p.ip = uid, ip
	p.mu.Unlock()
	return nil
}

func podMeta(pod *corev1.Pod) *PodMeta {
	m := &PodMeta{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), IP: pod.Status.PodIP, Labels: pod.Labels, Workload: map[string]string{}}
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		switch o.Kind {
		case "ReplicaSet":
			m.Workload["k8s.replicaset.name"] = o.Name
			// A Deployment names its ReplicaSets <deployment>-<pod-template-hash>.
			if h := pod.Labels["pod-template-hash"]; h != "" {
				if d, ok := strings.CutSuffix(o.Name, "-"+h); ok {
					m.Workload["k8s.deployment.name"] = d
				}
			}
		case "StatefulSet":
			m.Workload["k8s.statefulset.name"] = o.Name
		case "DaemonSet":
			m.Workload["k8s.daemonset.name"] = o.Name
		case "Job":
			m.Workload["k8s.job.name"] = o.Name
			// A CronJob names its Jobs <cronjob>-<scheduled time in minutes>.
			if i := strings.LastIndexByte(o.Name, '-'); i > 0 {
				if _, err := strconv.ParseUint(o.Name[i+1:], 10, 64); err == nil {
					m.Workload["k8s.cronjob.name"] = o.Name[:i]
				}
			}
		}
	}
	return m
}

func (p *podCache) byUID(uid string) *PodMeta {
	p.mu.RLock()
	m := p.uid[uid]
	p.mu.RUnlock()
	if m == nil {
		p.refresh()
	}
	return m
}

func (p *podCache) byIP(ip string) *PodMeta {
	p.mu.RLock()
	m := p.ip[ip]
	p.mu.RUnlock()
	if m == nil {
		p.refresh()
	}
	return m
}

func (p *podCache) refresh() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// podResource sets the resource attributes of a container's log lines:
// its identity from the path, the node, and what the API knows of the pod.
func podResource(attrs pcommon.Map, pod Pod, node string, meta *PodMeta) {
	attrs.PutStr("k8s.namespace.name", pod.Namespace)
	attrs.PutStr("k8s.pod.name", pod.Name)
	attrs.PutStr("k8s.pod.uid", pod.UID)
	attrs.PutStr("k8s.container.name", pod.Container)
	attrs.PutInt("k8s.container.restart_count", int64(pod.Restart))
	if node != "" {
		attrs.PutStr("k8s.node.name", node)
	}
	service := meta.serviceName()
	if service == "" {
		service = pod.Container
	}
	attrs.PutStr("service.name", service)
	putMeta(attrs, meta)
}

func putMeta(attrs pcommon.Map, meta *PodMeta) {
	if meta == nil {
		return
	}
	for k, v := range meta.Workload {
		attrs.PutStr(k, v)
	}
	for k, v := range meta.Labels {
		attrs.PutStr("k8s.pod.label."+k, v)
	}
}

// relayResource adds, to a resource a pod sent, what the agent knows of
// the pod; attributes the pod set itself are kept.
func relayResource(attrs pcommon.Map, node string, meta *PodMeta) {
	put := func(k, v string) {
		if _, ok := attrs.Get(k); !ok && v != "" {
			attrs.PutStr(k, v)
		}
	}
	put("k8s.node.name", node)
	if meta == nil {
		return
	}
	put("k8s.namespace.name", meta.Namespace)
	put("k8s.pod.name", meta.Name)
	put("k8s.pod.uid", meta.UID)
	put("k8s.pod.ip", meta.IP)
	for k, v := range meta.Workload {
		put(k, v)
	}
	for k, v := range meta.Labels {
		put("k8s.pod.label."+k, v)
	}
	put("service.name", meta.serviceName())
}
