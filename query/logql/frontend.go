package logql

// Loki's query frontend rewrites a metric query before it evaluates it,
// to shard it across queriers (its shard mapper). Most rewrites give the
// same answer; one does not, and Lumen applies it the same way:
//
//	avg_over_time({…} | … | unwrap x [r]) by (g)
//	  → sum by (g) (sum_over_time({…} | … | unwrap x [r]))
//	    / sum by (g) (count_over_time({…} | … [r]))
//
// The count is of the lines, the unwrap (and the label filters after it)
// left out: a line without the label, or one those filters drop, counts
// and adds nothing. The rewrite applies to an avg_over_time with a by, a
// without that names labels, or a keep, drop or label_format renaming in
// its pipeline, unless an aggregation around it is sent whole to the
// queriers (sum, min, max, count, avg, when they can be sharded).

// frontendRewrite returns e as Loki's frontend evaluates it.
func frontendRewrite(e Expr, topLevel bool) Expr {
	switch e := e.(type) {
	case *VectorAgg:
		if vectorShardable(e, topLevel) {
			return e
		}
		c := *e
		c.Inner = frontendRewrite(e.Inner, false)
		return &c
	case *BinOp:
		c := *e
		c.L, c.R = frontendRewrite(e.L, topLevel), frontendRewrite(e.R, topLevel)
		return &c
	case *LabelReplace:
		c := *e
		c.Inner = frontendRewrite(e.Inner, topLevel)
		return &c
	case *RangeAgg:
		if e.Op == "avg_over_time" && avgSplits(e) {
			return avgAsSumOverCount(e)
		}
	}
	return e
}

// avgSplits reports whether the frontend splits an avg_over_time into a
// sum and a count.
func avgSplits(e *RangeAgg) bool {
	if reducesLabels(e) {
		return true
	}
	return e.Grouping != nil && (len(e.Grouping.Labels) > 0 || !e.Grouping.Without)
}

func avgAsSumOverCount(e *RangeAgg) Expr {
	g := Grouping{Without: true}
	if e.Grouping != nil {
		g = *e.Grouping
	}
	sum := *e
	sum.Op, sum.Grouping = "sum_over_time", nil
	count := *e
	count.Op, count.Grouping, count.Unwrap = "count_over_time", nil, nil
	countBy := g.Labels
	if g.Without && e.Unwrap != nil {
		countBy = append(append([]string(nil), g.Labels...), e.Unwrap.Label)
	}
	return &BinOp{
		Op:  "/",
		L:   &VectorAgg{Op: "sum", Grouping: g.Labels, Without: g.Without, Inner: &sum, src: e.src},
		R:   &VectorAgg{Op: "sum", Grouping: countBy, Without: g.Without, Inner: &count, src: e.src},
		src: e.src,
	}
}

// shardableOps are the operations Loki's frontend can shard.
var shardableOps = map[string]bool{
	"sum": true, "avg": true, "count": true, "max": true, "min": true,
	"avg_over_time": true, "count_over_time": true, "first_over_time": true, "last_over_time": true,
	"rate": true, "bytes_over_time": true, "bytes_rate": true, "sum_over_time": true,
	"max_over_time": true, "min_over_time": true, "quantile_over_time": true,
	"+": true, "*": true,
}

// shardable reports whether Loki's frontend can shard e (then it sends e
// to the queriers whole).
func shardable(e Expr, topLevel bool) bool {
	switch e := e.(type) {
	case *RangeAgg:
		return shardableOps[e.Op] && (e.Op != "quantile_over_time" || topLevel)
	case *VectorAgg:
		return vectorShardable(e, topLevel)
	case *BinOp:
		if e.Matching.On || len(e.Matching.Labels) > 0 {
			return false
		}
		return shardableOps[e.Op] && shardable(e.L, topLevel) && shardable(e.R, topLevel)
	case *Literal:
		return true
	}
	return false
}

func vectorShardable(e *VectorAgg, topLevel bool) bool {
	if !shardableOps[e.Op] || !shardable(e.Inner, topLevel) {
		return false
	}
	switch e.Op {
	case "count", "avg":
		return !reducesLabels(e.Inner)
	case "max", "min":
		ra, ok := e.Inner.(*RangeAgg)
		return ok && shardable(ra, false)
	case "sum":
		if in, ok := e.Inner.(*VectorAgg); ok && (in.Op == "min" || in.Op == "max") {
			return false
		}
	}
	return true
}

// reducesLabels reports whether e may merge series: a grouping that names
// labels, a keep or drop stage, or a label_format that renames.
func reducesLabels(e Expr) bool {
	switch e := e.(type) {
	case *RangeAgg:
		if e.Grouping != nil && len(e.Grouping.Labels) > 0 {
			return true
		}
		for _, st := range e.Log.Stages {
			switch st := st.(type) {
			case *KeepLabels, *DropLabels:
				return true
			case *LabelFormat:
				for _, f := range st.Fmts {
					if f.Rename {
						return true
					}
				}
			}
		}
		return false
	case *VectorAgg:
		return len(e.Grouping) > 0 || reducesLabels(e.Inner)
	case *BinOp:
		return reducesLabels(e.L) || reducesLabels(e.R)
	case *LabelReplace:
		return reducesLabels(e.Inner)
	}
	return false
}
