package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/conformance/lokiconf"
)

const lokiconfDir = "../../internal/conformance/lokiconf/testdata"

// TestLogQLConformance pushes the conformance corpus to Lumen exactly as
// `make logql-goldens` pushed it to a real Loki, runs every query of the
// corpus and compares the answers with Loki's. A query marked refused in
// the queries file must get a 400 (docs/api.md lists them); every other
// answer must equal Loki's.
func TestLogQLConformance(t *testing.T) {
	qs, err := lokiconf.LoadQueries(filepath.Join(lokiconfDir, "queries.txt"))
	require.NoError(t, err)
	g, err := lokiconf.LoadGoldens(filepath.Join(lokiconfDir, "goldens.json"))
	require.NoError(t, err)
	for _, q := range qs {
		_, ok := g.Answers[q.Key]
		require.True(t, ok, "queries.txt:%d has no golden: run make logql-goldens\n%s", q.Line, q.Key)
	}

	s := startServer(t, testConfig(t, t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &http.Client{Timeout: time.Minute}
	t0 := lokiconf.T0(time.Now())
	require.NoError(t, lokiconf.Push(ctx, c, s.api(""), t0))

	equal, refused := 0, 0
	var failures []string
	for _, q := range qs {
		got, err := lokiconf.Run(ctx, c, s.api(""), q, t0)
		require.NoError(t, err)
		want := g.Answers[q.Key]
		if q.Refused != "" {
			if got.Status != http.StatusBadRequest || got.Error == "" {
				failures = append(failures, fmt.Sprintf("queries.txt:%d is listed as refused (%s) but Lumen answered %d: %.200s\n  %s", q.Line, q.Refused, got.Status, got.Error, q.Key))
				continue
			}
			refused++
			continue
		}
		if ok, where := lokiconf.Same(want, got); !ok {
			failures = append(failures, fmt.Sprintf("queries.txt:%d differs from %s: %s\n  %s", q.Line, g.Reference, where, q.Key))
			continue
		}
		equal++
	}
	summary := fmt.Sprintf("LogQL conformance against %s: %d queries, %d answered as %s does, %d refused with a 400 as documented, %d differ",
		g.Reference, len(qs), equal, g.Reference, refused, len(failures))
	t.Log(summary)
	report(t, "logql", summary)
	require.Empty(t, failures, "%s\n%s", summary, strings.Join(failures, "\n"))
}
