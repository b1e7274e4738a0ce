package jaegerconf

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every query has a golden; each golden is the same as itself but where
// the query's documented difference adjusts it, which leaves it as it was.
func TestGoldens(t *testing.T) {
	g, err := LoadGoldens(filepath.Join("testdata", "goldens.json"))
	require.NoError(t, err)
	require.NotEmpty(t, g.Reference)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, q := range Queries(T0(now), now) {
		want, ok := g.Answers[q.Name]
		require.True(t, ok, "query %q has no golden: run make jaeger-goldens", q.Name)
		before := fmt.Sprint(want.Body)
		same, where := Compare(g, q, want)
		if q.adjust == nil && q.sameAs == "" {
			require.True(t, same, "%s: %s", q.Name, where)
		}
		require.Equal(t, before, fmt.Sprint(g.Answers[q.Name].Body), "%s: the golden is left as it was", q.Name)
	}
	same, where := Compare(g, Query{Name: "none"}, Answer{Status: 200})
	require.False(t, same)
	require.Contains(t, where, "no golden")
}
