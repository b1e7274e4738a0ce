package traceql

import (
	"cmp"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Trace is a trace's spans as the engine reads them: each with its
// resource, scope and place in the tree.
type Trace struct {
	Spans []*Span
	// RootName and RootService are the root span's name and service (empty
	// when the root has not arrived); Start and End bound the spans, unix ns.
	RootName, RootService string
	Start, End            uint64
}

// Span is one span of a Trace.
type Span struct {
	Resource pcommon.Resource
	Scope    pcommon.InstrumentationScope
	Span     ptrace.Span

	trace  *Trace // nil when a span is matched on its own (Query.Match)
	parent *Span  // nil for a root or a span whose parent is missing
	// The nested set model Tempo stores: left and right number the spans
	// depth first from the roots (children in start order), nsParent is the
	// parent's left (-1 for a root); all 0 for a span not reached from a
	// root (its parent is missing).
	left, right, nsParent int
}

// NewTrace reads the spans of td, which all belong to one trace.
func NewTrace(td ptrace.Traces) *Trace {
	t := &Trace{}
	byID := map[pcommon.SpanID]int{}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				s := &Span{Resource: rs.Resource(), Scope: ss.Scope(), Span: sp, trace: t}
				byID[sp.SpanID()] = len(t.Spans)
				t.Spans = append(t.Spans, s)
				start, end := uint64(sp.StartTimestamp()), uint64(sp.EndTimestamp())
				if len(t.Spans) == 1 || start < t.Start {
					t.Start = start
				}
				t.End = max(t.End, end)
			}
		}
	}
	children := make([][]int, len(t.Spans))
	var roots []int
	for i, s := range t.Spans {
		p := s.Span.ParentSpanID()
		if p.IsEmpty() {
			roots = append(roots, i)
			continue
		}
		if j, ok := byID[p]; ok && j != i {
			s.parent = t.Spans[j]
			children[j] = append(children[j], i)
		}
	}
	byStart := func(a, b int) int {
		return cmp.Compare(t.Spans[a].Span.StartTimestamp(), t.Spans[b].Span.StartTimestamp())
	}
	slices.SortStableFunc(roots, byStart)
	if len(roots) > 0 {
		r := t.Spans[roots[0]]
		t.RootName, t.RootService = r.Span.Name(), serviceName(r.Resource)
	}
	// Number the tree iteratively (a trace can be deep), guarding against
	// a parent cycle, which malformed input could make.
	n := 1
	visited := make([]bool, len(t.Spans))
	type frame struct{ span, next int }
	for _, root := range roots {
		if visited[root] {
			continue
		}
		visited[root] = true
		t.Spans[root].left, t.Spans[root].nsParent = n, -1
		n++
		stack := []frame{{root, 0}}
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			kids := children[top.span]
			if top.next == 0 {
				slices.SortStableFunc(kids, byStart)
			}
			if top.next < len(kids) {
				c := kids[top.next]
				top.next++
				if visited[c] {
					continue
				}
				visited[c] = true
				t.Spans[c].left, t.Spans[c].nsParent = n, t.Spans[top.span].left
				n++
				stack = append(stack, frame{c, 0})
				continue
			}
			t.Spans[top.span].right = n
			n++
			stack = stack[:len(stack)-1]
		}
	}
	return t
}

func serviceName(res pcommon.Resource) string {
	if v, ok := res.Attributes().Get("service.name"); ok {
		return v.AsString()
	}
	return ""
}

// duration is the span's duration in ns.
func (s *Span) duration() int64 {
	return int64(s.Span.EndTimestamp()) - int64(s.Span.StartTimestamp())
}
