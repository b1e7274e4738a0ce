// Package traceql parses and evaluates the TraceQL that Grafana's Tempo
// data source, its query builder and Traces Drilldown write for searches:
//
//   - spanset filters { … } with &&, ||, !, parentheses, comparisons
//     (= != > >= < <= =~ !~) of attributes (resource.x, span.x, .x,
//     event.x, link.x, instrumentation.x) and intrinsics (name, status,
//     statusMessage, kind, duration, rootName, rootServiceName,
//     traceDuration, nestedSetParent/Left/Right, span:id, span:parentID,
//     trace:id, event:name, event:timeSinceStart, link:traceID,
//     link:spanID, instrumentation:name/version) with strings, numbers,
//     durations, true/false, status and kind values and nil;
//   - spanset operators: && and || between filters, and the structural
//     operators >> (descendant), > (child), ~ (sibling), << (ancestor),
//     < (parent), their negations (!>>, !>, !~, !<<, !<) and unions
//     (&>>, &>, &~, &<<, &<);
//   - pipelines: | { … }, | count() > n, | avg(x) / min(x) / max(x) /
//     sum(x) compared with a value, | by(x), | select(…), | coalesce(),
//     and with(…) hints, which are accepted and ignored.
//
// Everything else — TraceQL metrics (rate(), quantile_over_time(), …),
// arithmetic, the parent. scope — is refused with an error that wraps
// ErrUnsupported and names the part. Tempo's TraceQL is in its AGPL
// module, so the grammar is written here from Tempo's documentation.
package traceql

import (
	"errors"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// ErrParse marks a query that does not parse or that uses what Lumen does
// not support (a client error).
var ErrParse = errors.New("traceql")

// ErrUnsupported marks valid TraceQL that Lumen does not evaluate; the
// errors that wrap it wrap ErrParse too.
var ErrUnsupported = errors.New("not supported")

// MaxDepth bounds how deeply a query may nest parentheses and braces, so
// that no query can exhaust the parser's stack (a Go stack overflow ends
// the process).
const MaxDepth = 128

// ErrTooDeep marks a query nested deeper than MaxDepth; the errors that
// wrap it wrap ErrParse too.
var ErrTooDeep = errors.New("nested too deeply")

// Query is a parsed TraceQL search query.
type Query struct {
	// Root is the condition of a query that is one spanset filter (nil
	// for {} and for any other query).
	Root Expr

	p      pipeline
	simple bool // one spanset filter that reads spans and resources only
	cand   Expr // what a span of every matching trace meets (nil: any span)
	shown  []*Attr
}

// Parse parses a query; errors wrap ErrParse and name the column.
func Parse(src string) (*Query, error) {
	p := &parser{src: src}
	p.space()
	if !p.peek("{") && !p.peek("(") {
		return nil, p.errf("a query starts with {, as in { resource.service.name = \"api\" }")
	}
	pl, err := p.pipeline()
	if err != nil {
		return nil, err
	}
	if err := p.hints(); err != nil {
		return nil, err
	}
	p.space()
	if p.pos < len(p.src) {
		return nil, p.errf("unexpected %q", trim(p.src[p.pos:]))
	}
	q := &Query{p: pl}
	if f, ok := pl[0].(*filter); ok && len(pl) == 1 {
		q.Root = f.cond
		q.simple = f.cond == nil || f.cond.local()
	}
	q.cand = exists(pl)
	q.shown = shown(pl, nil)
	return q, nil
}

func trim(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}

// Simple reports whether the query is one spanset filter on spans and
// their resources: then Match is exact, and a trace matches when one of
// its spans does.
func (q *Query) Simple() bool { return q.simple }

// All reports whether the query is {}: every span.
func (q *Query) All() bool { return q.simple && q.Root == nil }

// Match reports whether a span, on its own, may belong to the query's
// answer: exact for a Simple query; for any other, it holds on at least
// one span of every trace the query matches (conditions on the trace are
// taken as true), which makes it the search's filter of candidates.
func (q *Query) Match(res pcommon.Resource, sp ptrace.Span) bool {
	if q.cand == nil {
		return true
	}
	return q.cand.holds(&Span{Resource: res, Span: sp})
}

// Conjuncts lists the conditions, joined by && at the top of Match's
// condition, that every span Match accepts meets: for choosing an index.
func (q *Query) Conjuncts() []*Cond {
	var out []*Cond
	var walk func(e Expr)
	walk = func(e Expr) {
		switch e := e.(type) {
		case And:
			walk(e.L)
			walk(e.R)
		case *Cond:
			out = append(out, e)
		}
	}
	walk(q.cand)
	return out
}

// Eval runs the query on a trace: the spansets it returns, none when the
// trace does not match; spans in start order.
func (q *Query) Eval(t *Trace) []*Spanset {
	if len(t.Spans) == 0 {
		return nil
	}
	spans := slices.Clone(t.Spans)
	sortSpans(spans) // so that by()'s groups come in the order of their first spans
	out := q.p.eval([]*Spanset{{Spans: spans}})
	for _, ss := range out {
		sortSpans(ss.Spans)
	}
	return out
}

// Shown lists the attributes a search result shows on each span, as
// Tempo: those the query's conditions read and those it selects, without
// the ones a result shows anyway (name, duration, the trace's).
func (q *Query) Shown() []*Attr { return q.shown }

// exists returns a condition that, when a pipeline returns anything for a
// trace, one of the trace's spans meets (nil: any span).
func exists(pl pipeline) Expr {
	cur := existsIn(pl[0])
	if _, ok := pl[0].(*filter); !ok {
		return cur
	}
	// The spans a filter passes on meet its condition and every later
	// filter's, as long as only filters, by(), select() and aggregates
	// follow.
	for _, e := range pl[1:] {
		switch e := e.(type) {
		case *filter:
			cur = and(cur, relax(e.cond))
		case *groupBy, *selectAttrs, *aggregate, coalesce:
		default:
			return cur
		}
	}
	return cur
}

func existsIn(e element) Expr {
	switch e := e.(type) {
	case *filter:
		return relax(e.cond)
	case pipeline:
		return exists(e)
	case *setOp:
		l, r := existsIn(e.l), existsIn(e.r)
		switch {
		case e.op == "||":
			if l == nil || r == nil {
				return nil
			}
			return Or{l, r}
		case e.op == "&&":
			return better(l, r)
		case e.op[0] == '!':
			return r // the left side may be empty
		}
		return better(r, l) // both sides matched
	}
	return nil
}

// better picks, of two conditions that both must hold on some span, the
// one with more conjuncts (more for an index to use); a on a tie.
func better(a, b Expr) Expr {
	if len((&Query{cand: b}).Conjuncts()) > len((&Query{cand: a}).Conjuncts()) {
		return b
	}
	return a
}

func and(a, b Expr) Expr {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return And{a, b}
}

// notShown are the intrinsics a search result has fields for.
var notShown = map[string]bool{"name": true, "duration": true, "traceDuration": true, "rootName": true, "rootServiceName": true,
	"trace:id": true, "span:id": true}

func shown(e element, out []*Attr) []*Attr {
	add := func(as ...*Attr) {
		for _, a := range as {
			if a.Scope == ScopeIntrinsic && notShown[a.Name] {
				continue
			}
			dup := false
			for _, b := range out {
				if b.Scope == a.Scope && b.Name == a.Name {
					dup = true
				}
			}
			if !dup {
				out = append(out, a)
			}
		}
	}
	switch e := e.(type) {
	case pipeline:
		for _, x := range e {
			out = shown(x, out)
		}
	case *filter:
		add(attrs(e.cond, nil)...)
	case *setOp:
		out = shown(e.r, shown(e.l, out))
	case *selectAttrs:
		add(e.attrs...)
	}
	return out
}

// ParseAttr reads an attribute or intrinsic as the tag APIs name it:
// resource.x, span.x, .x, event.x, name, status, span:name…; anything else
// (http.route, service.name) is an attribute of the span or its resource.
func ParseAttr(s string) *Attr {
	p := &parser{src: s}
	if o, err := p.operand(); err == nil && p.pos == len(s) {
		if a, ok := o.(*Attr); ok {
			return a
		}
	}
	return &Attr{Scope: ScopeAny, Name: s, text: "." + s}
}
