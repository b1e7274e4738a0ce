// Package traceql parses the subset of TraceQL that Grafana's Tempo data
// source writes for searches — one spanset filter,
// { resource.service.name = "x" && duration > 100ms && status = error && span.http.route = "/y" },
// with &&, ||, parentheses, attribute comparisons and the intrinsics
// name, status, kind and duration — and evaluates it on spans. Tempo's
// TraceQL is in its AGPL module, so the grammar is written here from
// Tempo's documentation.
package traceql

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// ErrParse marks a query that does not parse.
var ErrParse = errors.New("traceql")

// MaxDepth bounds how deeply a filter may nest parentheses, so that no
// query can exhaust the parser's stack (a Go stack overflow ends the
// process).
const MaxDepth = 128

// ErrTooDeep marks a filter nested deeper than MaxDepth; the errors that
// wrap it wrap ErrParse too.
var ErrTooDeep = errors.New("nested too deeply")

// Query is a parsed spanset filter.
type Query struct {
	Root Expr // nil: every span ({})
}

// Expr is a condition on one span and its resource.
type Expr interface {
	Match(res pcommon.Resource, sp ptrace.Span) bool
}

// And holds when both sides do.
type And struct{ L, R Expr }

// Or holds when either side does.
type Or struct{ L, R Expr }

// Cond compares one attribute or intrinsic with a value.
type Cond struct {
	Scope string // "resource", "span", "" (either) or "intrinsic"
	Name  string // attribute key, or name/status/kind/duration
	Op    string // = != > >= < <= =~ !~
	Str   string
	Num   float64
	IsNum bool
	Dur   time.Duration
	IsDur bool
	re    *regexp.Regexp
}

func (e And) Match(res pcommon.Resource, sp ptrace.Span) bool {
	return e.L.Match(res, sp) && e.R.Match(res, sp)
}
func (e Or) Match(res pcommon.Resource, sp ptrace.Span) bool {
	return e.L.Match(res, sp) || e.R.Match(res, sp)
}

// Match evaluates the condition on a span.
func (c *Cond) Match(res pcommon.Resource, sp ptrace.Span) bool {
	if c.Scope == "intrinsic" {
		switch c.Name {
		case "name":
			return c.cmpStr(sp.Name())
		case "status":
			return c.cmpStr(map[ptrace.StatusCode]string{ptrace.StatusCodeError: "error", ptrace.StatusCodeOk: "ok", ptrace.StatusCodeUnset: "unset"}[sp.Status().Code()])
		case "kind":
			return c.cmpStr(strings.ToLower(strings.TrimPrefix(sp.Kind().String(), "SPAN_KIND_")))
		case "duration":
			d := time.Duration(sp.EndTimestamp()) - time.Duration(sp.StartTimestamp())
			return cmpOrdered(c.Op, float64(d), float64(c.Dur))
		}
		return false
	}
	var v pcommon.Value
	ok := false
	if c.Scope == "span" || c.Scope == "" {
		v, ok = sp.Attributes().Get(c.Name)
	}
	if !ok && (c.Scope == "resource" || c.Scope == "") {
		v, ok = res.Attributes().Get(c.Name)
	}
	if !ok {
		return c.Op == "!=" || c.Op == "!~"
	}
	switch {
	case c.IsNum:
		var f float64
		switch v.Type() {
		case pcommon.ValueTypeInt:
			f = float64(v.Int())
		case pcommon.ValueTypeDouble:
			f = v.Double()
		default:
			var err error
			if f, err = strconv.ParseFloat(v.AsString(), 64); err != nil {
				return false
			}
		}
		return cmpOrdered(c.Op, f, c.Num)
	case c.IsDur:
		d, err := time.ParseDuration(v.AsString())
		return err == nil && cmpOrdered(c.Op, float64(d), float64(c.Dur))
	}
	return c.cmpStr(v.AsString())
}

func (c *Cond) cmpStr(s string) bool {
	switch c.Op {
	case "=":
		return s == c.Str
	case "!=":
		return s != c.Str
	case "=~":
		return c.re.MatchString(s)
	case "!~":
		return !c.re.MatchString(s)
	}
	return cmpOrdered(c.Op, float64(strings.Compare(s, c.Str)), 0)
}

func cmpOrdered(op string, a, b float64) bool {
	switch op {
	case "=":
		return a == b
	case "!=":
		return a != b
	case ">":
		return a > b
	case ">=":
		return a >= b
	case "<":
		return a < b
	case "<=":
		return a <= b
	}
	return false
}

// Match reports whether the query holds for the span.
func (q *Query) Match(res pcommon.Resource, sp ptrace.Span) bool {
	return q.Root == nil || q.Root.Match(res, sp)
}

// Conjuncts lists the conditions that every matching span meets: those
// joined by && at the top, for choosing an index.
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
	walk(q.Root)
	return out
}

type parser struct {
	src   string
	pos   int
	depth int // of parentheses around pos
}

// Parse parses a spanset filter; errors wrap ErrParse and name the column.
func Parse(src string) (*Query, error) {
	p := &parser{src: src}
	p.space()
	if !p.eat("{") {
		return nil, p.errf("a query starts with {, as in { resource.service.name = \"api\" }")
	}
	p.space()
	q := &Query{}
	if !p.eat("}") {
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		q.Root = e
		p.space()
		if !p.eat("}") {
			return nil, p.errf("expected && , || or }")
		}
	}
	p.space()
	if p.pos < len(p.src) {
		return nil, p.errf("only one spanset filter { … } is supported; pipelines, aggregates and structural operators are not")
	}
	return q, nil
}

func (p *parser) errf(format string, a ...any) error {
	return fmt.Errorf("%w: parse error at col %d: %s", ErrParse, p.pos+1, fmt.Sprintf(format, a...))
}

func (p *parser) space() {
	for p.pos < len(p.src) && unicode.IsSpace(rune(p.src[p.pos])) {
		p.pos++
	}
}

func (p *parser) eat(s string) bool {
	if strings.HasPrefix(p.src[p.pos:], s) {
		p.pos += len(s)
		return true
	}
	return false
}

func (p *parser) or() (Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for {
		p.space()
		if !p.eat("||") {
			return l, nil
		}
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = Or{l, r}
	}
}

func (p *parser) and() (Expr, error) {
	l, err := p.atom()
	if err != nil {
		return nil, err
	}
	for {
		p.space()
		if !p.eat("&&") {
			return l, nil
		}
		r, err := p.atom()
		if err != nil {
			return nil, err
		}
		l = And{l, r}
	}
}

func (p *parser) atom() (Expr, error) {
	p.space()
	if p.eat("(") {
		if p.depth++; p.depth > MaxDepth {
			return nil, fmt.Errorf("%w: parse error at col %d: parentheses %w (at most %d)", ErrParse, p.pos, ErrTooDeep, MaxDepth)
		}
		defer func() { p.depth-- }()
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		p.space()
		if !p.eat(")") {
			return nil, p.errf("expected )")
		}
		return e, nil
	}
	start := p.pos
	for p.pos < len(p.src) && (isIdent(p.src[p.pos]) || p.src[p.pos] == '.' || p.src[p.pos] == ':') {
		p.pos++
	}
	name := p.src[start:p.pos]
	if name == "" {
		return nil, p.errf("expected an attribute (resource.x, span.x, .x) or name, status, kind, duration")
	}
	c := &Cond{}
	switch {
	case strings.HasPrefix(name, "resource."):
		c.Scope, c.Name = "resource", name[len("resource."):]
	case strings.HasPrefix(name, "span."):
		c.Scope, c.Name = "span", name[len("span."):]
	case strings.HasPrefix(name, "."):
		c.Scope, c.Name = "", name[1:]
	case name == "name" || name == "status" || name == "kind" || name == "duration":
		c.Scope, c.Name = "intrinsic", name
	case strings.HasPrefix(name, "span:") && (name[5:] == "name" || name[5:] == "status" || name[5:] == "kind" || name[5:] == "duration"):
		c.Scope, c.Name = "intrinsic", name[5:]
	default:
		p.pos = start
		return nil, p.errf("unknown attribute %q: use resource.%s, span.%s or .%s, or one of name, status, kind, duration", name, name, name, name)
	}
	if c.Name == "" {
		p.pos = start
		return nil, p.errf("attribute name missing after %q", name)
	}
	p.space()
	for _, op := range []string{"=~", "!~", "!=", ">=", "<=", "=", ">", "<"} {
		if p.eat(op) {
			c.Op = op
			break
		}
	}
	if c.Op == "" {
		return nil, p.errf("expected a comparison (=, !=, >, >=, <, <=, =~, !~) after %s", name)
	}
	p.space()
	vstart := p.pos
	switch {
	case p.pos < len(p.src) && (p.src[p.pos] == '"' || p.src[p.pos] == '`'):
		q := p.src[p.pos]
		end := p.pos + 1
		for end < len(p.src) && p.src[end] != q {
			if p.src[end] == '\\' && q == '"' {
				end++
			}
			end++
		}
		if end >= len(p.src) {
			return nil, p.errf("string not terminated")
		}
		raw := p.src[p.pos : end+1]
		p.pos = end + 1
		if q == '`' {
			c.Str = raw[1 : len(raw)-1]
		} else {
			s, err := strconv.Unquote(raw)
			if err != nil {
				p.pos = vstart
				return nil, p.errf("invalid string %s", raw)
			}
			c.Str = s
		}
	default:
		for p.pos < len(p.src) && (isIdent(p.src[p.pos]) || p.src[p.pos] == '.' || p.src[p.pos] == '-') {
			p.pos++
		}
		tok := p.src[vstart:p.pos]
		if tok == "" {
			return nil, p.errf("expected a value after %s %s", name, c.Op)
		}
		if d, err := time.ParseDuration(tok); err == nil && !isNumber(tok) {
			c.Dur, c.IsDur = d, true
		} else if f, err := strconv.ParseFloat(tok, 64); err == nil {
			c.Num, c.IsNum = f, true
		} else {
			c.Str = tok // status and kind values, true/false
		}
	}
	if c.Scope == "intrinsic" && c.Name == "duration" {
		if !c.IsDur {
			p.pos = vstart
			return nil, p.errf("duration compares with a duration, such as 100ms")
		}
	}
	if c.Op == "=~" || c.Op == "!~" {
		re, err := regexp.Compile("^(?:" + c.Str + ")$")
		if err != nil {
			p.pos = vstart
			return nil, p.errf("invalid regexp %q: %v", c.Str, err)
		}
		c.re = re
	}
	return c, nil
}

func isIdent(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}
