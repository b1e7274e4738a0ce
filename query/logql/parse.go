package logql

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// Expr is a parsed LogQL query: a *LogExpr (a log query) or a metric
// query (*RangeAgg, *VectorAgg).
type Expr interface{ String() string }

// LogExpr selects streams and runs their lines through a pipeline.
type LogExpr struct {
	Matchers []*labels.Matcher
	Stages   []Stage
	src      string
}

func (e *LogExpr) String() string { return e.src }

// Stage is one step of a pipeline.
type Stage interface{ stage() }

// LineFilter keeps lines that contain (|=), do not contain (!=), match
// (|~) or do not match (!~) one of its values.
type LineFilter struct {
	Op     tokKind
	Values []string
	res    []*regexp.Regexp
}

// Parser is `| json` or `| logfmt`: it adds the line's fields as labels.
type Parser struct{ Kind string }

// LabelFilter keeps lines whose labels satisfy Pred.
type LabelFilter struct{ Pred Pred }

// LineFormat rewrites the line with a Go template over the labels.
type LineFormat struct {
	Src  string
	tmpl *template.Template
}

func (*LineFilter) stage()  {}
func (*Parser) stage()      {}
func (*LabelFilter) stage() {}
func (*LineFormat) stage()  {}

// Pred is a label filter expression.
type Pred interface{ pred() }

// And and Or combine label filters.
type And struct{ L, R Pred }

// Or is true when either side is.
type Or struct{ L, R Pred }

// StringMatch compares a label's value as a string (=, !=, =~, !~).
type StringMatch struct{ M *labels.Matcher }

// NumberMatch compares a label's value as a number, a duration or a
// byte size (==, !=, >, >=, <, <=).
type NumberMatch struct {
	Name  string
	Op    tokKind
	Value float64
	Kind  tokKind // tNumber, tDuration (seconds) or tBytes
}

func (And) pred()          {}
func (Or) pred()           {}
func (StringMatch) pred()  {}
func (*NumberMatch) pred() {}

// RangeAgg is count_over_time, rate, bytes_over_time or bytes_rate over a
// log query's lines in a window.
type RangeAgg struct {
	Op     string
	Log    *LogExpr
	Range  time.Duration
	Offset time.Duration
	src    string
}

func (e *RangeAgg) String() string { return e.src }

// VectorAgg aggregates a metric query across series: sum, avg, min, max,
// count, topk, bottomk, by or without labels.
type VectorAgg struct {
	Op       string
	Grouping []string
	Without  bool
	Param    int
	Inner    Expr
	src      string
}

func (e *VectorAgg) String() string { return e.src }

// IsLogQuery reports whether e returns log lines rather than samples.
func IsLogQuery(e Expr) bool { _, ok := e.(*LogExpr); return ok }

var rangeOps = map[string]bool{"count_over_time": true, "rate": true, "bytes_over_time": true, "bytes_rate": true}

var vectorOps = map[string]bool{"sum": true, "avg": true, "min": true, "max": true, "count": true, "topk": true, "bottomk": true}

type parser struct {
	src   string
	toks  []token
	i     int
	depth int // of parentheses and aggregations around the current token
}

// Parse parses a LogQL query. Its errors wrap ErrParse and say where.
func Parse(src string) (Expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks}
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "unexpected %s after the end of the query", t)
	}
	return e, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) take() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errAt(t token, format string, a ...any) error {
	return errAt(p.src, t.pos, format, a...)
}

// nest enters one more level of nesting at t; the caller defers unnest.
func (p *parser) nest(t token) error {
	if p.depth++; p.depth > MaxDepth {
		err := errAt(p.src, t.pos, "parentheses and aggregations %s (at most %d)", ErrTooDeep, MaxDepth)
		err.tooDeep = true
		return err
	}
	return nil
}

func (p *parser) unnest() { p.depth-- }

func (p *parser) expect(k tokKind, what string) (token, error) {
	t := p.take()
	if t.kind != k {
		return t, p.errAt(t, "unexpected %s, expected %s", t, what)
	}
	return t, nil
}

func (p *parser) expr() (Expr, error) {
	t := p.peek()
	switch {
	case t.kind == tLBrace:
		return p.logExpr()
	case t.kind == tIdent && rangeOps[t.text]:
		return p.rangeAgg()
	case t.kind == tIdent && vectorOps[t.text]:
		return p.vectorAgg()
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
	case t.kind == tIdent:
		return nil, p.errAt(t, "unknown function %q: Lumen supports count_over_time, rate, bytes_over_time, bytes_rate, sum, avg, min, max, count, topk and bottomk", t.text)
	}
	return nil, p.errAt(t, "unexpected %s, expected a stream selector {…} or a metric query", t)
}

func (p *parser) logExpr() (*LogExpr, error) {
	start := p.peek().pos
	ms, err := p.selector()
	if err != nil {
		return nil, err
	}
	e := &LogExpr{Matchers: ms}
	for {
		st, ok, err := p.stage()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		e.Stages = append(e.Stages, st)
	}
	e.src = strings.TrimSpace(p.src[start:p.peek().pos])
	return e, nil
}

func (p *parser) selector() ([]*labels.Matcher, error) {
	if _, err := p.expect(tLBrace, `"{"`); err != nil {
		return nil, err
	}
	var ms []*labels.Matcher
	for {
		t := p.peek()
		if t.kind == tRBrace {
			p.take()
			break
		}
		if len(ms) > 0 {
			if _, err := p.expect(tComma, `"," or "}"`); err != nil {
				return nil, err
			}
		}
		m, err := p.matcher()
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return nil, p.errAt(p.toks[p.i-1], "a stream selector needs at least one label matcher")
	}
	empty := true
	for _, m := range ms {
		empty = empty && m.Matches("")
	}
	if empty {
		return nil, p.errAt(p.toks[p.i-1], `queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~".*" does not meet this requirement, but app=~".+" will`)
	}
	return ms, nil
}

func (p *parser) matcher() (*labels.Matcher, error) {
	name, err := p.expect(tIdent, "a label name")
	if err != nil {
		return nil, err
	}
	opTok := p.take()
	var mt labels.MatchType
	switch opTok.kind {
	case tEq:
		mt = labels.MatchEqual
	case tNeq:
		mt = labels.MatchNotEqual
	case tRe:
		mt = labels.MatchRegexp
	case tNre:
		mt = labels.MatchNotRegexp
	default:
		return nil, p.errAt(opTok, "unexpected %s, expected one of =, !=, =~, !~", opTok)
	}
	val, err := p.expect(tString, "a quoted value")
	if err != nil {
		return nil, err
	}
	m, err := labels.NewMatcher(mt, name.text, val.text)
	if err != nil {
		return nil, p.errAt(val, "invalid regexp %q: %v", val.text, err)
	}
	return m, nil
}

// stage parses one pipeline stage, if one follows.
func (p *parser) stage() (Stage, bool, error) {
	t := p.peek()
	switch t.kind {
	case tPipeExact, tNeq, tPipeMatch, tNre:
		p.take()
		f := &LineFilter{Op: t.kind}
		for {
			v, err := p.expect(tString, "a quoted string after the line filter")
			if err != nil {
				return nil, false, err
			}
			f.Values = append(f.Values, v.text)
			if t.kind == tPipeMatch || t.kind == tNre {
				re, err := regexp.Compile(v.text)
				if err != nil {
					return nil, false, p.errAt(v, "invalid regexp %q: %v", v.text, err)
				}
				f.res = append(f.res, re)
			}
			if n := p.peek(); n.kind == tIdent && n.text == "or" && p.toks[p.i+1].kind == tString {
				p.take()
				continue
			}
			return f, true, nil
		}
	case tPipe:
		p.take()
		n := p.peek()
		if n.kind == tLParen {
			pred, err := p.predOr()
			if err != nil {
				return nil, false, err
			}
			return &LabelFilter{Pred: pred}, true, nil
		}
		if n.kind != tIdent {
			return nil, false, p.errAt(n, "unexpected %s after |, expected json, logfmt, line_format or a label filter", n)
		}
		switch n.text {
		case "json", "logfmt":
			p.take()
			if a := p.peek(); a.kind == tIdent && !isKeyword(a.text) || a.kind == tString {
				return nil, false, p.errAt(a, "%s with parameters is not supported by Lumen; use | %s", n.text, n.text)
			}
			return &Parser{Kind: n.text}, true, nil
		case "line_format":
			p.take()
			s, err := p.expect(tString, "a quoted template after line_format")
			if err != nil {
				return nil, false, err
			}
			tmpl, err := template.New("line_format").Option("missingkey=zero").Funcs(templateFuncs).Parse(lineFormatSource(s.text))
			if err != nil {
				return nil, false, p.errAt(s, "invalid line_format template: %v", err)
			}
			return &LineFormat{Src: s.text, tmpl: tmpl}, true, nil
		case "unwrap", "label_format", "drop", "keep", "pattern", "regexp", "unpack", "decolorize":
			return nil, false, p.errAt(n, "the %s stage is not supported by Lumen", n.text)
		}
		pred, err := p.predOr()
		if err != nil {
			return nil, false, err
		}
		return &LabelFilter{Pred: pred}, true, nil
	}
	return nil, false, nil
}

func (p *parser) predOr() (Pred, error) {
	l, err := p.predAnd()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tIdent && strings.EqualFold(t.text, "or"); t = p.peek() {
		p.take()
		r, err := p.predAnd()
		if err != nil {
			return nil, err
		}
		l = Or{l, r}
	}
	return l, nil
}

func (p *parser) predAnd() (Pred, error) {
	l, err := p.predAtom()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		isAnd := t.kind == tIdent && strings.EqualFold(t.text, "and")
		// "a=1, b=2" and "a=1 b=2" are "and" too, as in Loki.
		if !isAnd && t.kind != tComma && !(t.kind == tIdent && !isKeyword(t.text)) && t.kind != tLParen {
			return l, nil
		}
		if isAnd || t.kind == tComma {
			p.take()
		}
		r, err := p.predAtom()
		if err != nil {
			return nil, err
		}
		l = And{l, r}
	}
}

func (p *parser) predAtom() (Pred, error) {
	t := p.peek()
	if t.kind == tLParen {
		if err := p.nest(t); err != nil {
			return nil, err
		}
		defer p.unnest()
		p.take()
		e, err := p.predOr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, `")"`); err != nil {
			return nil, err
		}
		return e, nil
	}
	name, err := p.expect(tIdent, "a label name")
	if err != nil {
		return nil, err
	}
	op := p.take()
	val := p.take()
	switch op.kind {
	case tEq, tNeq, tRe, tNre:
		if val.kind == tString {
			mt := map[tokKind]labels.MatchType{tEq: labels.MatchEqual, tNeq: labels.MatchNotEqual, tRe: labels.MatchRegexp, tNre: labels.MatchNotRegexp}[op.kind]
			m, err := labels.NewMatcher(mt, name.text, val.text)
			if err != nil {
				return nil, p.errAt(val, "invalid regexp %q: %v", val.text, err)
			}
			return StringMatch{M: m}, nil
		}
		if op.kind == tRe || op.kind == tNre {
			return nil, p.errAt(val, "unexpected %s, expected a quoted regexp", val)
		}
		if op.kind == tEq {
			op.kind = tEqEq
		}
	case tEqEq, tGt, tGte, tLt, tLte:
	default:
		return nil, p.errAt(op, "unexpected %s after label %q, expected a comparison (=, !=, =~, !~, ==, >, >=, <, <=)", op, name.text)
	}
	v, err := numberOf(val)
	if err != nil {
		return nil, p.errAt(val, "unexpected %s, expected a number, a duration or a byte size", val)
	}
	return &NumberMatch{Name: name.text, Op: op.kind, Value: v, Kind: val.kind}, nil
}

func numberOf(t token) (float64, error) {
	switch t.kind {
	case tNumber:
		return strconv.ParseFloat(t.text, 64)
	case tDuration:
		d, err := parseDuration(t.text)
		return d.Seconds(), err
	case tBytes:
		b, err := parseBytes(t.text)
		return float64(b), err
	}
	return 0, fmt.Errorf("not a number")
}

func (p *parser) rangeAgg() (Expr, error) {
	start := p.peek().pos
	op := p.take()
	if _, err := p.expect(tLParen, `"(" after `+op.text); err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tLBrace {
		return nil, p.errAt(t, "unexpected %s, expected a log query {…} in %s", t, op.text)
	}
	log, err := p.logExpr()
	if err != nil {
		return nil, err
	}
	if _, err := p.expect(tLBracket, `"[" and a range, as in `+op.text+`({…}[5m])`); err != nil {
		return nil, err
	}
	rt := p.take()
	d, err := parseDuration(rt.text)
	if (rt.kind != tDuration && rt.kind != tNumber) || err != nil || d <= 0 {
		return nil, p.errAt(rt, "unexpected %s, expected a positive range such as 5m", rt)
	}
	if _, err := p.expect(tRBracket, `"]"`); err != nil {
		return nil, err
	}
	e := &RangeAgg{Op: op.text, Log: log, Range: d}
	if t := p.peek(); t.kind == tIdent && t.text == "offset" {
		p.take()
		ot := p.take()
		if e.Offset, err = parseDuration(ot.text); ot.kind != tDuration || err != nil {
			return nil, p.errAt(ot, "unexpected %s, expected a duration after offset", ot)
		}
	}
	if _, err := p.expect(tRParen, `")"`); err != nil {
		return nil, err
	}
	e.src = strings.TrimSpace(p.src[start:p.peek().pos])
	return e, nil
}

func (p *parser) vectorAgg() (Expr, error) {
	start := p.peek().pos
	if err := p.nest(p.peek()); err != nil {
		return nil, err
	}
	defer p.unnest()
	op := p.take()
	e := &VectorAgg{Op: op.text}
	grouping := func() error {
		t := p.peek()
		if t.kind != tIdent || (t.text != "by" && t.text != "without") {
			return nil
		}
		p.take()
		e.Without = t.text == "without"
		if _, err := p.expect(tLParen, `"(" after `+t.text); err != nil {
			return err
		}
		for p.peek().kind != tRParen {
			if len(e.Grouping) > 0 {
				if _, err := p.expect(tComma, `"," or ")"`); err != nil {
					return err
				}
			}
			n, err := p.expect(tIdent, "a label name")
			if err != nil {
				return err
			}
			e.Grouping = append(e.Grouping, n.text)
		}
		p.take()
		return nil
	}
	if err := grouping(); err != nil {
		return nil, err
	}
	if _, err := p.expect(tLParen, `"(" after `+op.text); err != nil {
		return nil, err
	}
	if op.text == "topk" || op.text == "bottomk" {
		k := p.take()
		n, err := strconv.Atoi(k.text)
		if k.kind != tNumber || err != nil || n < 1 {
			return nil, p.errAt(k, "unexpected %s, expected a positive integer k for %s", k, op.text)
		}
		e.Param = n
		if _, err := p.expect(tComma, `","`); err != nil {
			return nil, err
		}
	}
	inner, err := p.expr()
	if err != nil {
		return nil, err
	}
	if IsLogQuery(inner) {
		return nil, p.errAt(p.toks[p.i-1], "%s aggregates a metric query, not a log query: use %s(count_over_time({…}[1m]))", op.text, op.text)
	}
	e.Inner = inner
	if _, err := p.expect(tRParen, `")"`); err != nil {
		return nil, err
	}
	if len(e.Grouping) == 0 && !e.Without {
		if err := grouping(); err != nil {
			return nil, err
		}
	}
	e.src = strings.TrimSpace(p.src[start:p.peek().pos])
	return e, nil
}

// parseDuration takes Go durations (250ms, 1.5s, 1h30m) and Prometheus'
// (1d, 1w).
func parseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	d, err := model.ParseDuration(s)
	return time.Duration(d), err
}

func parseBytes(s string) (uint64, error) {
	if s == "" || s[len(s)-1] != 'B' && s[len(s)-1] != 'b' {
		return 0, fmt.Errorf("%q has no byte unit", s)
	}
	return humanize.ParseBytes(s)
}

var templateFuncs = template.FuncMap{
	"ToUpper":    strings.ToUpper,
	"ToLower":    strings.ToLower,
	"Title":      strings.ToTitle,
	"TrimSpace":  strings.TrimSpace,
	"Trim":       strings.Trim,
	"TrimLeft":   strings.TrimLeft,
	"TrimRight":  strings.TrimRight,
	"TrimPrefix": strings.TrimPrefix,
	"TrimSuffix": strings.TrimSuffix,
	"Replace":    strings.Replace,
	"toUpper":    strings.ToUpper,
	"toLower":    strings.ToLower,
	"trim":       strings.TrimSpace,
	"replace":    func(old, repl, s string) string { return strings.ReplaceAll(s, old, repl) },
	"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
	"default": func(def string, v any) string {
		if s := fmt.Sprint(v); v != nil && s != "" && s != "<no value>" {
			return s
		}
		return def
	},
}

// lineFormatSource lets a template say {{ __line__ }} and
// {{ __timestamp__ }}, as Loki's do, by reading them as fields of the data
// the template runs on: Go templates have no per-execution functions.
func lineFormatSource(s string) string {
	for _, name := range []string{"__line__", "__timestamp__"} {
		var b strings.Builder
		for {
			i := strings.Index(s, name)
			if i < 0 {
				b.WriteString(s)
				break
			}
			b.WriteString(s[:i])
			if i == 0 || s[i-1] != '.' {
				b.WriteByte('.')
			}
			b.WriteString(name)
			s = s[i+len(name):]
		}
		s = b.String()
	}
	return s
}
