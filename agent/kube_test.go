package agent

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func yes() *bool { b := true; return &b }

// nodePods is what an API server answers for the node's pods.
func nodePods() corev1.PodList {
	return corev1.PodList{Items: []corev1.Pod{
		{
			ObjectMeta: metav1.ObjectMeta{Name: "web-7d4b9c-x2k4", Namespace: "shop", UID: "u-web",
				Labels:          map[string]string{"app.kubernetes.io/name": "web", "pod-template-hash": "7d4b9c"},
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-7d4b9c", Controller: yes()}}},
			Status: corev1.PodStatus{PodIP: "10.0.0.5", PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "report-29400000-abcde", Namespace: "batch", UID: "u-job",
				OwnerReferences: []metav1.OwnerReference{{Kind: "Job", Name: "report-29400000", Controller: yes()}}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "node-exporter-x", Namespace: "mon", UID: "u-host",
				OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: "node-exporter", Controller: yes()}}},
			Spec:   corev1.PodSpec{HostNetwork: true},
			Status: corev1.PodStatus{PodIP: "192.168.1.10", PodIPs: []corev1.PodIP{{IP: "192.168.1.10"}}},
		},
	}}
}

func TestPodCacheFromTheAPI(t *testing.T) {
	var auth, selector string
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, selector = r.Header.Get("Authorization"), r.URL.Query().Get("fieldSelector")
		if r.URL.Path != "/api/v1/pods" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(nodePods())
	}))
	defer api.Close()
	dir := t.TempDir()
	token, ca := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o600)
	p := runPodCache(t, KubeConfig{Enabled: true, APIURL: api.URL, TokenFile: token, CAFile: ca, Resync: time.Hour})
	if auth != "Bearer s3cret" || selector != "spec.nodeName=node-a" {
		t.Fatalf("asked with %q for %q", auth, selector)
	}
	web := p.byIP("10.0.0.5")
	if web == nil || web.Workload["k8s.deployment.name"] != "web" || web.Workload["k8s.replicaset.name"] != "web-7d4b9c" || web.serviceName() != "web" {
		t.Fatalf("web: %+v", web)
	}
	job := p.byUID("u-job")
	if job == nil || job.Workload["k8s.cronjob.name"] != "report" || job.serviceName() != "report" {
		t.Fatalf("job: %+v", job)
	}
	if p.byIP("192.168.1.10") != nil {
		t.Fatal("a host-network pod was found by the node's address")
	}

	attrs := pcommon.NewMap()
	podResource(attrs, Pod{Namespace: "shop", Name: "web-7d4b9c-x2k4", UID: "u-web", Container: "app", Restart: 2}, "node-a", web)
	want := map[string]any{"k8s.namespace.name": "shop", "k8s.pod.name": "web-7d4b9c-x2k4", "k8s.pod.uid": "u-web", "k8s.container.name": "app",
		"k8s.container.restart_count": int64(2), "k8s.node.name": "node-a", "service.name": "web", "k8s.deployment.name": "web",
		"k8s.pod.label.app.kubernetes.io/name": "web"}
	for k, v := range want {
		got, ok := attrs.Get(k)
		if !ok || got.AsRaw() != v {
			t.Errorf("%s = %v, want %v", k, got.AsRaw(), v)
		}
	}
	// The relay keeps what the pod said of itself.
	attrs = pcommon.NewMap()
	attrs.PutStr("service.name", "checkout")
	relayResource(attrs, "node-a", web)
	if v, _ := attrs.Get("service.name"); v.Str() != "checkout" {
		t.Fatal("the relay replaced the pod's own service.name")
	}
	if v, _ := attrs.Get("k8s.pod.name"); v.Str() != "web-7d4b9c-x2k4" {
		t.Fatal("no pod name added")
	}
}

func TestNodeMetricsReadThisMachine(t *testing.T) {
	b, err := OpenBuffer(t.TempDir(), 1<<20, NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n, err := newNodeMetrics(DefaultNodeConfig(), "node-a", b, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	md := n.collect(time.Now())
	names := map[string]int{}
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for i := range ms.Len() {
		m := ms.At(i)
		var dps interface{ Len() int }
		if m.Type().String() == "Sum" {
			dps = m.Sum().DataPoints()
			if !m.Sum().IsMonotonic() {
				t.Errorf("%s is not monotonic", m.Name())
			}
		} else {
			dps = m.Gauge().DataPoints()
		}
		names[m.Name()] += dps.Len()
	}
	for _, want := range []string{"node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_load1", "node_filesystem_size_bytes", "node_network_receive_bytes_total"} {
		if names[want] == 0 {
			t.Errorf("no %s (got %v)", want, names)
		}
	}
	dp := ms.At(0).Sum().DataPoints().At(0)
	if v, _ := dp.Attributes().Get("node"); v.Str() != "node-a" {
		t.Fatalf("points are not labelled with the node: %v", dp.Attributes().AsRaw())
	}
}

// TestPodCacheNeverSendsTheTokenOverHTTP: an API URL that is not https
// gets no Authorization header, whatever token file is set.
func TestPodCacheNeverSendsTheTokenOverHTTP(t *testing.T) {
	auth := make(chan string, 1)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case auth <- r.Header.Get("Authorization"):
		default:
		}
		json.NewEncoder(w).Encode(nodePods())
	}))
	defer api.Close()
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	p := runPodCache(t, KubeConfig{Enabled: true, APIURL: api.URL, TokenFile: token, Resync: time.Hour})
	if got := <-auth; got != "" {
		t.Fatalf("the token went over plain HTTP: %q", got)
	}
	if p.byIP("10.0.0.5") == nil {
		t.Fatal("the pods were not read")
	}
}

// runPodCache runs the pod cache of node-a until the test ends, once it
// has listed the pods.
func runPodCache(t *testing.T, cfg KubeConfig) *podCache {
	t.Helper()
	p, err := newPodCache(cfg, "node-a", zap.NewNop())
	if err != nil || p == nil {
		t.Fatal(p, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go p.run(ctx)
	<-p.ready
	return p
}
