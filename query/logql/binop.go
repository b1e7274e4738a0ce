package logql

import (
	"errors"
	"fmt"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
)

// Errors of binary operations whose sides do not pair up; Loki answers
// them as server errors, and so does Lumen.
var (
	errManyToMany  = errors.New("many-to-many matching not allowed: matching labels must be unique on one side")
	errOneToOne    = errors.New("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)")
	errDuplicateGL = errors.New("multiple matches for labels: grouping labels must ensure unique matches")
)

// binOp evaluates a binary operation at every step.
func (ev *evaluator) binOp(e *BinOp) ([]vector, error) {
	if l, ok := e.L.(*Literal); ok {
		return ev.withLiteral(e, l.Val, e.R, true)
	}
	if r, ok := e.R.(*Literal); ok {
		return ev.withLiteral(e, r.Val, e.L, false)
	}
	lhs, err := ev.eval(e.L)
	if err != nil {
		return nil, err
	}
	rhs, err := ev.eval(e.R)
	if err != nil {
		return nil, err
	}
	for i := range lhs {
		if lhs[i], err = vectorOp(e, lhs[i], rhs[i]); err != nil {
			return nil, err
		}
	}
	return lhs, nil
}

// withLiteral evaluates other and applies e's operation between num and
// it at every step (num on the left when left).
func (ev *evaluator) withLiteral(e *BinOp, num float64, other Expr, left bool) ([]vector, error) {
	in, err := ev.eval(other)
	if err != nil {
		return nil, err
	}
	for i := range in {
		in[i] = withNumber(e, num, in[i], left)
	}
	return in, nil
}

// opResult is e's answer to l op r: arithmetic's value, or a
// comparison's: own (the sample's value) when it holds, 1 or 0 with
// bool; false drops the sample.
func opResult(e *BinOp, l, r, own float64) (float64, bool) {
	v, keep := arith(e.Op, l, r)
	if !isComparison(e.Op) {
		return v, true
	}
	switch {
	case e.Bool && keep:
		return 1, true
	case e.Bool:
		return 0, true
	case !keep:
		return 0, false
	}
	return own, true
}

// withNumber is op between a number and each sample of vec (the number
// on the left when left). A comparison keeps the sample's own value, or
// answers 1 or 0 with bool.
func withNumber(e *BinOp, num float64, vec vector, left bool) vector {
	out := vec[:0]
	for _, s := range vec {
		l, r := s.v, num
		if left {
			l, r = num, s.v
		}
		if v, ok := opResult(e, l, r, s.v); ok {
			out = append(out, sample{lset: s.lset, v: v})
		}
	}
	return out
}

// signature is the part of a sample's labels a binary operation matches
// on: the on (…) labels, or all but the ignoring (…) ones.
func signature(m VectorMatching, lset labels.Labels) string {
	if m.On {
		return labels.NewBuilder(lset).Keep(m.Labels...).Labels().String()
	}
	if len(m.Labels) == 0 {
		return lset.String()
	}
	return labels.NewBuilder(lset).Del(m.Labels...).Labels().String()
}

// vectorOp is a binary operation between two vectors of one step.
func vectorOp(e *BinOp, lhs, rhs vector) (vector, error) {
	switch e.Op {
	case "and":
		if len(lhs) == 0 || len(rhs) == 0 {
			return nil, nil
		}
		right := sigSet(e.Matching, rhs)
		return slices.DeleteFunc(lhs, func(s sample) bool { return !right[signature(e.Matching, s.lset)] }), nil
	case "or":
		if len(lhs) == 0 {
			return rhs, nil
		}
		if len(rhs) == 0 {
			return lhs, nil
		}
		left := sigSet(e.Matching, lhs)
		for _, s := range rhs {
			if !left[signature(e.Matching, s.lset)] {
				lhs = append(lhs, s)
			}
		}
		return lhs, nil
	case "unless":
		if len(lhs) == 0 || len(rhs) == 0 {
			return lhs, nil
		}
		right := sigSet(e.Matching, rhs)
		return slices.DeleteFunc(lhs, func(s sample) bool { return right[signature(e.Matching, s.lset)] }), nil
	}
	return arithVectors(e, lhs, rhs)
}

func sigSet(m VectorMatching, vec vector) map[string]bool {
	out := make(map[string]bool, len(vec))
	for _, s := range vec {
		out[signature(m, s.lset)] = true
	}
	return out
}

// arithVectors pairs the samples of both sides (one to one, or many to
// one with group_left and group_right) and applies an arithmetic or
// comparison operator to each pair.
func arithVectors(e *BinOp, lhs, rhs vector) (vector, error) {
	m := e.Matching
	if m.Card == CardOneToMany {
		lhs, rhs = rhs, lhs
	}
	one := make(map[string]sample, len(rhs))
	for _, s := range rhs {
		sig := signature(m, s.lset)
		if _, dup := one[sig]; dup {
			side := "right"
			if m.Card == CardOneToMany {
				side = "left"
			}
			return nil, fmt.Errorf("found duplicate series on the %s hand-side: %w", side, errManyToMany)
		}
		one[sig] = s
	}
	matched := map[string]map[string]bool{}
	var out vector
	for _, ls := range lhs {
		sig := signature(m, ls.lset)
		rs, ok := one[sig]
		if !ok {
			continue
		}
		metric := resultLabels(ls.lset, rs.lset, m)
		seen, exists := matched[sig]
		if m.Card == CardOneToOne {
			if exists {
				return nil, errOneToOne
			}
			matched[sig] = nil
		} else {
			k := metric.String()
			if !exists {
				seen = map[string]bool{}
				matched[sig] = seen
			} else if seen[k] {
				return nil, errDuplicateGL
			}
			seen[k] = true
		}
		l, r := ls, rs
		if m.Card == CardOneToMany {
			l, r = rs, ls
		}
		if v, ok := opResult(e, l.v, r.v, l.v); ok {
			out = append(out, sample{lset: metric, v: v})
		}
	}
	return out, nil
}

// resultLabels are the labels of a pair's result: the "many" side's (on
// one to one, only the on labels, or all but the ignoring ones), with the
// group_left or group_right labels copied from the "one" side.
func resultLabels(many, one labels.Labels, m VectorMatching) labels.Labels {
	lb := labels.NewBuilder(many)
	if m.Card == CardOneToOne {
		if m.On {
			lb.Keep(m.Labels...)
		} else {
			lb.Del(m.Labels...)
		}
	}
	for _, n := range m.Include {
		if v := one.Get(n); v != "" {
			lb.Set(n, v)
		} else {
			lb.Del(n)
		}
	}
	return lb.Labels()
}
