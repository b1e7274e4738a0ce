// Package archtest keeps the direction of dependencies between Lumen's
// packages: store knows nothing of its callers, ingest and query never import
// each other, the UI and the agent stand apart, and nothing imports a command.
package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/lumenobs/lumen/"

type pkg struct {
	ImportPath string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", module+"...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	require.NoError(t, err)
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs = append(pkgs, p)
	}
	require.NotEmpty(t, pkgs)
	return pkgs
}

func TestDependencyDirection(t *testing.T) {
	forbidden := map[string][]string{
		"store":    {"ingest", "query", "ui", "agent", "cmd"},
		"ingest":   {"query", "ui", "agent", "cmd"},
		"query":    {"ingest", "ui", "agent", "cmd"},
		"ui":       {"store", "ingest", "query", "agent", "internal", "cmd"},
		"agent":    {"store", "ingest", "query", "cmd"},
		"internal": {"store", "ingest", "query", "ui", "agent", "cmd"},
	}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, module)
		top, _, _ := strings.Cut(rel, "/")
		for _, dep := range p.Deps {
			if !strings.HasPrefix(dep, module) {
				continue
			}
			depTop, _, _ := strings.Cut(strings.TrimPrefix(dep, module), "/")
			if depTop == "cmd" && top != "cmd" {
				t.Errorf("%s imports %s: nothing imports a command", p.ImportPath, dep)
			}
			for _, f := range forbidden[top] {
				if depTop == f && !(top == "internal" && f == "internal") {
					t.Errorf("%s must not depend on %s", p.ImportPath, dep)
				}
			}
		}
	}
}
