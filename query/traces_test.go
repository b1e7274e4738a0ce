package query

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestNormalizeSpansMergesGroupsAndSorts(t *testing.T) {
	td := ptrace.NewTraces()
	add := func(service string, names ...string) {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", service)
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("lib")
		for _, n := range names {
			sp := ss.Spans().AppendEmpty()
			sp.SetName(n)
			sp.SetStartTimestamp(pcommon.Timestamp(len(n)))
		}
	}
	add("b", "bbbb", "bb")
	add("a", "aaa")
	add("b", "b")
	// An empty group (a resource with no spans) must not upset the sort.
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	normalizeSpans(td)

	var got [][]string
	for _, rs := range td.ResourceSpans().All() {
		var names []string
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				names = append(names, sp.Name())
			}
		}
		got = append(got, names)
	}
	require.Equal(t, [][]string{nil, {"b", "bb", "bbbb"}, {"aaa"}}, got)
}

func TestParseInclude(t *testing.T) {
	inc, err := parseInclude("")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"trace": true, "logs": true, "metrics": true}, inc)
	inc, err = parseInclude("logs")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"logs": true}, inc)
	_, err = parseInclude("trace,spans")
	require.ErrorIs(t, err, errBadRequest)
	require.ErrorContains(t, err, `unknown part "spans"`)
}
