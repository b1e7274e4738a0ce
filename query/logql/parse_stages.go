package logql

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// The pipeline stages' grammar, as Loki's: stage() in parse.go dispatches
// here.

// stageKeywords are the words Loki's lexer reads as keywords, whatever
// their case: none can be a label name in a label filter. (Function names,
// ip among them, are keywords only before a parenthesis.)
var stageKeywords = map[string]bool{
	"json": true, "logfmt": true, "regexp": true, "unpack": true, "pattern": true,
	"line_format": true, "label_format": true, "decolorize": true, "drop": true, "keep": true,
	"unwrap": true, "or": true, "and": true, "unless": true, "by": true,
	"without": true, "bool": true, "offset": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "variants": true, "of": true,
}

// ahead returns the token n after the current one (the end of the query
// past it).
func (p *parser) ahead(n int) token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}

func isWord(t token, w string) bool { return t.kind == tIdent && strings.EqualFold(t.text, w) }

// lineFilterOp returns the operator of a line filter at the current token
// (|=, !=, |~, !~, |>) and how many tokens it takes.
func (p *parser) lineFilterOp() (string, int) {
	t := p.peek()
	switch t.kind {
	case tPipeExact:
		return "|=", 1
	case tNeq:
		return "!=", 1
	case tPipeMatch:
		return "|~", 1
	case tNre:
		return "!~", 1
	case tNpa:
		return "!>", 1
	case tPipe:
		if n := p.ahead(1); n.kind == tGt && n.pos == t.pos+1 {
			return "|>", 2
		}
	}
	return "", 0
}

// lineFilter parses a line filter: an operator, then values joined by or;
// a value is a string or ip("…").
func (p *parser) lineFilter(op string, n int) (*LineFilter, error) {
	for range n {
		p.take()
	}
	f := &LineFilter{Op: op}
	var (
		ips  []bool
		toks []token
	)
	for {
		ip := false
		if isWord(p.peek(), "ip") && p.ahead(1).kind == tLParen {
			p.take()
			p.take()
			ip = true
		}
		v, err := p.expect(tString, "a quoted string after the line filter")
		if err != nil {
			return nil, err
		}
		if ip {
			if _, err := p.expect(tRParen, `")"`); err != nil {
				return nil, err
			}
		}
		f.Values, ips, toks = append(f.Values, v.text), append(ips, ip), append(toks, v)
		if next := p.ahead(1); !isWord(p.peek(), "or") || next.kind != tString && !isWord(next, "ip") {
			break
		}
		p.take()
	}
	// Loki reads ip("…") as an address range alone or in a chain of
	// negated filters; in an or chain of |=, |~ or |>, as a plain value.
	for i, v := range f.Values {
		asIP := ips[i] && (f.negated() || len(f.Values) == 1)
		if asIP && op != "|=" && op != "!=" {
			return nil, p.errAt(toks[i], "ip: invalid operation: ip(…) goes with |= and != only")
		}
		m, err := newLineMatcher(op, v, asIP)
		if err != nil {
			return nil, p.errAt(toks[i], "invalid regexp %q: %v", v, err)
		}
		f.ms = append(f.ms, m)
	}
	return f, nil
}

// stageAfterPipe parses the stage after a |.
func (p *parser) stageAfterPipe() (Stage, error) {
	n := p.peek()
	if n.kind == tLParen {
		return p.labelFilter()
	}
	if n.kind != tIdent {
		return nil, p.errAt(n, "unexpected %s after |, expected a parser, a formatter, drop, keep or a label filter", n)
	}
	switch strings.ToLower(n.text) {
	case "json":
		p.take()
		exprs, err := p.labelExprs(true)
		if err != nil {
			return nil, err
		}
		return &JSONParser{Exprs: exprs}, nil
	case "logfmt":
		p.take()
		lf := &LogfmtParser{}
		for {
			flag, ok := p.flag()
			if !ok {
				break
			}
			switch flag {
			case "--strict":
				lf.Strict = true
			case "--keep-empty":
				lf.KeepEmpty = true
			}
		}
		exprs, err := p.labelExprs(false)
		if err != nil {
			return nil, err
		}
		lf.Exprs = exprs
		return lf, nil
	case "regexp":
		p.take()
		s, err := p.expect(tString, "a quoted regexp after regexp")
		if err != nil {
			return nil, err
		}
		rp, err := newRegexpParser(s.text)
		if err != nil {
			return nil, p.errAt(s, "invalid regexp parser: %v", err)
		}
		return rp, nil
	case "pattern":
		p.take()
		s, err := p.expect(tString, "a quoted pattern after pattern")
		if err != nil {
			return nil, err
		}
		nodes, err := parsePattern(s.text)
		if err == nil {
			err = checkPattern(nodes)
		}
		if err != nil {
			return nil, p.errAt(s, "invalid pattern parser: %v", err)
		}
		return &PatternParser{Pattern: s.text, nodes: nodes, names: patternNames(nodes)}, nil
	case "unpack":
		p.take()
		return &UnpackParser{}, nil
	case "decolorize":
		p.take()
		return &Decolorize{}, nil
	case "line_format":
		p.take()
		s, err := p.expect(tString, "a quoted template after line_format")
		if err != nil {
			return nil, err
		}
		t, err := newTemplate("line", s.text)
		if err != nil {
			return nil, p.errAt(s, "invalid line template: %v", err)
		}
		return &LineFormat{Src: s.text, t: t, simple: t.simpleKey()}, nil
	case "label_format":
		p.take()
		return p.labelFormat()
	case "drop", "keep":
		p.take()
		names, err := p.labelNames(strings.ToLower(n.text))
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(n.text, "drop") {
			return &DropLabels{Labels: names}, nil
		}
		return &KeepLabels{Labels: names}, nil
	case "or", "and", "unless", "by", "without", "bool", "offset", "on", "ignoring", "group_left", "group_right", "variants", "of":
		return nil, p.errAt(n, "unexpected %q after |, expected a parser, a formatter, drop, keep or a label filter", n.text)
	}
	return p.labelFilter()
}

// flag reads a parser flag (--strict, --keep-empty) at the current token.
func (p *parser) flag() (string, bool) {
	t := p.peek()
	if t.kind != tSub || !strings.HasPrefix(p.src[t.pos:], "--") {
		return "", false
	}
	end := t.pos + 2
	for end < len(p.src) && (isLetter(p.src[end]) || p.src[end] == '-') {
		end++
	}
	flag := p.src[t.pos:end]
	if flag != "--strict" && flag != "--keep-empty" {
		return "", false
	}
	for p.peek().kind != tEOF && p.peek().pos < end {
		p.take()
	}
	return flag, true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// labelExprs parses json's or logfmt's parameters: name="expression" or
// name, comma separated; none when no name follows.
func (p *parser) labelExprs(json bool) ([]LabelExpr, error) {
	var out []LabelExpr
	for {
		t := p.peek()
		if t.kind != tIdent || stageKeywords[strings.ToLower(t.text)] {
			if len(out) > 0 {
				return nil, p.errAt(t, "unexpected %s, expected a label name", t)
			}
			return nil, nil
		}
		p.take()
		e := LabelExpr{Name: t.text, Expr: t.text}
		if p.peek().kind == tEq {
			p.take()
			s, err := p.expect(tString, "a quoted expression")
			if err != nil {
				return nil, err
			}
			e.Expr = s.text
		}
		if json {
			path, err := parseJSONPath(e.Expr)
			if err != nil {
				return nil, p.errAt(t, "cannot parse expression [%s]: %v", e.Expr, err)
			}
			e.path = path
		} else {
			key, err := parseLogfmtExpr(e.Expr)
			if err != nil {
				return nil, p.errAt(t, "cannot parse expression [%s]: %v", e.Expr, err)
			}
			e.Expr = key
		}
		out = append(out, e)
		if p.peek().kind != tComma {
			return out, nil
		}
		p.take()
	}
}

// parseLogfmtExpr reads a logfmt parameter's key: a name, or a quoted
// string.
func parseLogfmtExpr(s string) (string, error) {
	s = strings.Trim(s, " \t\n")
	if s == "" {
		return "", fmt.Errorf("syntax error: unexpected $end")
	}
	if s[0] == '"' {
		end := strings.IndexAny(s[1:], `"]`)
		if end < 0 {
			return s[1:], nil
		}
		if strings.TrimSpace(s[end+2:]) != "" {
			return "", fmt.Errorf("syntax error: unexpected STRING")
		}
		return s[1 : end+1], nil
	}
	if !isIdentStart(s[0]) {
		return "", fmt.Errorf("unexpected char %c", s[0])
	}
	i := 1
	for i < len(s) && isIdentPart(s[i]) {
		i++
	}
	if i < len(s) {
		return "", fmt.Errorf("syntax error: unexpected KEY")
	}
	return s, nil
}

func newRegexpParser(expr string) (*RegexpParser, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	if re.NumSubexp() == 0 {
		return nil, fmt.Errorf("at least one named capture must be supplied")
	}
	names := map[int]string{}
	seen := map[string]bool{}
	for i, n := range re.SubexpNames() {
		if n == "" {
			continue
		}
		if seen[n] {
			return nil, fmt.Errorf("duplicate extracted label name '%s'", n)
		}
		seen[n] = true
		if s := SanitizeKey(n); s != "" {
			names[i] = s
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("at least one named capture must be supplied")
	}
	return &RegexpParser{Regexp: expr, re: re, names: names}, nil
}

// labelFormat parses label_format's list: a=b renames, a="…" formats.
func (p *parser) labelFormat() (Stage, error) {
	f := &LabelFormat{}
	seen := map[string]bool{}
	for {
		n, err := p.expect(tIdent, "a label name")
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tEq, `"="`); err != nil {
			return nil, err
		}
		v := p.take()
		l := LabelFmt{Name: n.text}
		switch v.kind {
		case tIdent:
			l.Value, l.Rename = v.text, true
		case tString:
			l.Value = v.text
			t, err := newTemplate("label", v.text)
			if err != nil {
				return nil, p.errAt(v, "invalid template for label '%s': %v", n.text, err)
			}
			l.t = t
		default:
			return nil, p.errAt(v, "unexpected %s, expected a label name or a quoted template", v)
		}
		if n.text == errorLabel {
			return nil, p.errAt(n, "%s cannot be formatted", n.text)
		}
		if seen[n.text] {
			return nil, p.errAt(n, "multiple label name '%s' not allowed in a single format operation", n.text)
		}
		seen[n.text] = true
		f.Fmts = append(f.Fmts, l)
		if p.peek().kind != tComma {
			return f, nil
		}
		p.take()
	}
}

// labelNames parses drop's or keep's list: names, or name="value"
// matchers, comma separated.
func (p *parser) labelNames(what string) ([]LabelName, error) {
	var out []LabelName
	for {
		n, err := p.expect(tIdent, "a label name after "+what)
		if err != nil {
			return nil, err
		}
		switch p.peek().kind {
		case tEq, tNeq, tRe, tNre:
			p.i--
			m, err := p.matcher()
			if err != nil {
				return nil, err
			}
			out = append(out, LabelName{M: m})
		default:
			out = append(out, LabelName{Name: n.text})
		}
		if p.peek().kind != tComma {
			return out, nil
		}
		p.take()
	}
}

// labelFilter parses a label filter stage.
func (p *parser) labelFilter() (Stage, error) {
	pred, err := p.predOr()
	if err != nil {
		return nil, err
	}
	return &LabelFilter{Pred: pred}, nil
}

// startsFilter reports whether t starts another label filter, which
// juxtaposed means "and".
func startsFilter(t token) bool {
	return t.kind == tLParen || t.kind == tIdent && !stageKeywords[strings.ToLower(t.text)]
}

// predOr parses a label filter expression with Loki's precedence: "and"
// binds tighter than "or"; a comma or a juxtaposed filter joins the
// filter before it with everything after it ("a or b, c or d" is
// "a or (b and (c or d))").
func (p *parser) predOr() (Pred, error) {
	// Segments split at commas and juxtapositions, each a list of atoms
	// joined by and/or; built from the right.
	type segment struct {
		atoms []Pred
		ors   []bool // ors[i]: the operator before atoms[i+1] is "or"
	}
	var segs []segment
	cur := segment{}
	for {
		a, err := p.predAtom()
		if err != nil {
			return nil, err
		}
		cur.atoms = append(cur.atoms, a)
		t := p.peek()
		switch {
		case isWord(t, "or"):
			p.take()
			cur.ors = append(cur.ors, true)
			continue
		case isWord(t, "and"):
			p.take()
			cur.ors = append(cur.ors, false)
			continue
		case t.kind == tComma:
			p.take()
		case startsFilter(t):
		default:
			segs = append(segs, cur)
			var rest Pred
			for i := len(segs) - 1; i >= 0; i-- {
				s := segs[i]
				if rest != nil {
					last := len(s.atoms) - 1
					s.atoms = append(s.atoms[:last:last], And{s.atoms[last], rest})
				}
				rest = andOr(s.atoms, s.ors)
			}
			return rest, nil
		}
		segs = append(segs, cur)
		cur = segment{}
	}
}

// andOr joins atoms with and/or, and first.
func andOr(atoms []Pred, ors []bool) Pred {
	var or Pred
	and := atoms[0]
	for i, isOr := range ors {
		if !isOr {
			and = And{and, atoms[i+1]}
			continue
		}
		if or == nil {
			or = and
		} else {
			or = Or{or, and}
		}
		and = atoms[i+1]
	}
	if or == nil {
		return and
	}
	return Or{or, and}
}

// predAtom parses one comparison or a parenthesised filter.
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
	if t.kind != tIdent || stageKeywords[strings.ToLower(t.text)] {
		return nil, p.errAt(t, "unexpected %s, expected a label name", t)
	}
	name := p.take()
	op := p.take()
	val := p.peek()
	switch op.kind {
	case tEq, tNeq:
		if isWord(val, "ip") && p.ahead(1).kind == tLParen {
			p.take()
			p.take()
			s, err := p.expect(tString, "a quoted address range in ip()")
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(tRParen, `")"`); err != nil {
				return nil, err
			}
			r, err := parseIPRange(s.text)
			if err != nil {
				return nil, p.errAt(s, "%v", err)
			}
			return &IPMatch{Name: name.text, Not: op.kind == tNeq, Pattern: s.text, ip: r}, nil
		}
		fallthrough
	case tRe, tNre:
		if val.kind == tString {
			p.take()
			return p.stringMatch(name, op, val)
		}
		if op.kind == tRe || op.kind == tNre {
			return nil, p.errAt(val, "unexpected %s, expected a quoted regexp", val)
		}
	case tEqEq, tGt, tGte, tLt, tLte:
	default:
		return nil, p.errAt(op, "unexpected %s after label %q, expected a comparison (=, !=, =~, !~, ==, >, >=, <, <=)", op, name.text)
	}
	m := &NumberMatch{Name: name.text, Op: op.kind}
	if m.Op == tEq {
		m.Op = tEqEq
	}
	if val.kind == tAdd && p.ahead(1).kind == tNumber {
		p.take()
		val = p.peek()
	}
	p.take()
	m.Kind = val.kind
	switch val.kind {
	case tNumber:
		v, err := strconv.ParseFloat(val.text, 64)
		if err != nil {
			return nil, p.errAt(val, "invalid number %q: %v", val.text, err)
		}
		m.Value = v
	case tDuration:
		d, err := lokiDuration(val.text)
		if err != nil {
			return nil, p.errAt(val, "invalid duration %q: %v", val.text, err)
		}
		m.dur, m.Value = d, d.Seconds()
	case tBytes:
		b, err := humanize.ParseBytes(val.text)
		if err != nil {
			return nil, p.errAt(val, "invalid byte size %q: %v", val.text, err)
		}
		m.bytes, m.Value = b, float64(b)
	default:
		return nil, p.errAt(val, "unexpected %s, expected a number, a duration or a byte size", val)
	}
	return m, nil
}

func (p *parser) stringMatch(name, op, val token) (Pred, error) {
	mt := map[tokKind]labels.MatchType{tEq: labels.MatchEqual, tNeq: labels.MatchNotEqual, tRe: labels.MatchRegexp, tNre: labels.MatchNotRegexp}[op.kind]
	m, err := labels.NewMatcher(mt, name.text, val.text)
	if err != nil {
		return nil, p.errAt(val, "invalid regexp %q: %v", val.text, err)
	}
	f, err := newStrFilter(m)
	if err != nil {
		return nil, p.errAt(val, "invalid regexp %q: %v", val.text, err)
	}
	return StringMatch{M: m, f: f}, nil
}

// lokiDuration reads a duration in a query as Loki does: Prometheus'
// form first (1d, 1w), then Go's (1.5s).
func lokiDuration(s string) (time.Duration, error) {
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return time.ParseDuration(s)
}

// parseSimplified parses a regexp as Loki's filters do, simplified.
func parseSimplified(expr string) (*syntax.Regexp, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, err
	}
	return re.Simplify(), nil
}
