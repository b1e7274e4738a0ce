package main

import (
	"bytes"
	"cmp"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/lumenobs/lumen/internal/tlsconf/tlstest"
)

// objects are rendered manifests decoded strictly into k8s.io/api types.
type objects struct {
	namespaces   []corev1.Namespace
	services     []corev1.Service
	accounts     []corev1.ServiceAccount
	statefulSets []appsv1.StatefulSet
	daemonSets   []appsv1.DaemonSet
	roles        []rbacv1.ClusterRole
	bindings     []rbacv1.ClusterRoleBinding
	policies     []networkingv1.NetworkPolicy
	configMaps   []corev1.ConfigMap
	budgets      []policyv1.PodDisruptionBudget
}

// decodeManifests reads a stream of YAML documents; a field the API type
// does not have fails the test, as does a kind this deployment should not
// contain.
func decodeManifests(t *testing.T, manifests []byte) objects {
	t.Helper()
	var out objects
	dec := yaml.NewDecoder(bytes.NewReader(manifests))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if doc == nil {
			continue
		}
		js, err := json.Marshal(doc)
		require.NoError(t, err)
		switch kind := doc["kind"]; kind {
		case "Namespace":
			appendStrict(t, js, &out.namespaces)
		case "Service":
			appendStrict(t, js, &out.services)
		case "ServiceAccount":
			appendStrict(t, js, &out.accounts)
		case "StatefulSet":
			appendStrict(t, js, &out.statefulSets)
		case "DaemonSet":
			appendStrict(t, js, &out.daemonSets)
		case "ClusterRole":
			appendStrict(t, js, &out.roles)
		case "ClusterRoleBinding":
			appendStrict(t, js, &out.bindings)
		case "NetworkPolicy":
			appendStrict(t, js, &out.policies)
		case "ConfigMap":
			appendStrict(t, js, &out.configMaps)
		case "PodDisruptionBudget":
			appendStrict(t, js, &out.budgets)
		default:
			t.Fatalf("unexpected kind %v", kind)
		}
	}
	return out
}

// appendStrict decodes js into a T, failing on a field T does not have.
func appendStrict[T any](t *testing.T, js []byte, list *[]T) {
	t.Helper()
	var v T
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	require.NoError(t, d.Decode(&v), "%s", js)
	*list = append(*list, v)
}

func render(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), stderr.String())
	return out
}

func containerPorts(c corev1.Container) map[string][2]int32 {
	m := map[string][2]int32{}
	for _, p := range c.Ports {
		m[p.Name] = [2]int32{p.ContainerPort, p.HostPort}
	}
	return m
}

func hardened(t *testing.T, what string, sc *corev1.SecurityContext) {
	t.Helper()
	require.NotNil(t, sc, "%s: no securityContext", what)
	assert.Equal(t, false, *sc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation", what)
	assert.Equal(t, true, *sc.ReadOnlyRootFilesystem, "%s: readOnlyRootFilesystem", what)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, "%s: capabilities", what)
}

func probe(t *testing.T, p *corev1.Probe, path, port string) {
	t.Helper()
	require.NotNil(t, p)
	require.NotNil(t, p.HTTPGet)
	assert.Equal(t, path, p.HTTPGet.Path)
	assert.Equal(t, port, p.HTTPGet.Port.String())
}

// checkServer checks the server's StatefulSet and Service, and that its
// arguments are flags `lumen serve` takes (files they name are read from
// stand-ins for the mounted Secrets), and returns its configuration.
func checkServer(t *testing.T, o objects, storage string) Config {
	t.Helper()
	require.Len(t, o.statefulSets, 1)
	ss := o.statefulSets[0]
	require.Len(t, ss.Spec.VolumeClaimTemplates, 1, "the server keeps its store on a PVC")
	pvc := ss.Spec.VolumeClaimTemplates[0]
	assert.Equal(t, storage, pvc.Spec.Resources.Requests.Storage().String())
	c := ss.Spec.Template.Spec.Containers[0]
	assert.Equal(t, map[string][2]int32{"otlp-grpc": {4317, 0}, "otlp-http": {4318, 0}, "http": {4320, 0}}, containerPorts(c))
	probe(t, c.ReadinessProbe, "/-/ready", "http")
	probe(t, c.LivenessProbe, "/-/healthy", "http")
	assert.False(t, c.Resources.Requests.Cpu().IsZero(), "cpu request")
	assert.False(t, c.Resources.Limits.Memory().IsZero(), "memory limit")
	hardened(t, "server", c.SecurityContext)
	psc := ss.Spec.Template.Spec.SecurityContext
	assert.True(t, *psc.RunAsNonRoot)
	assert.Equal(t, int64(65532), *psc.RunAsUser)
	assert.Contains(t, c.VolumeMounts, corev1.VolumeMount{Name: pvc.Name, MountPath: "/data"})
	require.Equal(t, "serve", c.Args[0])
	cfg, err := loadConfig(newMounts(t, o).args(t, c, c.Args[1:]), func(string) string { return "" }, "serve")
	require.NoError(t, err, "the server's arguments")
	assert.Equal(t, "/data", cfg.DataDir)
	scheme := corev1.URISchemeHTTP
	if cfg.TLS.Enabled() {
		scheme = corev1.URISchemeHTTPS
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		assert.Equal(t, scheme, cmp.Or(p.HTTPGet.Scheme, corev1.URISchemeHTTP), "probes speak the port's protocol")
	}

	require.Len(t, o.services, 1)
	svc := o.services[0]
	var ports []int32
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Port)
	}
	assert.ElementsMatch(t, []int32{4317, 4318, 4320}, ports)
	for k, v := range svc.Spec.Selector {
		assert.Equal(t, v, ss.Spec.Template.Labels[k], "the Service selects the server's pods")
	}
	return cfg
}

// checkNetworkPolicy: the server's pods take OTLP from the agents (and
// the namespaces ingestFrom lists) and the HTTP port from their own
// namespace (and those listed), nothing else.
func checkNetworkPolicy(t *testing.T, o objects, extraIngest, extraQuery int) {
	t.Helper()
	require.Len(t, o.policies, 1)
	np := o.policies[0]
	for k, v := range np.Spec.PodSelector.MatchLabels {
		assert.Equal(t, v, o.statefulSets[0].Spec.Template.Labels[k], "the policy selects the server's pods")
	}
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, np.Spec.PolicyTypes)
	require.Len(t, np.Spec.Ingress, 2)
	otlp, http := np.Spec.Ingress[0], np.Spec.Ingress[1]
	var ports []string
	for _, p := range otlp.Ports {
		ports = append(ports, p.Port.String())
	}
	assert.Equal(t, []string{"otlp-grpc", "otlp-http"}, ports)
	require.Len(t, otlp.From, 1+extraIngest)
	require.NotNil(t, otlp.From[0].PodSelector)
	for k, v := range otlp.From[0].PodSelector.MatchLabels {
		assert.Equal(t, v, o.daemonSets[0].Spec.Template.Labels[k], "OTLP from the agents' pods")
	}
	require.Len(t, http.Ports, 1)
	assert.Equal(t, "http", http.Ports[0].Port.String())
	require.Len(t, http.From, 1+extraQuery+extraIngest)
	assert.Empty(t, http.From[0].PodSelector.MatchLabels, "the HTTP port from the release's own namespace")
	assert.Nil(t, http.From[0].NamespaceSelector)
}

// secretMounts stands in for what a secure deployment mounts (its Secrets and
// ConfigMaps): the same file names under a temporary directory, with a
// real certificate, key, CA, auth file and token.
type secretMounts struct{ root string }

func newMounts(t *testing.T, o objects) secretMounts {
	t.Helper()
	m := secretMounts{root: t.TempDir()}
	ca := tlstest.NewCA(t, "deploy")
	cert, key := ca.Issue(t, "lumen")
	copyTo := func(src, dst string) {
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		m.write(t, dst, string(b))
	}
	for _, dir := range []string{"etc/lumen/tls", "etc/lumen/client"} {
		copyTo(cert, dir+"/tls.crt")
		copyTo(key, dir+"/tls.key")
	}
	copyTo(ca.File, "etc/lumen/tls/ca.crt")
	copyTo(ca.File, "etc/lumen/server-ca/ca.crt")
	auth, err := os.ReadFile(writeAuthFile(t, t.TempDir(), ""))
	require.NoError(t, err)
	m.write(t, "etc/lumen/auth/auth.yml", string(auth))
	m.write(t, "etc/lumen/relay/auth.yml", string(auth))
	m.write(t, "var/run/lumen/token", writeSecret)
	m.write(t, "etc/lumen/backends/mimir-password", "backend secret")
	for _, cm := range o.configMaps {
		for name, data := range cm.Data {
			m.write(t, "etc/lumen/config/"+name, strings.ReplaceAll(data, "/etc/lumen/", m.root+"/etc/lumen/"))
		}
	}
	return m
}

func (m secretMounts) write(t *testing.T, rel, content string) {
	t.Helper()
	p := filepath.Join(m.root, rel)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
}

// args are c's arguments with the files they name under the stand-ins;
// each such file must be under one of c's volume mounts.
func (m secretMounts) args(t *testing.T, c corev1.Container, args []string) []string {
	t.Helper()
	out := make([]string, len(args))
	for i, a := range args {
		_, v, _ := strings.Cut(a, "=")
		for _, prefix := range []string{"/etc/lumen/", "/var/run/lumen/"} {
			if !strings.HasPrefix(v, prefix) {
				continue
			}
			assert.True(t, slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return strings.HasPrefix(v, vm.MountPath+"/") }),
				"%s: %s is not under a volume mount of %s", a, v, c.Name)
			a = strings.Replace(a, prefix, m.root+prefix, 1)
		}
		out[i] = a
	}
	return out
}

// checkAgent checks the DaemonSet and its RBAC, and that its arguments are
// flags `lumen agent` takes, pointing at the server's Service; it returns
// the agent's configuration.
func checkAgent(t *testing.T, o objects, namespace, server string) AgentConfig {
	t.Helper()
	require.Len(t, o.daemonSets, 1)
	ds := o.daemonSets[0]
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	assert.Equal(t, map[string][2]int32{"otlp-grpc": {4317, 4317}, "otlp-http": {4318, 4318}, "http": {4321, 0}}, containerPorts(c))
	assert.True(t, slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool { return tl.Operator == corev1.TolerationOpExists && tl.Key == "" }),
		"the agent tolerates every taint, to run on every node")
	probe(t, c.ReadinessProbe, "/-/ready", "http")
	probe(t, c.LivenessProbe, "/-/healthy", "http")
	// Not root, one capability, taken from the binary's file capability
	// (which needs privilege escalation, bounded by that one capability).
	assert.Equal(t, []string{"/usr/bin/lumen-agent"}, c.Command)
	sc := c.SecurityContext
	require.NotNil(t, sc)
	assert.True(t, *sc.RunAsNonRoot)
	assert.NotZero(t, *sc.RunAsUser)
	assert.True(t, *sc.ReadOnlyRootFilesystem)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	assert.Equal(t, []corev1.Capability{"DAC_READ_SEARCH"}, sc.Capabilities.Add)
	require.Len(t, spec.InitContainers, 1)
	ic := spec.InitContainers[0]
	assert.Equal(t, []corev1.Capability{"CHOWN", "DAC_READ_SEARCH"}, ic.SecurityContext.Capabilities.Add)
	assert.False(t, *ic.SecurityContext.AllowPrivilegeEscalation)
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[hostPaths[m.Name]] = m
	}
	assert.Equal(t, "/var/log/pods", mounts["/var/log/pods"].MountPath)
	assert.True(t, mounts["/var/log/pods"].ReadOnly, "container logs are mounted read-only")
	assert.Equal(t, "/var/lib/lumen-agent", mounts["/var/lib/lumen-agent"].MountPath, "the state directory is a hostPath")
	assert.False(t, mounts["/var/lib/lumen-agent"].ReadOnly)
	for _, p := range []string{"/proc", "/sys", "/"} {
		if _, ok := mounts[p]; ok {
			assert.True(t, mounts[p].ReadOnly, "host %s mounted read-only", p)
		}
	}
	var nodeName *corev1.EnvVar
	for i, e := range c.Env {
		if e.Name == "NODE_NAME" {
			nodeName = &c.Env[i]
		}
	}
	require.NotNil(t, nodeName, "NODE_NAME from the downward API")
	assert.Equal(t, "spec.nodeName", nodeName.ValueFrom.FieldRef.FieldPath)

	require.Equal(t, "agent", c.Args[0])
	env := func(k string) string {
		if k == "NODE_NAME" {
			return "node-a"
		}
		return ""
	}
	cfg, err := loadAgentConfig(newMounts(t, o).args(t, c, c.Args[1:]), env)
	require.NoError(t, err, "the agent's arguments")
	assert.Equal(t, server, cfg.Server)
	assert.Equal(t, "/var/log/pods/*/*/*.log", cfg.Logs.Glob)
	assert.Equal(t, "/var/lib/lumen-agent", cfg.StateDir)
	assert.Equal(t, "node-a", cfg.NodeName)
	if cfg.NodeMetrics.Interval > 0 {
		assert.Equal(t, "/host/proc", cfg.NodeMetrics.ProcPath)
		assert.Equal(t, "/", hostPaths[mountOf(c, "/host/root")], "the host root only where node metrics read it")
	} else {
		assert.Empty(t, mounts["/"].MountPath, "no node metrics: the host root is not mounted")
	}
	icfg, err := loadAgentConfig(ic.Args[1:], env)
	require.NoError(t, err, "the init container's arguments")
	assert.Equal(t, fmt.Sprintf("%d:%d", *sc.RunAsUser, *sc.RunAsUser), icfg.PrepareState, "the state directory is given to the agent's user")
	assert.Equal(t, cfg.StateDir, icfg.StateDir)

	require.Len(t, o.accounts, 1)
	assert.Equal(t, o.accounts[0].Name, spec.ServiceAccountName)
	require.Len(t, o.roles, 1)
	require.Len(t, o.roles[0].Rules, 1)
	rule := o.roles[0].Rules[0]
	// Only what agent/kube.go does: list the node's pods.
	assert.Equal(t, []string{"pods"}, rule.Resources)
	assert.Equal(t, []string{"list"}, rule.Verbs)
	require.Len(t, o.bindings, 1)
	b := o.bindings[0]
	assert.Equal(t, o.roles[0].Name, b.RoleRef.Name)
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: o.accounts[0].Name, Namespace: namespace}}, b.Subjects)
	return cfg
}

// mountOf is the volume c mounts at path.
func mountOf(c corev1.Container, path string) string {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m.Name
		}
	}
	return ""
}

// TestKustomizeBase renders deploy/kubernetes as `kubectl apply -k` would.
func TestKustomizeBase(t *testing.T) {
	var out []byte
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out = render(t, kubectl, "kustomize", "../../deploy/kubernetes")
	} else {
		out = render(t, lookTool(t, "kustomize", "go install sigs.k8s.io/kustomize/kustomize/v5"), "build", "../../deploy/kubernetes")
	}
	o := decodeManifests(t, out)
	require.Len(t, o.namespaces, 1)
	assert.Equal(t, "lumen", o.namespaces[0].Name)
	checkServer(t, o, "50Gi")
	checkAgent(t, o, "lumen", "http://lumen:4318")
	checkNetworkPolicy(t, o, 0, 0)
	assert.Equal(t, "ghcr.io/lumenobs/lumen:latest", o.daemonSets[0].Spec.Template.Spec.Containers[0].Image)
}

// TestKustomizeSecure renders deploy/kubernetes-secure: the base with TLS
// and tokens, its files read from Secrets the server and agent mount.
func TestKustomizeSecure(t *testing.T) {
	var out []byte
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out = render(t, kubectl, "kustomize", "../../deploy/kubernetes-secure")
	} else {
		out = render(t, lookTool(t, "kustomize", "go install sigs.k8s.io/kustomize/kustomize/v5"), "build", "../../deploy/kubernetes-secure")
	}
	o := decodeManifests(t, out)
	cfg := checkServer(t, o, "50Gi")
	assert.True(t, cfg.withListeners().HTTP.TLS.Enabled() && cfg.withListeners().OTLP.GRPCTLS.Enabled(), "TLS on every port")
	assert.NotEmpty(t, cfg.AuthFile)
	acfg := checkAgent(t, o, "lumen", "https://lumen.lumen.svc:4318")
	assert.NotEmpty(t, acfg.ServerTLS.CAFile)
	assert.NotEmpty(t, acfg.TokenFile)
	checkNetworkPolicy(t, o, 0, 0)
}

// TestHelmChart renders deploy/helm/lumen with helm, with its defaults and
// with values changed.
func TestHelmChart(t *testing.T) {
	helm := lookTool(t, "helm", "go install helm.sh/helm/v3/cmd/helm@v3.22.0")
	chart := "../../deploy/helm/lumen"
	render(t, helm, "lint", "--strict", chart)

	o := decodeManifests(t, render(t, helm, "template", "obs", chart, "--namespace", "observability"))
	checkServer(t, o, "50Gi")
	checkAgent(t, o, "observability", "http://obs-lumen.observability.svc:4318")
	checkNetworkPolicy(t, o, 0, 0)

	// TLS with client certificates on OTLP, tokens, the agent's token,
	// client certificate and relay tokens, listed namespaces, no node
	// metrics.
	o = decodeManifests(t, render(t, helm, "template", "obs", chart, "--namespace", "observability",
		"--set", "tls.enabled=true", "--set", "tls.secretName=lumen-tls", "--set", "tls.clientCA=true",
		"--set", "auth.enabled=true", "--set", "auth.secretName=lumen-auth", "--set", "agent.tokenSecret=agent-token",
		"--set", "agent.clientCertSecret=agent-cert", "--set", "agent.relayAuthSecret=relay-auth", "--set", "agent.nodeMetrics.enabled=false",
		"--set", "networkPolicy.ingestFrom[0].matchLabels.team=apps", "--set", "networkPolicy.queryFrom[0].matchLabels.team=grafana"))
	cfg := checkServer(t, o, "50Gi").withListeners()
	assert.True(t, cfg.HTTP.TLS.Enabled() && cfg.OTLP.GRPCTLS.Enabled() && cfg.OTLP.HTTPTLS.Enabled())
	assert.Empty(t, cfg.HTTP.TLS.ClientCAFile, "the HTTP port serves probes and browsers: no client certificates")
	assert.NotEmpty(t, cfg.OTLP.GRPCTLS.ClientCAFile)
	assert.NotEmpty(t, cfg.OTLP.HTTPTLS.ClientCAFile)
	assert.NotEmpty(t, cfg.AuthFile)
	acfg := checkAgent(t, o, "observability", "https://obs-lumen.observability.svc:4318")
	assert.NotEmpty(t, acfg.ServerTLS.CAFile)
	assert.NotEmpty(t, acfg.ServerTLS.CertFile)
	assert.NotEmpty(t, acfg.TokenFile)
	assert.NotEmpty(t, acfg.Relay.AuthFile)
	assert.Zero(t, acfg.NodeMetrics.Interval)
	checkNetworkPolicy(t, o, 1, 1)
	for _, set := range [][]string{{"auth.enabled=true", "auth.secretName=a"}, {"tls.enabled=true", "tls.secretName=t", "tls.clientCA=true"}, {"tls.enabled=true"}} {
		args := []string{"template", "x", chart}
		for _, kv := range set {
			args = append(args, "--set", kv)
		}
		out, err := exec.Command(helm, args...).CombinedOutput()
		require.Error(t, err, "%v renders: a secure install without its secrets", set)
		assert.Regexp(t, `agent.tokenSecret|agent.clientCertSecret|tls.secretName`, string(out))
	}
	assert.Equal(t, "ghcr.io/lumenobs/lumen:0.1.0", o.statefulSets[0].Spec.Template.Spec.Containers[0].Image)

	o = decodeManifests(t, render(t, helm, "template", "lumen", chart, "--namespace", "lumen",
		"--set", "agent.enabled=false", "--set", "server.storage.size=200Gi", "--set", "server.storage.storageClass=fast-ssd",
		"--set", "server.retention=30d", "--set", "server.maxDiskBytes=180GiB", "--set", "image.tag=1.2.3",
		"--set", "server.extraEnv[0].name=GOMEMLIMIT", "--set", "server.extraEnv[0].value=3GiB"))
	assert.Empty(t, o.daemonSets, "agent.enabled=false")
	assert.Empty(t, o.roles)
	checkServer(t, o, "200Gi")
	ss := o.statefulSets[0]
	assert.Equal(t, "fast-ssd", *ss.Spec.VolumeClaimTemplates[0].Spec.StorageClassName)
	c := ss.Spec.Template.Spec.Containers[0]
	assert.Equal(t, "ghcr.io/lumenobs/lumen:1.2.3", c.Image)
	cfg, err := loadConfig(c.Args[1:], func(string) string { return "" }, "serve")
	require.NoError(t, err)
	assert.Equal(t, "720h0m0s", cfg.Retention.String())
	assert.Equal(t, ByteSize(180<<30), cfg.MaxDiskBytes)
	assert.Equal(t, []corev1.EnvVar{{Name: "GOMEMLIMIT", Value: "3GiB"}}, c.Env)

	// NOTES.txt (rendered by helm lint above; helm prints it only on a
	// real install) says how to reach the UI and where to send OTLP.
	notes, err := os.ReadFile(filepath.Join(chart, "templates", "NOTES.txt"))
	require.NoError(t, err)
	for _, want := range []string{"port-forward svc/{{ include \"lumen.fullname\" . }} 4320:4320", "http://$(NODE_IP):{{ .Values.agent.hostPorts.otlpHttp }}", ".svc:4317"} {
		assert.Contains(t, string(notes), want)
	}
}

// TestHelmRemoteBackends: the chart's storage values become the server's
// storage configuration (each signal on its own), read by Lumen's own
// loader, with the backends' credentials mounted from their Secret.
func TestHelmRemoteBackends(t *testing.T) {
	helm := lookTool(t, "helm", "go install helm.sh/helm/v3/cmd/helm@v3.22.0")
	chart := "../../deploy/helm/lumen"
	o := decodeManifests(t, render(t, helm, "template", "obs", chart, "--namespace", "observability",
		"--set", "storage.metrics.backend=remote",
		"--set", "storage.metrics.remote.write_url=http://mimir-gateway/api/v1/push",
		"--set", "storage.metrics.remote.query_url=http://mimir-gateway/prometheus",
		"--set", "storage.metrics.remote.tenant_header=X-Scope-OrgID",
		"--set", "storage.metrics.remote.http_client.basic_auth.username=lumen",
		"--set", "storage.metrics.remote.http_client.basic_auth.password_file=/etc/lumen/backends/mimir-password",
		"--set", "storage.metrics.remote.queue.max_bytes=4GiB",
		"--set", "storage.logs.backend=remote",
		"--set", "storage.logs.remote.push_url=http://loki-gateway/loki/api/v1/push",
		"--set", "storage.logs.remote.query_url=http://loki-gateway",
		"--set", "storage.traces.backend=remote",
		"--set", "storage.traces.remote.otlp_url=http://jaeger-collector:4318/v1/traces",
		"--set", "storage.traces.remote.query_url=http://jaeger-query:16686",
		"--set", "storage.credentialsSecret=lumen-backends"))
	cfg := checkServer(t, o, "50Gi")
	m := cfg.Storage.Metrics
	require.Equal(t, backendRemote, m.Backend)
	assert.Equal(t, "http://mimir-gateway/api/v1/push", m.Remote.WriteURL)
	assert.Equal(t, "X-Scope-OrgID", m.Remote.TenantHeader)
	assert.EqualValues(t, 4<<30, m.Remote.Queue.MaxBytes)
	assert.Equal(t, 2000, m.Remote.Queue.MaxSamplesPerRequest, "defaults where the values say nothing")
	pw, err := os.ReadFile(m.Remote.HTTPClient.BasicAuth.PasswordFile)
	require.NoError(t, err, "the password file is in the mounted Secret")
	assert.Equal(t, "backend secret", string(pw))
	l := cfg.Storage.Logs
	require.Equal(t, backendRemote, l.Backend)
	assert.Equal(t, "http://loki-gateway", l.Remote.QueryURL)
	require.Equal(t, backendRemote, cfg.Storage.Traces.Backend)
	assert.Equal(t, "http://jaeger-collector:4318/v1/traces", cfg.Storage.Traces.Remote.OTLPURL)
	assert.Equal(t, "jaeger", cfg.Storage.Traces.Remote.API, "the default api")
	c := o.statefulSets[0].Spec.Template.Spec.Containers[0]
	assert.Equal(t, "backends", mountOf(c, "/etc/lumen/backends"))
	var secret string
	for _, v := range o.statefulSets[0].Spec.Template.Spec.Volumes {
		if v.Name == "backends" {
			secret = v.Secret.SecretName
		}
	}
	assert.Equal(t, "lumen-backends", secret)

	// One signal remote, the other local.
	o = decodeManifests(t, render(t, helm, "template", "obs", chart,
		"--set", "storage.logs.backend=remote", "--set", "storage.logs.remote.push_url=http://loki:3100/loki/api/v1/push",
		"--set", "storage.logs.remote.query_url=http://loki:3100"))
	cfg = checkServer(t, o, "50Gi")
	assert.Equal(t, backendLocal, cfg.Storage.Metrics.Backend)
	assert.Equal(t, backendRemote, cfg.Storage.Logs.Backend)
	assert.Equal(t, backendLocal, cfg.Storage.Traces.Backend)
	// A remote backend without its URLs does not start: said by Lumen's
	// own loader.
	o = decodeManifests(t, render(t, helm, "template", "obs", chart, "--set", "storage.logs.backend=remote"))
	c = o.statefulSets[0].Spec.Template.Spec.Containers[0]
	_, err = loadConfig(newMounts(t, o).args(t, c, c.Args[1:]), func(string) string { return "" }, "serve")
	require.ErrorContains(t, err, "push_url and query_url are needed")
}

// TestHelmReplicas: server.replicas above 1 with every signal remote
// runs that many server replicas, each naming its own series after its pod,
// a headless Service of their OTLP ports that the agents resolve and shard
// spans through by trace id, and a disruption budget of one; above 1 with
// a signal kept locally is refused with the reason.
func TestHelmReplicas(t *testing.T) {
	helm := lookTool(t, "helm", "go install helm.sh/helm/v3/cmd/helm@v3.22.0")
	chart := "../../deploy/helm/lumen"
	remote := []string{"--set", "storage.metrics.backend=remote",
		"--set", "storage.metrics.remote.write_url=http://mimir-gateway/api/v1/push",
		"--set", "storage.metrics.remote.query_url=http://mimir-gateway/prometheus",
		"--set", "storage.logs.backend=remote",
		"--set", "storage.logs.remote.push_url=http://loki-gateway/loki/api/v1/push",
		"--set", "storage.logs.remote.query_url=http://loki-gateway",
		"--set", "storage.traces.backend=remote",
		"--set", "storage.traces.remote.otlp_url=http://jaeger-collector:4318/v1/traces",
		"--set", "storage.traces.remote.query_url=http://jaeger-query:16686"}
	o := decodeManifests(t, render(t, helm, append([]string{"template", "obs", chart, "--namespace", "observability", "--set", "server.replicas=3"}, remote...)...))
	require.Len(t, o.statefulSets, 1)
	ss := o.statefulSets[0]
	require.Equal(t, int32(3), *ss.Spec.Replicas)
	c := ss.Spec.Template.Spec.Containers[0]
	var replicaEnv *corev1.EnvVar
	for i, e := range c.Env {
		if e.Name == "LUMEN_REPLICA" {
			replicaEnv = &c.Env[i]
		}
	}
	require.NotNil(t, replicaEnv, "each replica is named")
	require.Equal(t, "metadata.name", replicaEnv.ValueFrom.FieldRef.FieldPath)
	cfg, err := loadConfig(newMounts(t, o).args(t, c, c.Args[1:]), func(k string) string {
		if k == "LUMEN_REPLICA" {
			return "obs-lumen-1"
		}
		return ""
	}, "serve")
	require.NoError(t, err)
	assert.Equal(t, "obs-lumen-1", cfg.Replica)

	require.Len(t, o.services, 2)
	var headless *corev1.Service
	for i, svc := range o.services {
		if svc.Name == "obs-lumen-replicas" {
			headless = &o.services[i]
		}
	}
	require.NotNil(t, headless)
	assert.Equal(t, corev1.ClusterIPNone, headless.Spec.ClusterIP)
	assert.False(t, headless.Spec.PublishNotReadyAddresses, "only ready replicas take spans")
	for k, v := range headless.Spec.Selector {
		assert.Equal(t, v, ss.Spec.Template.Labels[k], "the headless Service selects the server's pods")
	}
	acfg := checkAgent(t, o, "observability", "http://obs-lumen-replicas.observability.svc:4318")
	assert.True(t, acfg.Ship.ShardByTraceID)
	require.Len(t, o.budgets, 1)
	assert.Equal(t, 1, o.budgets[0].Spec.MaxUnavailable.IntValue())

	// One replica: no sharding, no replica name, the one Service.
	o = decodeManifests(t, render(t, helm, append([]string{"template", "obs", chart, "--namespace", "observability"}, remote...)...))
	require.Len(t, o.services, 1)
	require.Empty(t, o.budgets)
	acfg = checkAgent(t, o, "observability", "http://obs-lumen.observability.svc:4318")
	assert.False(t, acfg.Ship.ShardByTraceID)

	// Replicas with a signal kept locally: refused, with the reason.
	cmd := exec.Command(helm, "template", "obs", chart, "--set", "server.replicas=2", "--set", "storage.metrics.backend=remote")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "server.replicas above 1 needs every signal in a remote backend")
}

// TestReleaseBinaryIsStatic: `make build` links no C library: no program
// interpreter, no shared libraries, CGO off, paths trimmed, stripped.
func TestReleaseBinaryIsStatic(t *testing.T) {
	bin, err := filepath.Abs("../../bin/lumen")
	require.NoError(t, err)
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing: make test builds it first (%v)", bin, err)
		}
		t.Skipf("%s is missing: run make build", bin)
	}
	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "the binary asks for a dynamic loader")
	}
	libs, err := f.ImportedLibraries()
	require.NoError(t, err)
	assert.Empty(t, libs, "shared libraries")
	info, err := buildinfo.ReadFile(bin)
	require.NoError(t, err)
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	assert.Equal(t, "0", settings["CGO_ENABLED"])
	assert.Equal(t, "true", settings["-trimpath"])
	// -ldflags '-s -w' (not recorded in the build info under -trimpath):
	// no symbol table.
	assert.Nil(t, f.Section(".symtab"), "the binary is not stripped")
}

// TestHelmRules: rule files given as chart values become a ConfigMap
// mounted where the server's flags read them; the files rendered are
// rule files `lumen check-config` accepts.
func TestHelmRules(t *testing.T) {
	helm := lookTool(t, "helm", "go install helm.sh/helm/v3/cmd/helm@v3.22.0")
	chart := "../../deploy/helm/lumen"
	values := "testdata/helm-rules-values.yaml"
	render(t, helm, "lint", "--strict", chart, "-f", values)
	o := decodeManifests(t, render(t, helm, "template", "obs", chart, "--namespace", "observability", "-f", values))
	require.Len(t, o.statefulSets, 1)
	pod := o.statefulSets[0].Spec.Template.Spec
	args := pod.Containers[0].Args
	for _, want := range []string{"--rules=/etc/lumen/rules/promql-*.yml", "--logql-rules=/etc/lumen/rules/logql-*.yml",
		"--rules-builtin=spanmetrics,lumen", "--alertmanager-url=http://alertmanager.monitoring:9093", "--external-url=https://lumen.example.com"} {
		require.Contains(t, args, want)
	}
	var mounted bool
	for _, m := range pod.Containers[0].VolumeMounts {
		mounted = mounted || (m.Name == "rules" && m.MountPath == "/etc/lumen/rules" && m.ReadOnly)
	}
	require.True(t, mounted, "the rules volume is not mounted at /etc/lumen/rules")
	var cm *corev1.ConfigMap
	for i := range o.configMaps {
		if o.configMaps[i].Name == "obs-lumen-rules" {
			cm = &o.configMaps[i]
		}
	}
	require.NotNil(t, cm, "no obs-lumen-rules ConfigMap")
	require.ElementsMatch(t, []string{"promql-queue.yml", "logql-shop.yml"}, slices.Collect(maps.Keys(cm.Data)))
	var volume bool
	for _, v := range pod.Volumes {
		volume = volume || (v.Name == "rules" && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name)
	}
	require.True(t, volume, "the rules volume is not the ConfigMap")

	// The files as the pod sees them, checked by lumen itself.
	dir := t.TempDir()
	for name, content := range cm.Data {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"check-config", "--data-dir", dir, "--rules", filepath.Join(dir, "promql-*.yml"),
		"--logql-rules", filepath.Join(dir, "logql-*.yml"), "--rules-builtin", "spanmetrics,lumen"}, &out, io.Discard))
	require.Contains(t, out.String(), "rules of tenant default: 4 groups, 15 rules")
}
