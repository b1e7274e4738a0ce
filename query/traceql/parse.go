package traceql

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

type parser struct {
	src   string
	pos   int
	depth int // of parentheses, braces and negations around pos
	parts int // spanset filters and pipeline stages so far
}

// MaxParts bounds the spanset filters and pipeline stages of a query: each
// is a pass over a trace's spans.
const MaxParts = 512

func (p *parser) part() error {
	if p.parts++; p.parts > MaxParts {
		return p.errf("too many spanset filters and pipeline stages (at most %d)", MaxParts)
	}
	return nil
}

func (p *parser) errf(format string, a ...any) error {
	return fmt.Errorf("%w: parse error at col %d: %s", ErrParse, p.pos+1, fmt.Sprintf(format, a...))
}

// unsupported refuses a part of TraceQL that Lumen does not evaluate.
func (p *parser) unsupported(at int, format string, a ...any) error {
	return fmt.Errorf("%w: %w at col %d: %s", ErrParse, ErrUnsupported, at+1, fmt.Sprintf(format, a...))
}

func (p *parser) space() {
	for p.pos < len(p.src) && unicode.IsSpace(rune(p.src[p.pos])) {
		p.pos++
	}
}

func (p *parser) peek(s string) bool {
	p.space()
	return strings.HasPrefix(p.src[p.pos:], s)
}

func (p *parser) eat(s string) bool {
	if p.peek(s) {
		p.pos += len(s)
		return true
	}
	return false
}

func (p *parser) enter() error {
	if p.depth++; p.depth > MaxDepth {
		return fmt.Errorf("%w: parse error at col %d: parentheses %w (at most %d)", ErrParse, p.pos, ErrTooDeep, MaxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// word reads an identifier (letters, digits, _) at pos, without moving.
func (p *parser) word() string {
	p.space()
	end := p.pos
	for end < len(p.src) && isIdent(p.src[end]) {
		end++
	}
	return p.src[p.pos:end]
}

// pipeline := set ( "|" stage )*
func (p *parser) pipeline() (pipeline, error) {
	first, err := p.setOr()
	if err != nil {
		return nil, err
	}
	pl := pipeline{first}
	for {
		p.space()
		if !strings.HasPrefix(p.src[p.pos:], "|") || strings.HasPrefix(p.src[p.pos:], "||") {
			return pl, nil
		}
		p.pos++
		e, err := p.stage()
		if err != nil {
			return nil, err
		}
		pl = append(pl, e)
	}
}

// metricsFunctions are TraceQL metrics' functions, which /api/search does
// not answer (Tempo answers them on /api/metrics/query_range).
var metricsFunctions = map[string]bool{"rate": true, "count_over_time": true, "min_over_time": true, "max_over_time": true,
	"avg_over_time": true, "sum_over_time": true, "quantile_over_time": true, "histogram_over_time": true, "compare": true,
	"topk": true, "bottomk": true}

func (p *parser) stage() (element, error) {
	if err := p.part(); err != nil {
		return nil, err
	}
	p.space()
	if p.peek("{") || p.peek("(") {
		return p.setOr()
	}
	at := p.pos
	w := p.word()
	switch {
	case w == "":
		return nil, p.errf("expected a pipeline stage after |: a spanset filter { … }, count() > n, avg(duration) > 1s, by(…), select(…) or coalesce()")
	case metricsFunctions[w]:
		return nil, p.unsupported(at, "the metrics function %s() is not supported: Lumen answers TraceQL searches, not TraceQL metrics", w)
	case w == "count" || w == "avg" || w == "min" || w == "max" || w == "sum":
		return p.aggregate(w)
	case w == "by":
		p.pos += len(w)
		attrs, err := p.attrList(w)
		if err != nil {
			return nil, err
		}
		if len(attrs) != 1 {
			return nil, p.unsupported(at, "by() with %d attributes is not supported: group by one", len(attrs))
		}
		return &groupBy{attrs[0]}, nil
	case w == "select":
		p.pos += len(w)
		attrs, err := p.attrList(w)
		if err != nil {
			return nil, err
		}
		return &selectAttrs{attrs}, nil
	case w == "coalesce":
		p.pos += len(w)
		if !p.eat("(") || !p.eat(")") {
			return nil, p.errf("expected coalesce()")
		}
		return coalesce{}, nil
	}
	return nil, p.unsupported(at, "the pipeline stage %q is not supported (supported: { … }, count(), avg(), min(), max(), sum() compared with a value, by(), select(), coalesce())", w)
}

// attrList reads "(" attr { "," attr } ")".
func (p *parser) attrList(fn string) ([]*Attr, error) {
	if !p.eat("(") {
		return nil, p.errf("expected ( after %s", fn)
	}
	var out []*Attr
	for {
		p.space()
		at := p.pos
		o, err := p.operand()
		if err != nil {
			return nil, err
		}
		a, ok := o.(*Attr)
		if !ok {
			p.pos = at
			return nil, p.errf("%s() takes attributes, not %s", fn, o)
		}
		out = append(out, a)
		if p.eat(")") {
			return out, nil
		}
		if !p.eat(",") {
			p.space()
			if strings.ContainsRune("+-*/%^", rune(p.peekByte())) {
				return nil, p.unsupported(p.pos, "arithmetic in %s() is not supported", fn)
			}
			return nil, p.errf("expected , or ) in %s()", fn)
		}
	}
}

func (p *parser) peekByte() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

// aggregate := fn "(" [attr] ")" op literal
func (p *parser) aggregate(fn string) (element, error) {
	p.pos += len(fn)
	if !p.eat("(") {
		return nil, p.errf("expected ( after %s", fn)
	}
	a := &aggregate{fn: fn}
	if fn != "count" {
		p.space()
		at := p.pos
		o, err := p.operand()
		if err != nil {
			return nil, err
		}
		if a.x, _ = o.(*Attr); a.x == nil {
			p.pos = at
			return nil, p.errf("%s() takes an attribute, such as %s(duration)", fn, fn)
		}
	}
	if !p.eat(")") {
		if fn == "count" {
			return nil, p.errf("count() takes no argument")
		}
		return nil, p.errf("expected ) after %s(%s", fn, a.x)
	}
	p.space()
	at := p.pos
	for _, op := range []string{"!=", ">=", "<=", "=", ">", "<"} {
		if p.eat(op) {
			a.op = op
			break
		}
	}
	if a.op == "" {
		if p.pos >= len(p.src) || p.peek("|") || p.peek(")") {
			return nil, p.unsupported(at, "%s as a stage of its own is not supported: compare it, as in %s > 2", a.key(), a.key())
		}
		return nil, p.errf("expected a comparison (=, !=, >, >=, <, <=) after %s", a.key())
	}
	p.space()
	vstart := p.pos
	o, err := p.operand()
	if err != nil {
		return nil, err
	}
	lit, ok := o.(static)
	if !ok || !lit.v.numeric() {
		p.pos = vstart
		return nil, p.errf("%s compares with a number or a duration", a.key())
	}
	a.lit = lit.v
	return a, nil
}

// setOr := setAnd ( "||" setAnd )*
func (p *parser) setOr() (element, error) {
	l, err := p.setAnd()
	if err != nil {
		return nil, err
	}
	for p.eat("||") {
		r, err := p.setAnd()
		if err != nil {
			return nil, err
		}
		l = &setOp{op: "||", l: l, r: r}
	}
	return l, nil
}

// setAnd := setRel ( "&&" setRel )*
func (p *parser) setAnd() (element, error) {
	l, err := p.setRel()
	if err != nil {
		return nil, err
	}
	for p.eat("&&") {
		r, err := p.setRel()
		if err != nil {
			return nil, err
		}
		l = &setOp{op: "&&", l: l, r: r}
	}
	return l, nil
}

// setRel := setPrimary ( structural setPrimary )*
func (p *parser) setRel() (element, error) {
	l, err := p.setPrimary()
	if err != nil {
		return nil, err
	}
	for {
		op := ""
		p.space()
		for _, s := range structural {
			if strings.HasPrefix(p.src[p.pos:], s) {
				op = s
				break
			}
		}
		if op == "" {
			return l, nil
		}
		p.pos += len(op)
		r, err := p.setPrimary()
		if err != nil {
			return nil, err
		}
		l = &setOp{op: op, l: l, r: r}
	}
}

// setPrimary := "{" [cond] "}" | "(" pipeline ")"
func (p *parser) setPrimary() (element, error) {
	p.space()
	switch {
	case p.eat("{"):
		if err := p.part(); err != nil {
			return nil, err
		}
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		f := &filter{}
		if p.eat("}") {
			return f, nil
		}
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.eat("}") {
			return nil, p.errf("expected && , || or }")
		}
		f.cond = e
		return f, nil
	case p.eat("("):
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		pl, err := p.pipeline()
		if err != nil {
			return nil, err
		}
		if !p.eat(")") {
			return nil, p.errf("expected )")
		}
		if len(pl) == 1 {
			return pl[0], nil
		}
		return pl, nil
	}
	if p.pos == 0 {
		return nil, p.errf("a query starts with {, as in { resource.service.name = \"api\" }")
	}
	return nil, p.errf("expected a spanset filter { … }")
}

// Conditions inside { }:
//
//	or    := and ( "||" and )*
//	and   := unary ( "&&" unary )*
//	unary := "!" unary | "(" or ")" | operand [ op operand ]
func (p *parser) or() (Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.eat("||") {
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = Or{l, r}
	}
	return l, nil
}

func (p *parser) and() (Expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.eat("&&") {
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = And{l, r}
	}
	return l, nil
}

func (p *parser) unary() (Expr, error) {
	p.space()
	if p.peek("!") && !p.peek("!=") && !p.peek("!~") {
		p.pos++
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return Not{x}, nil
	}
	if p.eat("(") {
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.eat(")") {
			return nil, p.errf("expected )")
		}
		if p.cmpOp() != "" {
			return nil, p.unsupported(p.pos, "comparing a parenthesized expression is not supported")
		}
		return e, nil
	}
	return p.comparison()
}

var cmpOps = []string{"=~", "!~", "!=", ">=", "<=", "=", ">", "<"}

// cmpOp reports the comparison operator at pos, without moving.
func (p *parser) cmpOp() string {
	p.space()
	for _, op := range cmpOps {
		if strings.HasPrefix(p.src[p.pos:], op) {
			return op
		}
	}
	return ""
}

func (p *parser) comparison() (Expr, error) {
	start := p.pos
	l, err := p.operand()
	if err != nil {
		return nil, err
	}
	op := p.cmpOp()
	if op == "" {
		p.space()
		if b := p.peekByte(); b != 0 && strings.IndexByte("+-*/%^", b) >= 0 {
			return nil, p.unsupported(p.pos, "arithmetic (%c) is not supported", b)
		}
		if st, ok := l.(static); ok && st.v.Type != TypeBool {
			p.pos = start
			return nil, p.errf("expected a condition, not the value %s", st.text)
		}
		return truth{l}, nil
	}
	p.pos += len(op)
	p.space()
	vstart := p.pos
	r, err := p.operand()
	if a, ok := l.(*Attr); ok && err != nil && a.Scope == ScopeIntrinsic && (a.Name == "duration" || a.Name == "traceDuration") {
		p.pos = vstart
		return nil, p.errf("%s compares with a duration, such as 100ms", a.text)
	}
	if err != nil {
		return nil, err
	}
	if b := p.peekByteAfterSpace(); b != 0 && strings.IndexByte("+-*/%^", b) >= 0 {
		return nil, p.unsupported(p.pos, "arithmetic (%c) is not supported", b)
	}
	c := &Cond{L: l, R: r, Op: op}
	if a, ok := l.(*Attr); ok && a.Scope == ScopeIntrinsic && (a.Name == "duration" || a.Name == "traceDuration") {
		if st, ok := r.(static); !ok || (st.v.Type != TypeDuration && st.v.Type != TypeNil) {
			p.pos = vstart
			return nil, p.errf("%s compares with a duration, such as 100ms", a.text)
		}
	}
	if op == "=~" || op == "!~" {
		st, ok := r.(static)
		if !ok || st.v.Type != TypeString {
			p.pos = vstart
			return nil, p.errf("%s needs a string regular expression", op)
		}
		re, err := regexp.Compile("^(?:" + st.v.S + ")$")
		if err != nil {
			p.pos = vstart
			return nil, p.errf("invalid regexp %q: %v", st.v.S, err)
		}
		c.re = re
	}
	return c, nil
}

func (p *parser) peekByteAfterSpace() byte {
	p.space()
	return p.peekByte()
}

// scopes are the attribute prefixes.
var scopes = []struct{ prefix, scope string }{
	{"span.", ScopeSpan}, {"resource.", ScopeResource}, {"event.", ScopeEvent}, {"link.", ScopeLink},
	{"instrumentation.", ScopeInstrumentation}, {".", ScopeAny},
}

// keywords are the literals written as bare words.
var keywords = map[string]Value{
	"true": {Type: TypeBool, B: true}, "false": {Type: TypeBool}, "nil": {Type: TypeNil},
	"error": {Type: TypeStatus, S: "error"}, "ok": {Type: TypeStatus, S: "ok"}, "unset": {Type: TypeStatus, S: "unset"},
	"unspecified": {Type: TypeKind, S: "unspecified"}, "internal": {Type: TypeKind, S: "internal"},
	"server": {Type: TypeKind, S: "server"}, "client": {Type: TypeKind, S: "client"},
	"producer": {Type: TypeKind, S: "producer"}, "consumer": {Type: TypeKind, S: "consumer"},
}

// operand := string | number | duration | keyword | attribute
func (p *parser) operand() (operand, error) {
	p.space()
	start := p.pos
	if p.pos >= len(p.src) {
		return nil, p.errf("expected a value")
	}
	if q := p.src[p.pos]; q == '"' || q == '`' {
		s, err := p.quoted()
		if err != nil {
			return nil, err
		}
		return static{Value{Type: TypeString, S: s}, p.src[start:p.pos]}, nil
	}
	for _, sc := range scopes {
		if strings.HasPrefix(p.src[p.pos:], sc.prefix) && (sc.scope != ScopeAny || p.pos+1 < len(p.src) && !isDigit(p.src[p.pos+1])) {
			return p.attribute(start, sc.prefix, sc.scope)
		}
	}
	if strings.HasPrefix(p.src[p.pos:], "parent.") {
		return nil, p.unsupported(start, "the parent. scope is not supported")
	}
	end := p.pos
	for end < len(p.src) && (isNameByte(p.src[end]) || p.src[end] == ':') {
		end++
	}
	tok := p.src[p.pos:end]
	if tok == "" {
		return nil, p.errf("expected a value")
	}
	if name, ok := intrinsics[tok]; ok {
		p.pos = end
		return &Attr{Scope: ScopeIntrinsic, Name: name, text: tok}, nil
	}
	if v, ok := keywords[tok]; ok {
		p.pos = end
		return static{v, tok}, nil
	}
	if v, ok := number(tok); ok {
		p.pos = end
		return static{v, tok}, nil
	}
	if i := strings.IndexByte(tok, ':'); i > 0 {
		return nil, p.unsupported(start, "the intrinsic %q is not supported", tok)
	}
	return nil, p.errf("unknown attribute %q: use resource.%s, span.%s or .%s, or an intrinsic such as name, status, kind, duration", tok, tok, tok, tok)
}

// number reads an int, a float or a duration.
func number(tok string) (Value, bool) {
	if n, err := strconv.ParseInt(tok, 10, 64); err == nil {
		return Value{Type: TypeInt, N: n}, true
	}
	if f, err := strconv.ParseFloat(tok, 64); err == nil {
		return Value{Type: TypeFloat, F: f}, true
	}
	if d, err := time.ParseDuration(tok); err == nil {
		return Value{Type: TypeDuration, D: d}, true
	}
	return Value{}, false
}

// attribute reads a scoped attribute: prefix then a name, or a quoted
// name (span."with spaces").
func (p *parser) attribute(start int, prefix, scope string) (operand, error) {
	p.pos += len(prefix)
	var name string
	if p.pos < len(p.src) && p.src[p.pos] == '"' {
		s, err := p.quoted()
		if err != nil {
			return nil, err
		}
		name = s
	} else {
		end := p.pos
		for end < len(p.src) && (isNameByte(p.src[end]) || p.src[end] == '.' || p.src[end] == ':') {
			end++
		}
		name = p.src[p.pos:end]
		p.pos = end
	}
	if name == "" {
		p.pos = start
		return nil, p.errf("attribute name missing after %q", prefix)
	}
	return &Attr{Scope: scope, Name: name, text: p.src[start:p.pos]}, nil
}

// quoted reads a "string" (Go escapes) or a `raw string` at pos.
func (p *parser) quoted() (string, error) {
	q := p.src[p.pos]
	end := p.pos + 1
	for end < len(p.src) && p.src[end] != q {
		if p.src[end] == '\\' && q == '"' {
			end++
		}
		end++
	}
	if end >= len(p.src) {
		return "", p.errf("string not terminated")
	}
	raw := p.src[p.pos : end+1]
	if q == '`' {
		p.pos = end + 1
		return raw[1 : len(raw)-1], nil
	}
	s, err := strconv.Unquote(raw)
	if err != nil {
		return "", p.errf("invalid string %s", raw)
	}
	p.pos = end + 1
	return s, nil
}

// hints reads with(key=value, …) at the end of a query: Tempo's query
// hints, which tune how Tempo runs a query, not its answer; Lumen accepts
// and ignores them.
func (p *parser) hints() error {
	if p.word() != "with" {
		return nil
	}
	p.pos += len("with")
	if !p.eat("(") {
		return p.errf("expected ( after with")
	}
	for !p.eat(")") {
		if p.pos >= len(p.src) {
			return p.errf("expected ) after the hints")
		}
		p.pos++
	}
	return nil
}

func isIdent(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isNameByte: what an attribute name or a literal is made of (besides
// '.' and ':'), UTF-8 included.
func isNameByte(c byte) bool {
	return isIdent(c) || c == '-' || c == '/' || c == '.' || c >= 0x80
}
