package logql

import (
	"regexp"
	"time"
)

// The metric side of the AST: what a metric query is made of. Every node
// keeps the text it was parsed from, which String returns, so that a
// printed query parses back to the same tree.

// RangeAgg aggregates, per series and per step, the samples a log query
// yields in a window: the lines themselves (count_over_time, rate,
// bytes_over_time, bytes_rate, absent_over_time) or a label's values
// (Unwrap: sum_over_time, avg_over_time, quantile_over_time, …).
type RangeAgg struct {
	Op     string
	Log    *LogExpr
	Range  time.Duration
	Offset time.Duration
	// Param is quantile_over_time's φ.
	Param float64
	// Unwrap, when set, takes each sample's value from a label.
	Unwrap *Unwrap
	// Grouping, when set, is the by or without after the aggregation.
	Grouping *Grouping
	src      string
}

func (e *RangeAgg) String() string { return e.src }

// Unwrap takes a sample's value from a label of the line, converted as
// Conv says ("" a float, "bytes", "duration" or "duration_seconds"), then
// keeps the samples that pass Post (label filters only).
type Unwrap struct {
	Label string
	Conv  string
	Post  []Stage
}

// Grouping is by (Labels) or without (Labels).
type Grouping struct {
	Without bool
	Labels  []string
}

// VectorAgg aggregates a metric query across series at each step: sum,
// avg, min, max, count, stddev, stdvar, topk, bottomk, sort, sort_desc;
// by or without labels.
type VectorAgg struct {
	Op       string
	Grouping []string
	Without  bool
	Param    int // topk and bottomk's k
	Inner    Expr
	src      string
}

func (e *VectorAgg) String() string { return e.src }

// BinOp is a binary operation between two metric queries, or a metric
// query and a number (two numbers are folded into a Literal as they are
// parsed).
type BinOp struct {
	Op   string // + - * / % ^ == != > >= < <= and or unless
	L, R Expr
	// Bool makes a comparison answer 0 or 1 instead of filtering.
	Bool bool
	// Matching says how the two sides' series pair up.
	Matching VectorMatching
	src      string
}

func (e *BinOp) String() string { return e.src }

// Card is the cardinality of a vector matching.
type Card int

// The cardinalities of a binary operation between vectors.
const (
	CardOneToOne Card = iota
	CardManyToOne
	CardOneToMany
)

// VectorMatching pairs the samples of the two sides of a binary
// operation: on (Labels) or ignoring (Labels), with group_left or
// group_right (Card) copying Include from the "one" side.
type VectorMatching struct {
	Card    Card
	On      bool
	Labels  []string
	Include []string
}

// Literal is a number; an expression of numbers only is folded into one.
type Literal struct {
	Val float64
	src string
}

func (e *Literal) String() string { return e.src }

// VectorLit is vector(n): one sample with no labels at every step.
type VectorLit struct {
	Val float64
	src string
}

func (e *VectorLit) String() string { return e.src }

// LabelReplace is label_replace(inner, dst, replacement, src, regex).
type LabelReplace struct {
	Inner       Expr
	Dst         string
	Replacement string
	Src         string
	Regex       string
	re          *regexp.Regexp
	src         string
}

func (e *LabelReplace) String() string { return e.src }

// The range aggregations, and whether each needs (true) or refuses
// (false) an unwrap; absent_over_time and rate take either.
var rangeOps = map[string]bool{
	"count_over_time": false, "rate": false, "bytes_over_time": false, "bytes_rate": false, "absent_over_time": false,
	"sum_over_time": true, "avg_over_time": true, "max_over_time": true, "min_over_time": true,
	"first_over_time": true, "last_over_time": true, "stdvar_over_time": true, "stddev_over_time": true,
	"quantile_over_time": true, "rate_counter": true,
}

// rangeGroupable are the range aggregations that take by or without.
var rangeGroupable = map[string]bool{
	"avg_over_time": true, "stddev_over_time": true, "stdvar_over_time": true, "quantile_over_time": true,
	"max_over_time": true, "min_over_time": true, "first_over_time": true, "last_over_time": true,
}

var vectorOps = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "stddev": true, "stdvar": true,
	"topk": true, "bottomk": true, "sort": true, "sort_desc": true,
}

// sortable reports whether e orders its answer by value (it holds sort or
// sort_desc), as Loki's instant queries then keep that order.
func sortable(e Expr) bool {
	switch e := e.(type) {
	case *VectorAgg:
		return e.Op == "sort" || e.Op == "sort_desc" || sortable(e.Inner)
	case *BinOp:
		return sortable(e.L) || sortable(e.R)
	case *LabelReplace:
		return sortable(e.Inner)
	}
	return false
}
