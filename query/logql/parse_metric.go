package logql

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// The grammar of metric queries, as Loki's: binary operators over range
// and vector aggregations, numbers, vector(n) and label_replace. From the
// loosest binding to the tightest: or; and unless; == != > >= < <=; + -;
// * / %; ^ (right-associative).

// binaryOps are the binary operators and how tightly each binds.
var binaryOps = map[tokKind]int{tEqEq: 3, tNeq: 3, tGt: 3, tGte: 3, tLt: 3, tLte: 3, tAdd: 4, tSub: 4, tMul: 5, tDiv: 5, tMod: 5, tPow: 6}

func binaryOp(t token) (string, int) {
	if t.kind == tIdent {
		switch t.text {
		case "or":
			return "or", 1
		case "and", "unless":
			return t.text, 2
		}
		return "", 0
	}
	if prec, ok := binaryOps[t.kind]; ok {
		return tokNames[t.kind], prec
	}
	return "", 0
}

func isSetOp(op string) bool { return op == "and" || op == "or" || op == "unless" }

func isComparison(op string) bool {
	switch op {
	case "==", "!=", ">", ">=", "<", "<=":
		return true
	}
	return false
}

// expr parses a whole expression: a log query or a metric query.
func (p *parser) expr() (Expr, error) { return p.binary(1) }

// binary parses operands joined by operators that bind at least as
// tightly as minPrec.
func (p *parser) binary(minPrec int) (Expr, error) {
	start := p.peek().pos
	lhs, err := p.operand()
	if err != nil {
		return nil, err
	}
	for {
		opTok := p.peek()
		op, prec := binaryOp(opTok)
		if prec == 0 || prec < minPrec {
			return lhs, nil
		}
		p.take()
		b := &BinOp{Op: op}
		if err := p.binModifier(b); err != nil {
			return nil, err
		}
		next := prec + 1
		if op == "^" {
			next = prec
		}
		if err := p.nest(opTok); err != nil {
			return nil, err
		}
		rhs, err := p.binary(next)
		p.unnest()
		if err != nil {
			return nil, err
		}
		if lhs, err = p.newBinOp(opTok, b, lhs, rhs, start); err != nil {
			return nil, err
		}
	}
}

// binModifier parses what may follow a binary operator: bool, on (…) or
// ignoring (…), then group_left or group_right with their labels.
func (p *parser) binModifier(b *BinOp) error {
	if t := p.peek(); t.kind == tIdent && t.text == "bool" {
		p.take()
		b.Bool = true
	}
	t := p.peek()
	if t.kind != tIdent || (t.text != "on" && t.text != "ignoring") {
		return nil
	}
	p.take()
	b.Matching.On = t.text == "on"
	ls, err := p.labelList(t.text)
	if err != nil {
		return err
	}
	b.Matching.Labels = ls
	g := p.peek()
	if g.kind != tIdent || (g.text != "group_left" && g.text != "group_right") {
		return nil
	}
	p.take()
	b.Matching.Card = CardManyToOne
	if g.text == "group_right" {
		b.Matching.Card = CardOneToMany
	}
	// group_left (a, b) lists labels; group_left (sum(…)) is the operand.
	if p.peek().kind == tLParen {
		n := p.toks[p.i+1]
		if n.kind == tRParen || n.kind == tIdent && (p.toks[p.i+2].kind == tComma || p.toks[p.i+2].kind == tRParen) {
			if b.Matching.Include, err = p.labelList(g.text); err != nil {
				return err
			}
		}
	}
	return nil
}

// labelList parses (a, b, …) after what.
func (p *parser) labelList(what string) ([]string, error) {
	if _, err := p.expect(tLParen, `"(" after `+what); err != nil {
		return nil, err
	}
	var out []string
	for p.peek().kind != tRParen {
		if len(out) > 0 {
			if _, err := p.expect(tComma, `"," or ")"`); err != nil {
				return nil, err
			}
		}
		n, err := p.expect(tIdent, "a label name")
		if err != nil {
			return nil, err
		}
		out = append(out, n.text)
	}
	p.take()
	return out, nil
}

// newBinOp checks a binary operation's sides as Loki does and folds two
// numbers into one.
func (p *parser) newBinOp(opTok token, b *BinOp, lhs, rhs Expr, start int) (Expr, error) {
	for _, side := range []struct {
		e    Expr
		name string
	}{{lhs, "left"}, {rhs, "right"}} {
		if IsLogQuery(side.e) {
			return nil, p.errAt(opTok, "the %s side of %s is a log query: binary operations take metric queries and numbers", side.name, b.Op)
		}
		if _, ok := side.e.(*Literal); ok && isSetOp(b.Op) {
			return nil, p.errAt(opTok, "unexpected number on the %s side of %s: and, or and unless take metric queries", side.name, b.Op)
		}
	}
	src := strings.TrimSpace(p.src[start:p.peek().pos])
	l, lok := lhs.(*Literal)
	r, rok := rhs.(*Literal)
	if lok && rok {
		return &Literal{Val: foldNumbers(b.Op, l.Val, r.Val), src: src}, nil
	}
	b.L, b.R, b.src = lhs, rhs, src
	return b, nil
}

// foldNumbers is op between two numbers: a comparison is 1 or 0, and
// division or modulo by zero NaN, as in Loki.
func foldNumbers(op string, l, r float64) float64 {
	v, keep := arith(op, l, r)
	if !keep {
		return 0
	}
	return v
}

// arith is op between two values; for a comparison, the value is 1 and
// keep says whether it holds.
func arith(op string, l, r float64) (v float64, keep bool) {
	switch op {
	case "+":
		return l + r, true
	case "-":
		return l - r, true
	case "*":
		return l * r, true
	case "/":
		if r == 0 {
			return math.NaN(), true
		}
		return l / r, true
	case "%":
		if r == 0 {
			return math.NaN(), true
		}
		return math.Mod(l, r), true
	case "^":
		return math.Pow(l, r), true
	case "==":
		return 1, l == r
	case "!=":
		return 1, l != r
	case ">":
		return 1, l > r
	case ">=":
		return 1, l >= r
	case "<":
		return 1, l < r
	case "<=":
		return 1, l <= r
	}
	return 0, false
}

// operand parses what a binary operator joins: a log query, a number, an
// aggregation, vector(n), label_replace(…) or an expression in
// parentheses.
func (p *parser) operand() (Expr, error) {
	t := p.peek()
	switch {
	case t.kind == tLBrace:
		return p.logExpr()
	case t.kind == tNumber:
		p.take()
		return p.literal(t, t.text)
	case (t.kind == tAdd || t.kind == tSub) && p.toks[p.i+1].kind == tNumber:
		p.take()
		n := p.take()
		text := n.text
		if t.kind == tSub {
			text = "-" + text
		}
		return p.literal(n, text)
	case t.kind == tLParen:
		if err := p.nest(t); err != nil {
			return nil, err
		}
		defer p.unnest()
		p.take()
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, `")"`); err != nil {
			return nil, err
		}
		return e, nil
	case t.kind == tIdent && t.text == "vector":
		return p.vectorLit()
	case t.kind == tIdent && t.text == "label_replace":
		return p.labelReplace()
	case t.kind == tIdent:
		if _, ok := rangeOps[t.text]; ok {
			return p.rangeAgg()
		}
		if vectorOps[t.text] {
			return p.vectorAgg()
		}
		return nil, p.errAt(t, "unknown function %q", t.text)
	case t.kind == tSub:
		return nil, p.errAt(t, `unexpected "-": Loki's LogQL negates numbers only; write -1 * (…)`)
	}
	return nil, p.errAt(t, "unexpected %s, expected a stream selector {…} or a metric query", t)
}

func (p *parser) literal(t token, text string) (Expr, error) {
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return nil, p.errAt(t, "unexpected %s, expected a number", t)
	}
	return &Literal{Val: v, src: text}, nil
}

// number parses a number, possibly signed, as an aggregation's parameter.
func (p *parser) number(what string) (float64, token, error) {
	t := p.take()
	text := t.text
	if (t.kind == tAdd || t.kind == tSub) && p.peek().kind == tNumber {
		n := p.take()
		text = n.text
		if t.kind == tSub {
			text = "-" + text
		}
	} else if t.kind != tNumber {
		return 0, t, p.errAt(t, "unexpected %s, expected %s", t, what)
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, t, p.errAt(t, "unexpected %s, expected %s", t, what)
	}
	return v, t, nil
}

func (p *parser) vectorLit() (Expr, error) {
	start := p.take().pos
	if _, err := p.expect(tLParen, `"(" after vector`); err != nil {
		return nil, err
	}
	v, _, err := p.number("a number in vector(…)")
	if err != nil {
		return nil, err
	}
	if _, err := p.expect(tRParen, `")"`); err != nil {
		return nil, err
	}
	return &VectorLit{Val: v, src: strings.TrimSpace(p.src[start:p.peek().pos])}, nil
}

func (p *parser) labelReplace() (Expr, error) {
	first := p.take()
	if err := p.nest(first); err != nil {
		return nil, err
	}
	defer p.unnest()
	if _, err := p.expect(tLParen, `"(" after label_replace`); err != nil {
		return nil, err
	}
	inner, err := p.expr()
	if err != nil {
		return nil, err
	}
	if IsLogQuery(inner) {
		return nil, p.errAt(first, "label_replace takes a metric query, not a log query")
	}
	if _, ok := inner.(*Literal); ok {
		return nil, p.errAt(first, "label_replace takes a metric query, not a number: use vector(n)")
	}
	e := &LabelReplace{Inner: inner}
	for _, dst := range []*string{&e.Dst, &e.Replacement, &e.Src, &e.Regex} {
		if _, err := p.expect(tComma, `","`); err != nil {
			return nil, err
		}
		s, err := p.expect(tString, "a quoted string")
		if err != nil {
			return nil, err
		}
		*dst = s.text
	}
	if e.re, err = regexp.Compile("^(?:" + e.Regex + ")$"); err != nil {
		return nil, p.errAt(first, "invalid regex in label_replace: %v", err)
	}
	if _, err := p.expect(tRParen, `")"`); err != nil {
		return nil, err
	}
	e.src = strings.TrimSpace(p.src[first.pos:p.peek().pos])
	return e, nil
}

func (p *parser) rangeAgg() (Expr, error) {
	start := p.peek().pos
	op := p.take()
	if _, err := p.expect(tLParen, `"(" after `+op.text); err != nil {
		return nil, err
	}
	e := &RangeAgg{Op: op.text}
	if t := p.peek(); t.kind != tLBrace && t.kind != tLParen {
		v, pt, err := p.number("a number or a log query {…}")
		if err != nil {
			return nil, err
		}
		if op.text != "quantile_over_time" {
			return nil, p.errAt(pt, "parameter %s not supported for operation %s", pt.text, op.text)
		}
		e.Param = v
		if _, err := p.expect(tComma, `","`); err != nil {
			return nil, err
		}
	} else if op.text == "quantile_over_time" {
		return nil, p.errAt(t, "parameter required for operation %s", op.text)
	}
	if err := p.logRange(e); err != nil {
		return nil, err
	}
	if _, err := p.expect(tRParen, `")"`); err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind == tIdent && (t.text == "by" || t.text == "without") {
		p.take()
		ls, err := p.labelList(t.text)
		if err != nil {
			return nil, err
		}
		e.Grouping = &Grouping{Without: t.text == "without", Labels: ls}
		if !rangeGroupable[op.text] {
			return nil, p.errAt(t, "grouping not allowed for %s aggregation", op.text)
		}
	}
	if err := checkUnwrap(e); err != nil {
		return nil, p.errAt(op, "%v", err)
	}
	e.src = strings.TrimSpace(p.src[start:p.peek().pos])
	return e, nil
}

// checkUnwrap refuses, as Loki does, an aggregation of lines that needs
// values (sum_over_time without unwrap) and one of values that counts
// lines (count_over_time with unwrap).
func checkUnwrap(e *RangeAgg) error {
	needs := rangeOps[e.Op]
	switch {
	case e.Unwrap != nil && !needs && e.Op != "rate" && e.Op != "absent_over_time":
		return fmt.Errorf("invalid aggregation %s with unwrap", e.Op)
	case e.Unwrap == nil && needs:
		return fmt.Errorf("invalid aggregation %s without unwrap", e.Op)
	}
	return nil
}

// logRange parses the log query, range, offset and unwrap of a range
// aggregation, in the orders Loki takes: {…} | stages | unwrap x [5m]
// offset 1m, or {…} [5m] offset 1m | stages | unwrap x; the log query may
// be in parentheses before the range.
func (p *parser) logRange(e *RangeAgg) error {
	parens := 0
	for p.peek().kind == tLParen {
		if err := p.nest(p.peek()); err != nil {
			return err
		}
		defer p.unnest()
		p.take()
		parens++
	}
	selStart := p.peek().pos
	ms, err := p.selector()
	if err != nil {
		return err
	}
	selEnd := p.peek().pos
	log := &LogExpr{Matchers: ms}
	e.Log = log
	hasRange := false
	if parens == 0 && p.peek().kind == tLBracket {
		if err := p.rangeAndOffset(e); err != nil {
			return err
		}
		hasRange = true
	}
	stagesStart, end := p.peek().pos, p.peek().pos
	for {
		t := p.peek()
		if t.kind == tPipe && p.toks[p.i+1].kind == tIdent && p.toks[p.i+1].text == "unwrap" {
			if err := p.unwrap(e); err != nil {
				return err
			}
			break
		}
		st, ok, err := p.stage()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		log.Stages = append(log.Stages, st)
		end = p.peek().pos
	}
	for ; parens > 0; parens-- {
		if _, err := p.expect(tRParen, `")"`); err != nil {
			return err
		}
	}
	if !hasRange {
		if err := p.rangeAndOffset(e); err != nil {
			return err
		}
	}
	log.src = strings.TrimSpace(p.src[selStart:selEnd])
	if stages := strings.TrimSpace(p.src[stagesStart:end]); stages != "" {
		log.src += " " + stages
	}
	return nil
}

func (p *parser) rangeAndOffset(e *RangeAgg) error {
	if _, err := p.expect(tLBracket, `"[" and a range, as in `+e.Op+`({…}[5m])`); err != nil {
		return err
	}
	// A range is a Prometheus duration (5m, 1h30m, 0), as Loki reads it:
	// not 1.5m. A range of 0 holds no line.
	rt := p.take()
	d, err := model.ParseDuration(rt.text)
	if (rt.kind != tDuration && rt.kind != tNumber) || err != nil {
		return p.errAt(rt, "unexpected %s, expected a range such as 5m or 1h30m", rt)
	}
	if _, err := p.expect(tRBracket, `"]"`); err != nil {
		return err
	}
	e.Range = time.Duration(d)
	if t := p.peek(); t.kind == tIdent && t.text == "offset" {
		p.take()
		ot := p.take()
		if e.Offset, err = parseDuration(ot.text); ot.kind != tDuration || err != nil {
			return p.errAt(ot, "unexpected %s, expected a duration after offset", ot)
		}
	}
	return nil
}

// unwrap parses | unwrap label, | unwrap bytes(label), duration(label) or
// duration_seconds(label), and the label filters after it.
func (p *parser) unwrap(e *RangeAgg) error {
	p.take() // |
	p.take() // unwrap
	u := &Unwrap{}
	n, err := p.expect(tIdent, "a label name after unwrap")
	if err != nil {
		return err
	}
	u.Label = n.text
	if p.peek().kind == tLParen {
		switch n.text {
		case "bytes", "duration", "duration_seconds":
		default:
			return p.errAt(n, "unknown unwrap conversion %q: use bytes, duration or duration_seconds", n.text)
		}
		p.take()
		l, err := p.expect(tIdent, "a label name")
		if err != nil {
			return err
		}
		if _, err := p.expect(tRParen, `")"`); err != nil {
			return err
		}
		u.Conv, u.Label = n.text, l.text
	}
	for p.peek().kind == tPipe {
		at := p.toks[p.i+1]
		st, ok, err := p.stage()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if _, isFilter := st.(*LabelFilter); !isFilter {
			return p.errAt(at, "only label filters may follow unwrap")
		}
		u.Post = append(u.Post, st)
	}
	e.Unwrap = u
	return nil
}

func (p *parser) vectorAgg() (Expr, error) {
	start := p.peek().pos
	if err := p.nest(p.peek()); err != nil {
		return nil, err
	}
	defer p.unnest()
	op := p.take()
	e := &VectorAgg{Op: op.text}
	grouped := false
	grouping := func() error {
		t := p.peek()
		if t.kind != tIdent || (t.text != "by" && t.text != "without") {
			return nil
		}
		p.take()
		ls, err := p.labelList(t.text)
		if err != nil {
			return err
		}
		e.Grouping, e.Without, grouped = ls, t.text == "without", true
		return nil
	}
	if err := grouping(); err != nil {
		return nil, err
	}
	if _, err := p.expect(tLParen, `"(" after `+op.text); err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind == tNumber && p.toks[p.i+1].kind == tComma {
		p.take()
		p.take()
		if op.text != "topk" && op.text != "bottomk" {
			return nil, p.errAt(t, "unsupported parameter for operation %s(%s,", op.text, t.text)
		}
		n, err := strconv.Atoi(t.text)
		if err != nil {
			return nil, p.errAt(t, "invalid parameter %s(%s,", op.text, t.text)
		}
		if n <= 0 {
			return nil, p.errAt(t, "invalid parameter (must be greater than 0) %s(%s", op.text, t.text)
		}
		e.Param = n
	} else if op.text == "topk" || op.text == "bottomk" {
		return nil, p.errAt(t, "unexpected %s, expected a positive integer k for %s (its parameter)", t, op.text)
	}
	inner, err := p.expr()
	if err != nil {
		return nil, err
	}
	if IsLogQuery(inner) {
		return nil, p.errAt(p.toks[p.i-1], "%s aggregates a metric query, not a log query: use %s(count_over_time({…}[1m]))", op.text, op.text)
	}
	if _, ok := inner.(*Literal); ok {
		// Loki parses this and then fails with a 500 as it evaluates it.
		return nil, p.errAt(p.toks[p.i-1], "%s aggregates a metric query, not a number: use vector(n)", op.text)
	}
	e.Inner = inner
	if _, err := p.expect(tRParen, `")"`); err != nil {
		return nil, err
	}
	if !grouped {
		if err := grouping(); err != nil {
			return nil, err
		}
	}
	e.src = strings.TrimSpace(p.src[start:p.peek().pos])
	return e, nil
}
