package logql

import (
	"fmt"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// Expr is a parsed LogQL query: a *LogExpr (a log query) or a metric
// query (*RangeAgg, *VectorAgg, *BinOp, *Literal, *VectorLit,
// *LabelReplace; see metric.go).
type Expr interface{ String() string }

// LogExpr selects streams and runs their lines through a pipeline.
type LogExpr struct {
	Matchers []*labels.Matcher
	Stages   []Stage
	src      string
}

func (e *LogExpr) String() string { return e.src }

// Stage is one step of a pipeline: *LineFilter, *LabelFilter, a parser
// (*JSONParser, *LogfmtParser, *RegexpParser, *PatternParser,
// *UnpackParser), a formatter (*LineFormat, *LabelFormat), *DropLabels,
// *KeepLabels or *Decolorize (stages.go and the files it names).
type Stage interface{ stage() }

// IsLogQuery reports whether e returns log lines rather than samples.
func IsLogQuery(e Expr) bool { _, ok := e.(*LogExpr); return ok }

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

// stage parses one pipeline stage, if one follows (parse_stages.go). It
// stops before | unwrap, which belongs to the range aggregation.
func (p *parser) stage() (Stage, bool, error) {
	if op, n := p.lineFilterOp(); n > 0 {
		f, err := p.lineFilter(op, n)
		if err != nil {
			return nil, false, err
		}
		return f, true, nil
	}
	if p.peek().kind != tPipe || isWord(p.ahead(1), "unwrap") {
		return nil, false, nil
	}
	p.take()
	st, err := p.stageAfterPipe()
	if err != nil {
		return nil, false, err
	}
	return st, true, nil
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
