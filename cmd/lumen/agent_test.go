package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
