package traceql

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Spanset is a set of spans of one trace that a query returns, with the
// attributes its pipeline gave it (by(…), count(), avg(…)).
type Spanset struct {
	Spans      []*Span
	Attributes []KeyValue
}

// KeyValue is one attribute of a spanset.
type KeyValue struct {
	Key   string
	Value Value
}

func (ss *Spanset) with(spans []*Span) *Spanset {
	return &Spanset{Spans: spans, Attributes: slices.Clone(ss.Attributes)}
}

func (ss *Spanset) set(key string, v Value) {
	for i := range ss.Attributes {
		if ss.Attributes[i].Key == key {
			ss.Attributes[i].Value = v
			return
		}
	}
	ss.Attributes = append(ss.Attributes, KeyValue{key, v})
}

// element is a stage of a pipeline: spansets in, spansets out (empty ones
// are dropped).
type element interface {
	eval(in []*Spanset) []*Spanset
	String() string
}

// pipeline runs its elements in order.
type pipeline []element

func (p pipeline) eval(in []*Spanset) []*Spanset {
	for _, e := range p {
		if len(in) == 0 {
			return nil
		}
		in = e.eval(in)
	}
	return in
}

func (p pipeline) String() string {
	s := ""
	for i, e := range p {
		if i > 0 {
			s += " | "
		}
		s += e.String()
	}
	return s
}

// filter is a spanset filter { … }: the spans of each spanset it holds on.
type filter struct {
	cond Expr // nil: {}
}

func (f *filter) eval(in []*Spanset) []*Spanset {
	var out []*Spanset
	for _, ss := range in {
		if f.cond == nil {
			out = append(out, ss)
			continue
		}
		var keep []*Span
		for _, s := range ss.Spans {
			if f.cond.holds(s) {
				keep = append(keep, s)
			}
		}
		if len(keep) > 0 {
			out = append(out, ss.with(keep))
		}
	}
	return out
}

func (f *filter) String() string {
	if f.cond == nil {
		return "{ }"
	}
	return "{ " + f.cond.String() + " }"
}

// setOp combines the spansets two expressions make of each input spanset:
// && (both matched: the spans of both), || (the spans of either), and the
// structural operators, which return the right side's spans that stand in
// the relation to a left side's span (negated: that stand in it to none;
// union, &>> and the like: the spans on both sides of every related pair).
type setOp struct {
	op   string
	l, r element
}

func (o *setOp) String() string { return "(" + o.l.String() + ") " + o.op + " (" + o.r.String() + ")" }

func (o *setOp) eval(in []*Spanset) []*Spanset {
	var out []*Spanset
	for _, ss := range in {
		one := []*Spanset{ss}
		l, r := spansOf(o.l.eval(one)), spansOf(o.r.eval(one))
		var spans []*Span
		switch o.op {
		case "&&":
			if len(l) > 0 && len(r) > 0 {
				spans = union(l, r)
			}
		case "||":
			spans = union(l, r)
		default:
			spans = relate(o.op, l, r)
		}
		if len(spans) > 0 {
			out = append(out, ss.with(spans))
		}
	}
	return out
}

// spansOf merges spansets into the list of their spans, each once.
func spansOf(sets []*Spanset) []*Span {
	if len(sets) == 1 {
		return sets[0].Spans
	}
	var out []*Span
	for _, ss := range sets {
		out = union(out, ss.Spans)
	}
	return out
}

func union(a, b []*Span) []*Span {
	seen := make(map[*Span]bool, len(a)+len(b))
	out := make([]*Span, 0, len(a)+len(b))
	for _, s := range slices.Concat(a, b) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// structural lists the structural operators, the longest first.
var structural = []string{"!>>", "!<<", "&>>", "&<<", ">>", "<<", "!>", "!<", "!~", "&>", "&<", "&~", ">", "<", "~"}

// relate applies a structural operator to the spans of the two sides, in
// time linear in the spans and the tree's depth.
func relate(op string, l, r []*Span) []*Span {
	negated, union := op[0] == '!', op[0] == '&'
	base := op
	if negated || union {
		base = op[1:]
	}
	inL, inR := spanSet(l), spanSet(r)
	hitL, hitR := map[*Span]bool{}, map[*Span]bool{}
	// up walks a span's ancestors, nearest first, until visit says stop
	// (bounded, in case malformed input made a parent cycle).
	up := func(s *Span, visit func(p *Span) bool) {
		hops := 0
		if s.trace != nil {
			hops = len(s.trace.Spans)
		}
		for p := s.parent; p != nil && hops >= 0; p, hops = p.parent, hops-1 {
			if !visit(p) {
				return
			}
		}
	}
	switch base {
	case ">>": // r below an l
		for _, b := range r {
			up(b, func(p *Span) bool {
				if inL[p] {
					hitR[b], hitL[p] = true, true
					return union // every pair only for the union
				}
				return true
			})
		}
	case "<<": // r above an l
		for _, a := range l {
			up(a, func(p *Span) bool {
				if inR[p] {
					hitR[p], hitL[a] = true, true // and every ancestor above
				}
				return true
			})
		}
	case ">": // r a child of an l
		for _, b := range r {
			if b.parent != nil && inL[b.parent] {
				hitR[b], hitL[b.parent] = true, true
			}
		}
	case "<": // r the parent of an l
		for _, a := range l {
			if a.parent != nil && inR[a.parent] {
				hitR[a.parent], hitL[a] = true, true
			}
		}
	case "~": // r and an l share their parent
		lKids, rKids := map[*Span]int{}, map[*Span]int{}
		for _, a := range l {
			if a.parent != nil {
				lKids[a.parent]++
			}
		}
		for _, b := range r {
			if b.parent != nil {
				rKids[b.parent]++
			}
		}
		others := func(kids map[*Span]int, in map[*Span]bool, s *Span) bool {
			n := kids[s.parent]
			if in[s] {
				n-- // not its own sibling
			}
			return s.parent != nil && n > 0
		}
		for _, b := range r {
			hitR[b] = others(lKids, inL, b)
		}
		for _, a := range l {
			hitL[a] = others(rKids, inR, a)
		}
	}
	var out []*Span
	if union {
		seen := map[*Span]bool{}
		for _, s := range slices.Concat(l, r) {
			if (hitL[s] && inL[s] || hitR[s] && inR[s]) && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		sortSpans(out)
		return out
	}
	for _, b := range r {
		if hitR[b] != negated {
			out = append(out, b)
		}
	}
	return out
}

func spanSet(spans []*Span) map[*Span]bool {
	m := make(map[*Span]bool, len(spans))
	for _, s := range spans {
		m[s] = true
	}
	return m
}

// aggregate computes count(), avg(x), min(x), max(x) or sum(x) of each
// spanset, and keeps the spansets where it compares with the literal.
type aggregate struct {
	fn  string // count avg min max sum
	x   *Attr  // nil for count()
	op  string
	lit Value
}

func (a *aggregate) key() string {
	if a.x == nil {
		return a.fn + "()"
	}
	return a.fn + "(" + a.x.String() + ")"
}

func (a *aggregate) String() string { return a.key() + " " + a.op + " " + a.lit.String() }

func (a *aggregate) eval(in []*Spanset) []*Spanset {
	var out []*Spanset
	for _, ss := range in {
		v, ok := a.compute(ss)
		if !ok {
			continue
		}
		c := &Cond{Op: a.op}
		if !c.compare(v, a.lit) {
			continue
		}
		res := ss.with(ss.Spans)
		res.set(a.key(), v)
		out = append(out, res)
	}
	return out
}

// compute is the aggregate of a spanset; false when no span has a
// numeric value for it.
func (a *aggregate) compute(ss *Spanset) (Value, bool) {
	if a.fn == "count" {
		return Value{Type: TypeInt, N: int64(len(ss.Spans))}, true
	}
	var vals []Value
	var buf [4]Value
	for _, s := range ss.Spans {
		for _, v := range a.x.Values(s, buf[:0]) {
			if v.numeric() {
				vals = append(vals, v)
				break
			}
		}
	}
	if len(vals) == 0 {
		return Value{}, false
	}
	typ := vals[0].Type
	for _, v := range vals {
		if v.Type != typ {
			typ = TypeFloat // mixed: compare as floats
		}
	}
	var sum float64
	var isum int64
	lo, hi := vals[0], vals[0]
	for _, v := range vals {
		sum += v.float()
		isum += v.N
		if v.float() < lo.float() {
			lo = v
		}
		if v.float() > hi.float() {
			hi = v
		}
	}
	switch a.fn {
	case "min":
		return lo, true
	case "max":
		return hi, true
	case "sum":
		switch typ {
		case TypeInt:
			return Value{Type: TypeInt, N: isum}, true
		case TypeDuration:
			return Value{Type: TypeDuration, D: time.Duration(sum)}, true
		}
		return Value{Type: TypeFloat, F: sum}, true
	}
	avg := sum / float64(len(vals))
	if typ == TypeDuration {
		return Value{Type: TypeDuration, D: time.Duration(math.Round(avg))}, true
	}
	return Value{Type: TypeFloat, F: avg}, true
}

// groupBy splits each spanset by the value of x, giving each part the
// attribute by(x).
type groupBy struct{ x *Attr }

func (g *groupBy) String() string { return "by(" + g.x.String() + ")" }

func (g *groupBy) eval(in []*Spanset) []*Spanset {
	var out []*Spanset
	key := g.String()
	var buf [4]Value
	for _, ss := range in {
		groups := map[Value]*Spanset{}
		var order []Value
		for _, s := range ss.Spans {
			v := Value{}
			if vs := g.x.Values(s, buf[:0]); len(vs) > 0 {
				v = vs[0]
			}
			grp, ok := groups[v]
			if !ok {
				grp = ss.with(nil)
				grp.set(key, v)
				groups[v] = grp
				order = append(order, v)
			}
			grp.Spans = append(grp.Spans, s)
		}
		for _, v := range order {
			out = append(out, groups[v])
		}
	}
	return out
}

// coalesce merges the spansets of a trace back into one.
type coalesce struct{}

func (coalesce) String() string { return "coalesce()" }

func (coalesce) eval(in []*Spanset) []*Spanset {
	return []*Spanset{{Spans: spansOf(in)}}
}

// selectAttrs is select(…): the spans show the attributes; the spansets
// are as they were.
type selectAttrs struct{ attrs []*Attr }

func (s *selectAttrs) String() string {
	out := "select("
	for i, a := range s.attrs {
		if i > 0 {
			out += ", "
		}
		out += a.String()
	}
	return out + ")"
}

func (s *selectAttrs) eval(in []*Spanset) []*Spanset { return in }

// sortSpans orders a spanset's spans by start time, then span id.
func sortSpans(spans []*Span) {
	slices.SortStableFunc(spans, func(a, b *Span) int {
		if c := cmp.Compare(a.Span.StartTimestamp(), b.Span.StartTimestamp()); c != 0 {
			return c
		}
		x, y := a.Span.SpanID(), b.Span.SpanID()
		return slices.Compare(x[:], y[:])
	})
}
