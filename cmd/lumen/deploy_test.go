package main

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
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
	rbacv1 "k8s.io/api/rbac/v1"
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
// arguments are flags `lumen serve` takes.
func checkServer(t *testing.T, o objects, storage string) {
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
	cfg, err := loadConfig(c.Args[1:], func(string) string { return "" }, "serve")
	require.NoError(t, err, "the server's arguments")
	assert.Equal(t, "/data", cfg.DataDir)

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
}

// checkAgent checks the DaemonSet and its RBAC, and that its arguments are
// flags `lumen agent` takes, pointing at the server's Service.
func checkAgent(t *testing.T, o objects, namespace, server string) {
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
	hardened(t, "agent", c.SecurityContext)
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
		assert.True(t, mounts[p].ReadOnly, "host %s mounted read-only", p)
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
	cfg, err := loadAgentConfig(c.Args[1:], env)
	require.NoError(t, err, "the agent's arguments")
	assert.Equal(t, server, cfg.Server)
	assert.Equal(t, "/var/log/pods/*/*/*.log", cfg.Logs.Glob)
	assert.Equal(t, "/var/lib/lumen-agent", cfg.StateDir)
	assert.Equal(t, "/host/proc", cfg.NodeMetrics.ProcPath)
	assert.Equal(t, "node-a", cfg.NodeName)

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
	assert.Equal(t, "ghcr.io/lumenobs/lumen:latest", o.daemonSets[0].Spec.Template.Spec.Containers[0].Image)
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
