package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lumenobs/lumen/agent"
	"github.com/lumenobs/lumen/internal/otlptest"
)

// agentConfig is a `lumen agent` on loopback that reads root/pods and
// ships to the server whose OTLP/HTTP address is otlpHTTP, with short
// intervals so tests do not wait.
func agentConfig(t *testing.T, root, otlpHTTP string) AgentConfig {
	cfg := DefaultAgentConfig()
	cfg.Server = "http://" + otlpHTTP
	cfg.NodeName = "node-a"
	cfg.StateDir = filepath.Join(root, "state")
	cfg.HTTPAddr = freeAddr(t)
	cfg.OTLPGRPCAddr = freeAddr(t)
	cfg.OTLPHTTPAddr = freeAddr(t)
	cfg.Logs.Glob = filepath.Join(root, "pods", "*", "*", "*.log")
	cfg.Logs.ScanInterval = 100 * time.Millisecond
	cfg.Logs.PollInterval = 20 * time.Millisecond
	cfg.Logs.FlushInterval = 100 * time.Millisecond
	cfg.Logs.RotateWait = 300 * time.Millisecond
	cfg.NodeMetrics.Interval = 200 * time.Millisecond
	cfg.Kubernetes.Enabled = false
	cfg.Ship.MinBackoff = 20 * time.Millisecond
	cfg.Ship.MaxBackoff = 200 * time.Millisecond
	cfg.Log.Level = "warn"
	return cfg
}

// startAgent runs `lumen agent` in this process until the test ends.
func startAgent(t *testing.T, cfg AgentConfig) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() { done <- runAgent(ctx, cfg, io.Discard, func() { close(started) }) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("agent did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not start in 20s")
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// agentArgs are the flags that make a child `lumen agent` run as cfg.
func agentArgs(cfg AgentConfig) string {
	return fmt.Sprintf("agent --server %s --node-name %s --state-dir %s --http-addr %s --otlp-grpc-addr %s --otlp-http-addr %s --log-glob %s --node-metrics-interval 0 --log-level warn",
		cfg.Server, cfg.NodeName, cfg.StateDir, cfg.HTTPAddr, cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.Logs.Glob)
}

// startAgentChild runs `lumen agent` as a child process, for SIGKILL.
func startAgentChild(t *testing.T, cfg AgentConfig) *exec.Cmd {
	t.Helper()
	return startLumenChild(t, agentArgs(cfg), cfg.HTTPAddr, os.Stderr)
}

// podLog is a container's log file under root/pods, with its directories.
func podLog(t *testing.T, root, ns, pod, uid, container string) string {
	t.Helper()
	dir := filepath.Join(root, "pods", ns+"_"+pod+"_"+uid, container)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return filepath.Join(dir, "0.log")
}

func appendFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(strings.Join(lines, ""))
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// cri is a line as containerd and CRI-O write it.
func cri(stream, tag, text string) string {
	return time.Now().UTC().Format(time.RFC3339Nano) + " " + stream + " " + tag + " " + text + "\n"
}

// docker is a line as Docker's json-file driver writes it.
func docker(stream, text string) string {
	b, _ := json.Marshal(map[string]string{"log": text, "stream": stream, "time": time.Now().UTC().Format(time.RFC3339Nano)})
	return string(b) + "\n"
}

type shippedLine struct {
	labels map[string]string
	line   string
}

var tokenRE = regexp.MustCompile(`\bL(\d+)\b`)

// shipped reads back every line of the last hour whose namespace matches,
// by its L<n> token.
func shipped(httpAddr, nsRegexp string) (map[string][]shippedLine, error) {
	q := url.Values{"query": {`{k8s_namespace_name=~"` + nsRegexp + `"}`}, "limit": {"5000"},
		"start": {fmt.Sprint(time.Now().Add(-time.Hour).UnixNano())}, "end": {fmt.Sprint(time.Now().Add(time.Minute).UnixNano())}}
	resp, err := http.Get("http://" + httpAddr + "/loki/api/v1/query_range?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out lokiQueryResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	var streams []lokiStreamResult
	if err := json.Unmarshal(out.Data.Result, &streams); err != nil {
		return nil, err
	}
	got := map[string][]shippedLine{}
	for _, s := range streams {
		for _, v := range s.Values {
			tok := tokenRE.FindString(v[1])
			got[tok] = append(got[tok], shippedLine{labels: s.Stream, line: v[1]})
		}
	}
	return got, nil
}

// waitAll waits until every token L<from>…L<to> arrived; exactly once when
// once is set.
func waitAll(t *testing.T, httpAddr, ns string, from, to int, once bool) map[string][]shippedLine {
	t.Helper()
	var got map[string][]shippedLine
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var err error
		got, err = shipped(httpAddr, ns)
		if !assert.NoError(c, err) {
			return
		}
		var missing []string
		for i := from; i <= to; i++ {
			if len(got[fmt.Sprintf("L%d", i)]) == 0 {
				missing = append(missing, fmt.Sprintf("L%d", i))
			}
		}
		assert.Empty(c, missing, "lines not (yet) shipped")
	}, 30*time.Second, 100*time.Millisecond)
	twice := 0
	for tok, ls := range got {
		if len(ls) > 1 {
			twice++
			if once {
				t.Errorf("%s arrived %d times", tok, len(ls))
			}
		}
	}
	if !once && twice > 0 {
		t.Logf("%d lines arrived twice (sent again after the server died before answering)", twice)
	}
	return got
}

const (
	trace1 = "5b8efff798038103d269b633813fc60c"
	span1  = "eee19b7ec3c1b174"
	trace2 = "0af7651916cd43dd8448eb211c80319c"
	span2  = "b7ad6b7169203331"
)

// TestAgentShipsContainerLogs: a /var/log/pods tree in both formats, with
// split lines, trace ids in JSON, logfmt and traceparent, a rotation by
// rename, one by copy and truncate, and a pod that appears later — every
// line arrives once, with its pod's identity and its trace id.
func TestAgentShipsContainerLogs(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	root := t.TempDir()
	app := podLog(t, root, "shop", "web-abc", "u1", "app")
	side := podLog(t, root, "shop", "web-abc", "u1", "sidecar")
	appendFile(t, app,
		cri("stdout", "F", `{"level":"info","msg":"L1 cart loaded","trace_id":"`+trace1+`"}`),
		cri("stdout", "F", "level=warn msg=\"L2 slow\" trace_id="+trace1+" span_id="+span1),
		cri("stderr", "F", "L3 calling traceparent=00-"+trace2+"-"+span2+"-01"),
		cri("stdout", "P", "L4 first half "),
		cri("stderr", "F", "L5 between the halves, on stderr"),
		cri("stdout", "F", "second half"),
	)
	for i := 6; i <= 20; i++ {
		appendFile(t, app, cri("stdout", "F", fmt.Sprintf("L%d plain line", i)))
	}
	for i := 21; i <= 40; i++ {
		if i == 30 { // Docker splits long lines: no newline until the last part
			appendFile(t, side, docker("stdout", "L30 a long line "), docker("stdout", "that Docker split\n"))
			continue
		}
		appendFile(t, side, docker("stdout", fmt.Sprintf("L%d sidecar says hi\n", i)))
	}
	startAgent(t, agentConfig(t, root, s.cfg.OTLP.HTTPAddr))
	waitAll(t, s.cfg.HTTPAddr, "shop", 1, 40, true)

	// Rotation by rename, right after writing: the renamed file is read to
	// its end, the new one from its start.
	for i := 41; i <= 50; i++ {
		appendFile(t, app, cri("stdout", "F", fmt.Sprintf("L%d before the rename", i)))
	}
	require.NoError(t, os.Rename(app, app+".20261129-070000"))
	for i := 51; i <= 60; i++ {
		appendFile(t, app, cri("stdout", "F", fmt.Sprintf("L%d after the rename", i)))
	}
	// Rotation by copy and truncate: what was not read yet is read from the
	// copy.
	for i := 61; i <= 70; i++ {
		appendFile(t, side, docker("stdout", fmt.Sprintf("L%d before the truncate\n", i)))
	}
	b, err := os.ReadFile(side)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(side+".1", b, 0o644))
	require.NoError(t, os.Truncate(side, 0))
	for i := 71; i <= 80; i++ {
		appendFile(t, side, docker("stdout", fmt.Sprintf("L%d after the truncate\n", i)))
	}
	// A pod that appears.
	api := podLog(t, root, "payments", "api-xyz", "u2", "api")
	for i := 81; i <= 90; i++ {
		appendFile(t, api, cri("stdout", "F", fmt.Sprintf("L%d from the new pod", i)))
	}
	appendFile(t, api, "L91 is not a CRI line\n")

	got := waitAll(t, s.cfg.HTTPAddr, ".+", 1, 91, true)
	require.Len(t, got, 91, "lines other than L1…L91 arrived")

	ident := func(tok string) map[string]string {
		l := got[tok][0].labels
		return map[string]string{"ns": l["k8s_namespace_name"], "pod": l["k8s_pod_name"], "uid": l["k8s_pod_uid"], "container": l["k8s_container_name"], "node": l["k8s_node_name"], "service": l["service_name"]}
	}
	assert.Equal(t, map[string]string{"ns": "shop", "pod": "web-abc", "uid": "u1", "container": "app", "node": "node-a", "service": "app"}, ident("L1"))
	assert.Equal(t, map[string]string{"ns": "shop", "pod": "web-abc", "uid": "u1", "container": "sidecar", "node": "node-a", "service": "sidecar"}, ident("L65"))
	assert.Equal(t, map[string]string{"ns": "payments", "pod": "api-xyz", "uid": "u2", "container": "api", "node": "node-a", "service": "api"}, ident("L85"))
	assert.Equal(t, "L4 first half second half", got["L4"][0].line, "a CRI line split in two")
	assert.Equal(t, "L30 a long line that Docker split", got["L30"][0].line, "a Docker line split in two")
	assert.Equal(t, "stderr", got["L5"][0].labels["log_iostream"])
	assert.Equal(t, "L91 is not a CRI line", got["L91"][0].line, "a malformed line is shipped as it is")

	// The trace ids: found in JSON, logfmt and a traceparent, and indexed.
	tr := getTrace(t, s, trace1)
	require.Equal(t, 2, tr.LogCount)
	var spans []string
	for _, l := range tr.Logs {
		spans = append(spans, l.SpanID)
	}
	assert.ElementsMatch(t, []string{"", span1}, spans)
	tr = getTrace(t, s, trace2)
	require.Equal(t, 1, tr.LogCount)
	assert.Equal(t, span2, tr.Logs[0].SpanID)

	// Node metrics, labelled with the node.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, err := queryVector(s, `count by (node) (node_cpu_seconds_total)`, "node")
		assert.NoError(c, err)
		assert.Contains(c, got, "node-a")
		got, err = queryVector(s, `node_memory_MemAvailable_bytes{node="node-a"}`)
		assert.NoError(c, err)
		assert.NotEmpty(c, got)
	}, 10*time.Second, 100*time.Millisecond)
}

// writer appends numbered lines to files round-robin at a steady pace.
type writer struct {
	files []string
	next  int
}

func (w *writer) write(t *testing.T, n int, every time.Duration) {
	for range n {
		w.next++
		f := w.files[w.next%len(w.files)]
		appendFile(t, f, cri("stdout", "F", fmt.Sprintf("L%d steady line", w.next)))
		if every > 0 {
			time.Sleep(every)
		}
	}
}

func steadyPods(t *testing.T, root string, n int) *writer {
	w := &writer{}
	for i := range n {
		w.files = append(w.files, podLog(t, root, "load", fmt.Sprintf("p%d", i), fmt.Sprintf("u%d", i), "c"))
	}
	return w
}

// TestAgentSurvivesServerRestart: the server is killed while lines are
// written; the agent holds them on disk and sends them when it is back.
func TestAgentSurvivesServerRestart(t *testing.T) {
	scfg := testConfig(t, t.TempDir())
	srv := startChild(t, scfg, io.Discard)
	root := t.TempDir()
	w := steadyPods(t, root, 5)
	startAgent(t, agentConfig(t, root, scfg.OTLP.HTTPAddr))
	w.write(t, 300, time.Millisecond)
	require.NoError(t, srv.Process.Signal(syscall.SIGKILL))
	_ = srv.Wait()
	w.write(t, 300, time.Millisecond) // while the server is down
	time.Sleep(500 * time.Millisecond)
	startChild(t, scfg, io.Discard)
	w.write(t, 300, time.Millisecond)
	waitAll(t, scfg.HTTPAddr, "load", 1, 900, false)
}

// TestAgentResumesAfterSIGKILL: the agent is killed while lines are
// written, and started again: it resumes from its saved positions and
// buffer — no line lost, none twice.
func TestAgentResumesAfterSIGKILL(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	root := t.TempDir()
	w := steadyPods(t, root, 5)
	cfg := agentConfig(t, root, s.cfg.OTLP.HTTPAddr)
	for round := range 3 {
		a := startAgentChild(t, cfg)
		var wg sync.WaitGroup
		wg.Go(func() { w.write(t, 400, 500*time.Microsecond) })
		time.Sleep(time.Duration(100+round*70) * time.Millisecond)
		require.NoError(t, a.Process.Signal(syscall.SIGKILL))
		_ = a.Wait()
		wg.Wait()
	}
	startAgentChild(t, cfg)
	waitAll(t, s.cfg.HTTPAddr, "load", 1, 1200, true)
}

// TestAgentRelaysOTLPWithPodAttributes: an OTel SDK exporter in a "pod"
// sends to the agent; the spans reach the server with the pod's Kubernetes
// attributes, found by the connection's address in the API's pod list.
func TestAgentRelaysOTLPWithPodAttributes(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	ctrl := true
	pods := corev1.PodList{Items: []corev1.Pod{{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout-5f9c7-abcde", Namespace: "shop", UID: "u-checkout",
			Labels:          map[string]string{"app": "checkout", "pod-template-hash": "5f9c7"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "checkout-5f9c7", Controller: &ctrl}}},
		Spec:   corev1.PodSpec{NodeName: "node-a"},
		Status: corev1.PodStatus{PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}}},
	}}}
	// The Kubernetes API's pod list, as the API server answers it (no
	// cluster runs here).
	kube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/pods" || r.URL.Query().Get("fieldSelector") != "spec.nodeName=node-a" {
			http.Error(w, "unexpected request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(pods)
	}))
	defer kube.Close()
	cfg := agentConfig(t, t.TempDir(), s.cfg.OTLP.HTTPAddr)
	cfg.Logs.Glob = ""
	cfg.Kubernetes.Enabled = true
	cfg.Kubernetes.APIURL = kube.URL
	cfg.Kubernetes.TokenFile = ""
	startAgent(t, cfg)

	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.OTLPGRPCAddr), otlptracegrpc.WithInsecure())
	require.NoError(t, err)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName("checkout"))))
	_, span := tp.Tracer("test").Start(ctx, "POST /checkout")
	span.SetAttributes(attribute.String("http.request.method", "POST"))
	id := span.SpanContext().TraceID().String()
	span.End()
	require.NoError(t, tp.Shutdown(ctx))

	var res map[string]any
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := apiGetE(s, "/api/v1/traces/"+id)
		if !assert.Equal(c, http.StatusOK, code) {
			return
		}
		var tr struct {
			Trace struct {
				ResourceSpans []struct {
					Resource struct {
						Attributes []struct {
							Key   string         `json:"key"`
							Value map[string]any `json:"value"`
						} `json:"attributes"`
					} `json:"resource"`
				} `json:"resourceSpans"`
			} `json:"trace"`
		}
		if !assert.NoError(c, json.Unmarshal(body, &tr)) || !assert.Len(c, tr.Trace.ResourceSpans, 1) {
			return
		}
		res = map[string]any{}
		for _, a := range tr.Trace.ResourceSpans[0].Resource.Attributes {
			res[a.Key] = a.Value["stringValue"]
		}
	}, 10*time.Second, 50*time.Millisecond)
	for k, v := range map[string]string{
		"service.name": "checkout", "k8s.pod.name": "checkout-5f9c7-abcde", "k8s.namespace.name": "shop", "k8s.pod.uid": "u-checkout",
		"k8s.deployment.name": "checkout", "k8s.replicaset.name": "checkout-5f9c7", "k8s.node.name": "node-a", "k8s.pod.label.app": "checkout",
	} {
		assert.Equal(t, v, res[k], k)
	}
}

// apiGetE is a GET of the server's HTTP API that returns its error instead
// of failing the test (for use inside Eventually).
func apiGetE(s *server, path string) (int, []byte) {
	resp, err := http.Get(s.api(path))
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestAgentReadyReflectsShipping: /-/ready answers 503, with the reason,
// once the agent has failed to ship for longer than ship.unready_after (the
// server is not there yet), and 200 again once it ships.
func TestAgentReadyReflectsShipping(t *testing.T) {
	scfg := testConfig(t, t.TempDir())
	root := t.TempDir()
	appendFile(t, podLog(t, root, "shop", "web-abc", "u1", "app"), cri("stdout", "F", "L1 before the server"))
	cfg := agentConfig(t, root, scfg.OTLP.HTTPAddr)
	cfg.NodeMetrics.Interval = 0
	cfg.Ship.UnreadyAfter = 300 * time.Millisecond
	startAgent(t, cfg)

	ready := func() (int, string) {
		resp, err := http.Get("http://" + cfg.HTTPAddr + "/-/ready")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := ready()
		assert.Equal(c, http.StatusServiceUnavailable, code)
		assert.Contains(c, body, "nothing shipped to the server for")
		assert.Contains(c, body, "connection refused")
	}, 10*time.Second, 50*time.Millisecond)

	startServer(t, scfg)
	waitAll(t, scfg.HTTPAddr, "shop", 1, 1, true)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := ready()
		assert.Equal(c, http.StatusOK, code, body)
	}, 10*time.Second, 50*time.Millisecond)
}

// agentMemory reads a process's memory from /proc/<pid>/status, in bytes:
// field is VmHWM (peak resident), VmRSS, RssAnon (resident and not backed
// by a file: what a memory limit cannot reclaim)…
func agentMemory(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// agentMetrics reads the agent's /metrics: value by series as exposed.
func agentMetrics(t *testing.T, httpAddr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out
}

// agentFloodPod sends OTLP to the agent from one source address (127.0.0.x: a
// pod, as the agent tells them apart), counting the answers.
type agentFloodPod struct {
	http  *http.Client
	grpc  ptraceotlp.GRPCClient
	mu    sync.Mutex
	codes map[string]int
}

func newAgentFloodPod(t *testing.T, ip, grpcAddr string) *agentFloodPod {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &agentFloodPod{http: &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second},
		grpc: ptraceotlp.NewGRPCClient(conn), codes: map[string]int{}}
}

func (p *agentFloodPod) count(code string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.codes[code]++
}

func (p *agentFloodPod) post(url string, body []byte, gz bool) {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		p.count("error") // the agent may answer 429 and close before the whole body is sent
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	code := strconv.Itoa(resp.StatusCode)
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		code += " without Retry-After"
	}
	p.count(code)
}

func (p *agentFloodPod) export(req ptraceotlp.ExportRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := p.grpc.Export(ctx, req)
	p.count(status.Code(err).String())
}

func (p *agentFloodPod) answers() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.codes)
}

// TestAgentRelayFlood: pods flood the agent's relay with 3 MiB requests,
// 8 at a time each, over HTTP (plain and gzip) and gRPC, while the server
// is away; another pod sends small requests over both. The noisy pods are
// refused (429 with Retry-After, RESOURCE_EXHAUSTED with a retry hint)
// past their share of the bytes in flight and of the buffer, or the
// node's bound; the agent keeps answering, and its memory (a child
// process with the DaemonSet's GOMEMLIMIT) stays well under the
// DaemonSet's 128 MiB limit. With one noisy pod, the quiet one is always
// served; with three, past the node's bound every pod may be refused.
func TestAgentRelayFlood(t *testing.T) {
	if raceEnabled {
		t.Skip("under the race detector the agent takes too much memory and time for a flood to tell anything; agent/relaylimit_test.go checks each limit")
	}
	for _, tc := range []struct {
		name  string
		noisy []string
	}{
		{"one noisy pod", []string{"127.0.0.2"}},
		{"three noisy pods", []string{"127.0.0.2", "127.0.0.4", "127.0.0.5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startAgentFlood(t)
			noisy, quiet, peakAnon := f.run(t, tc.noisy, 6*time.Second)

			resp, err := http.Get("http://" + f.cfg.HTTPAddr + "/-/healthy")
			require.NoError(t, err, "the agent answers after the flood")
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			for i, a := range noisy {
				t.Logf("noisy pod %d: %v", i, a)
				require.Positive(t, a["429"], "a noisy pod is told to come back later")
				require.Positive(t, a[codes.ResourceExhausted.String()])
				require.Zero(t, a["429 without Retry-After"])
			}
			t.Logf("quiet pod: %v", quiet)
			m := agentMetrics(t, f.cfg.HTTPAddr)
			refused := func(reason string) float64 { return m[`lumen_agent_relay_refused_total{reason="`+reason+`"}`] }
			t.Logf("refused: pod_in_flight %v, pod_buffer %v, in_flight %v; buffer %v bytes",
				refused("pod_in_flight"), refused("pod_buffer"), refused("in_flight"), m["lumen_agent_buffer_bytes"])
			require.Positive(t, refused("pod_in_flight"))
			// pod_buffer needs a pod to get 16 MiB/4 through, which a
			// loaded machine may not do in 6 s: TestRelayBoundsEachPodsShareOfTheBuffer
			// (agent/) checks it.
			require.Zero(t, m[`lumen_agent_dropped_items_total{reason="buffer_full",signal="traces"}`], "the noisy pods cannot fill the buffer")
			if len(tc.noisy) == 1 {
				require.ElementsMatch(t, []string{"200", codes.OK.String()}, slices.Collect(maps.Keys(quiet)), "the quiet pod is always served")
				require.Positive(t, noisy[0]["200"], "within its share, the noisy pod is served")
			} else {
				require.Positive(t, refused("in_flight"), "the node's bound")
			}
			t.Logf("agent during the flood: peak RSS %d MiB, peak anonymous RSS %d MiB", agentMemory(t, f.pid, "VmHWM")>>20, peakAnon>>20)
			require.Less(t, peakAnon, int64(80<<20), "well under the DaemonSet's 128 MiB limit")
		})
	}
}

// agentFlood is a `lumen agent` child, with the relay's default limits over a
// 16 MiB buffer (a pod's share: 4 MiB), whose server is not there, and the
// requests to flood it with.
type agentFlood struct {
	cfg        AgentConfig
	pid        int
	big, bigGz []byte
	bigReq     ptraceotlp.ExportRequest
	small      []byte
	smallReq   ptraceotlp.ExportRequest
}

func startAgentFlood(t *testing.T) *agentFlood {
	f := &agentFlood{cfg: agentConfig(t, t.TempDir(), freeAddr(t))} // nothing listens there: nothing is shipped
	t.Setenv("GOMEMLIMIT", "100MiB")                                // as deploy/kubernetes/agent.yaml
	f.pid = startLumenChild(t, agentArgs(f.cfg)+" --buffer-max-bytes 16MiB", f.cfg.HTTPAddr, os.Stderr).Process.Pid
	t.Logf("agent at start: RSS %d MiB, of which anonymous %d MiB", agentMemory(t, f.pid, "VmRSS")>>20, agentMemory(t, f.pid, "RssAnon")>>20)
	var err error
	f.bigReq = ptraceotlp.NewExportRequestFromTraces(otlptest.New(7).Traces(1400, 5))
	f.big, err = f.bigReq.MarshalProto()
	require.NoError(t, err)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(f.big)
	require.NoError(t, zw.Close())
	f.bigGz = gz.Bytes()
	f.smallReq = ptraceotlp.NewExportRequestFromTraces(otlptest.New(8).Traces(10, 5))
	f.small, err = f.smallReq.MarshalProto()
	require.NoError(t, err)
	t.Logf("noisy requests of %d bytes (%d gzipped), quiet ones of %d", len(f.big), len(f.bigGz), len(f.small))
	return f
}

// run floods the agent from the noisy pods' addresses for d, while a
// quiet pod (127.0.0.3) sends a small request over each protocol every
// 20 ms. It returns the answers each got and the agent's peak anonymous
// memory.
func (f *agentFlood) run(t *testing.T, noisyIPs []string, d time.Duration) ([]map[string]int, map[string]int, int64) {
	url := "http://" + f.cfg.OTLPHTTPAddr + "/v1/traces"
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	var noisy []*agentFloodPod
	for _, ip := range noisyIPs {
		p := newAgentFloodPod(t, ip, f.cfg.OTLPGRPCAddr)
		noisy = append(noisy, p)
		for i := range 8 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					switch i % 3 {
					case 0:
						p.post(url, f.big, false)
					case 1:
						p.post(url, f.bigGz, true)
					default:
						p.export(f.bigReq)
					}
				}
			})
		}
	}
	quiet := newAgentFloodPod(t, "127.0.0.3", f.cfg.OTLPGRPCAddr)
	wg.Go(func() {
		for time.Now().Before(stop) {
			quiet.post(url, f.small, false)
			quiet.export(f.smallReq)
			time.Sleep(20 * time.Millisecond)
		}
	})
	var peakAnon int64
	for time.Now().Before(stop) {
		peakAnon = max(peakAnon, agentMemory(t, f.pid, "RssAnon"))
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	var answers []map[string]int
	for _, p := range noisy {
		answers = append(answers, p.answers())
	}
	return answers, quiet.answers(), peakAnon
}

// TestAgentConfigRelayAndShip: the relay's limits and ship.unready_after
// come from the defaults, the YAML file, the environment and the flags;
// settings that cannot work are refused.
func TestAgentConfigRelayAndShip(t *testing.T) {
	yamlFile := filepath.Join(t.TempDir(), "agent.yaml")
	require.NoError(t, os.WriteFile(yamlFile, []byte("relay:\n  max_request_bytes: 2MiB\n  max_in_flight_bytes: 6MiB\n  pod_share: 0.5\nship:\n  unready_after: 30s\n"), 0o644))
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		want  agent.RelayConfig
		ready time.Duration
		err   string
	}{
		{name: "defaults", want: agent.RelayConfig{MaxRequestBytes: 4 << 20, MaxInFlightBytes: 8 << 20, PodShare: 0.25}, ready: 2 * time.Minute},
		{name: "YAML", args: []string{"--config", yamlFile}, want: agent.RelayConfig{MaxRequestBytes: 2 << 20, MaxInFlightBytes: 6 << 20, PodShare: 0.5}, ready: 30 * time.Second},
		{name: "environment over YAML", args: []string{"--config", yamlFile}, env: map[string]string{"LUMEN_RELAY_MAX_IN_FLIGHT_BYTES": "32MiB", "LUMEN_RELAY_POD_SHARE": "0.1"},
			want: agent.RelayConfig{MaxRequestBytes: 2 << 20, MaxInFlightBytes: 32 << 20, PodShare: 0.1}, ready: 30 * time.Second},
		{name: "flags", args: []string{"--relay-max-request-bytes", "1MiB", "--relay-max-in-flight-bytes", "4MiB", "--relay-pod-share", "0.3"},
			want: agent.RelayConfig{MaxRequestBytes: 1 << 20, MaxInFlightBytes: 4 << 20, PodShare: 0.3}, ready: 2 * time.Minute},
		{name: "in flight below a request", args: []string{"--relay-max-in-flight-bytes", "1MiB"}, err: "max_in_flight_bytes"},
		{name: "share out of range", args: []string{"--relay-pod-share", "1.5"}, err: "pod_share 1.5"},
		{name: "share not a number", args: []string{"--relay-pod-share", "a quarter"}, err: "not a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) string {
				if k == "NODE_NAME" {
					return "node-a"
				}
				return tc.env[k]
			}
			cfg, err := loadAgentConfig(tc.args, env)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, cfg.agent().Relay)
			require.Equal(t, tc.ready, cfg.agent().Ship.UnreadyAfter)
		})
	}
}
