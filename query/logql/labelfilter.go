package logql

import (
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/prometheus/model/labels"
)

// Label filters, with Loki's semantics:
//   - a string matcher compares the label's value, "" when it is missing;
//     it is the only filter that reads __error__;
//   - a number, duration or byte-size comparison drops a line that lacks
//     the label, and keeps a line whose value does not parse, marked
//     __error__="LabelFilterErr" with the parse error in
//     __error_details__ (unless the line has an error already);
//   - ip("…") keeps a line whose label holds an address in a range, and
//     every line that has an error;
//   - "and" runs both sides; "or" runs its right side only when its left
//     side drops the line.

// LabelFilter keeps lines whose labels satisfy Pred.
type LabelFilter struct{ Pred Pred }

func (*LabelFilter) stage() {}

func (f *LabelFilter) process(_ int64, line string, lb *lineLabels) (string, bool) {
	return line, evalPred(f.Pred, lb)
}

func (f *LabelFilter) requiredLabels() []string { return predLabels(f.Pred, nil) }

// Pred is a label filter expression.
type Pred interface{ pred() }

// And is true when both sides are; both always run.
type And struct{ L, R Pred }

// Or is true when either side is; the right side runs when the left is
// false.
type Or struct{ L, R Pred }

// StringMatch compares a label's value as a string (=, !=, =~, !~).
type StringMatch struct {
	M *labels.Matcher
	f strFilter
}

// NumberMatch compares a label's value as a number, a duration or a
// byte size (==, !=, >, >=, <, <=).
type NumberMatch struct {
	Name  string
	Op    tokKind
	Value float64 // a duration in seconds
	Kind  tokKind // tNumber, tDuration or tBytes
	dur   time.Duration
	bytes uint64
}

// IPMatch is label = ip("…") or label != ip("…").
type IPMatch struct {
	Name    string
	Not     bool
	Pattern string
	ip      ipRange
}

func (And) pred()          {}
func (Or) pred()           {}
func (StringMatch) pred()  {}
func (*NumberMatch) pred() {}
func (*IPMatch) pred()     {}

func predLabels(p Pred, out []string) []string {
	switch p := p.(type) {
	case And:
		return predLabels(p.R, predLabels(p.L, out))
	case Or:
		return predLabels(p.R, predLabels(p.L, out))
	case StringMatch:
		return append(out, p.M.Name)
	case *NumberMatch:
		return append(out, p.Name)
	case *IPMatch:
		return append(out, p.Name)
	}
	return out
}

// labelValue is what a filter reads: __error__ is the line's error.
func labelValue(name string, lb *lineLabels) string {
	if name == errorLabel {
		return lb.err
	}
	v, _ := lb.get(name)
	return v
}

// evalPred reports whether p keeps the line; it may mark the line with
// LabelFilterErr.
func evalPred(p Pred, lb *lineLabels) bool {
	switch p := p.(type) {
	case And:
		l := evalPred(p.L, lb)
		r := evalPred(p.R, lb)
		return l && r
	case Or:
		return evalPred(p.L, lb) || evalPred(p.R, lb)
	case StringMatch:
		return p.matches(labelValue(p.M.Name, lb))
	case *NumberMatch:
		return p.eval(lb)
	case *IPMatch:
		if lb.hasErr() {
			return true
		}
		v, ok := lb.get(p.Name)
		if !ok {
			return false
		}
		return p.ip.inLine(v) != p.Not
	}
	return false
}

func (m StringMatch) matches(v string) bool {
	if m.f == nil {
		return m.M.Matches(v)
	}
	return m.f.match(v)
}

func (m *NumberMatch) eval(lb *lineLabels) bool {
	s, ok := lb.get(m.Name)
	if !ok {
		return false
	}
	var c int
	switch m.Kind {
	case tDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return m.parseFailed(lb, err)
		}
		c = compare(d, m.dur)
	case tBytes:
		b, err := humanize.ParseBytes(s)
		if err != nil {
			return m.parseFailed(lb, err)
		}
		c = compare(b, m.bytes)
	default:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return m.parseFailed(lb, err)
		}
		if f != f || m.Value != m.Value { // NaN compares false, as in Go
			return m.Op == tNeq
		}
		c = compare(f, m.Value)
	}
	switch m.Op {
	case tEqEq:
		return c == 0
	case tNeq:
		return c != 0
	case tGt:
		return c > 0
	case tGte:
		return c >= 0
	case tLt:
		return c < 0
	case tLte:
		return c <= 0
	}
	return true
}

func (m *NumberMatch) parseFailed(lb *lineLabels, err error) bool {
	if !lb.hasErr() {
		lb.err = errLabelFilter
		lb.errDetails = err.Error()
	}
	return true
}

func compare[T int64 | uint64 | float64 | time.Duration](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// strFilter matches a label value. Loki turns simple regexps into literal
// comparisons before matching; these are the same comparisons, so that a
// label regexp matches exactly what it matches on Loki.
type strFilter interface{ match(s string) bool }

type (
	trueFilter   struct{}
	existsFilter struct{}
	notFilter    struct{ f strFilter }
	orFilter     struct{ a, b strFilter }
	equalFilter  struct {
		s    string
		fold bool
	}
	containsFilter struct {
		s    string
		fold bool
	}
	regexFilter struct{ re *regexp.Regexp }
)

func (trueFilter) match(string) bool      { return true }
func (existsFilter) match(s string) bool  { return s != "" }
func (f notFilter) match(s string) bool   { return !f.f.match(s) }
func (f orFilter) match(s string) bool    { return f.a.match(s) || f.b.match(s) }
func (f regexFilter) match(s string) bool { return f.re.MatchString(s) }

func (f equalFilter) match(s string) bool {
	if len(s) != len(f.s) {
		return false
	}
	return containsFold(s, f.s, f.fold)
}

func (f containsFilter) match(s string) bool { return containsFold(s, f.s, f.fold) }

func newEqualFilter(s string, fold bool) strFilter {
	if fold {
		s = strings.ToLower(s)
	}
	return equalFilter{s: s, fold: fold}
}

func newContainsFilter(s string, fold bool) strFilter {
	if s == "" {
		return trueFilter{}
	}
	if fold {
		s = strings.ToLower(s)
	}
	return containsFilter{s: s, fold: fold}
}

// containsFold reports whether s contains sub (lower case when fold).
func containsFold(s, sub string, fold bool) bool {
	if !fold {
		return strings.Contains(s, sub)
	}
	if sub == "" {
		return true
	}
	if len(sub) > len(s) {
		return false
	}
	for i := 0; i <= len(s)-len(sub); i++ {
		if lowerASCII(s[i]) == sub[0] && hasFoldPrefix(s[i:], sub) {
			return true
		}
	}
	return false
}

// hasFoldPrefix reports whether s starts with sub (in lower case),
// whatever the case of s; an invalid byte of s compares as a byte.
func hasFoldPrefix(s, sub string) bool {
	i, j := 0, 0
	for i < len(s) && j < len(sub) {
		c, d := s[i], sub[j]
		if c >= utf8.RuneSelf || d >= utf8.RuneSelf {
			if lr, lw := utf8.DecodeRuneInString(s[i:]); lr != utf8.RuneError || lw != 1 {
				mr, mw := utf8.DecodeRuneInString(sub[j:])
				if mr == utf8.RuneError && mw == 1 || unicode.ToLower(lr) != mr {
					return false
				}
				i, j = i+lw, j+mw
				continue
			}
		}
		if lowerASCII(c) != d {
			return false
		}
		i, j = i+1, j+1
	}
	return j == len(sub)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// newStrFilter builds the filter of a label matcher; nil with true means
// the matcher keeps every line.
func newStrFilter(m *labels.Matcher) (strFilter, error) {
	switch m.Type {
	case labels.MatchEqual:
		return newEqualFilter(m.Value, false), nil
	case labels.MatchNotEqual:
		return notFilter{newEqualFilter(m.Value, false)}, nil
	}
	re, err := syntax.Parse(m.Value, syntax.Perl)
	if err != nil {
		return nil, err
	}
	re = re.Simplify()
	f, ok := simplifyRegexp(re, true)
	if !ok {
		c, err := regexp.Compile("^(?:" + re.String() + ")$")
		if err != nil {
			return nil, err
		}
		f = regexFilter{c}
	}
	if m.Type == labels.MatchNotRegexp {
		return notFilter{f}, nil
	}
	return f, nil
}

func foldCase(re *syntax.Regexp) bool { return re.Flags&syntax.FoldCase != 0 }

func uncapture(res ...*syntax.Regexp) {
	for _, r := range res {
		if r.Op == syntax.OpCapture {
			*r = *r.Sub[0]
		}
	}
}

// simplifyRegexp turns a regexp into literal comparisons when it can:
// alternations of literals, literal.*, .*literal.*, .* and .+; a label's
// lone literal must equal the value, a line's be contained in it.
func simplifyRegexp(re *syntax.Regexp, isLabel bool) (strFilter, bool) {
	switch re.Op {
	case syntax.OpAlternate:
		uncapture(re.Sub...)
		f, ok := simplifyRegexp(re.Sub[0], isLabel)
		if !ok {
			return nil, false
		}
		for _, s := range re.Sub[1:] {
			g, ok := simplifyRegexp(s, isLabel)
			if !ok {
				return nil, false
			}
			f = orFilter{f, g}
		}
		return f, true
	case syntax.OpConcat:
		return simplifyConcat(re, "")
	case syntax.OpCapture:
		uncapture(re)
		return simplifyRegexp(re, isLabel)
	case syntax.OpLiteral:
		if isLabel {
			return newEqualFilter(string(re.Rune), foldCase(re)), true
		}
		return newContainsFilter(string(re.Rune), foldCase(re)), true
	case syntax.OpStar:
		if re.Sub[0].Op == syntax.OpAnyCharNotNL {
			return trueFilter{}, true
		}
	case syntax.OpPlus:
		if len(re.Sub) == 1 && re.Sub[0].Op == syntax.OpAnyCharNotNL {
			return existsFilter{}, true
		}
	case syntax.OpEmptyMatch:
		return trueFilter{}, true
	}
	return nil, false
}

func simplifyConcat(re *syntax.Regexp, base string) (strFilter, bool) {
	uncapture(re.Sub...)
	subs := re.Sub[:0:0]
	for _, s := range re.Sub {
		if s.Op != syntax.OpEmptyMatch {
			subs = append(subs, s)
		}
	}
	if len(subs) > 3 {
		return nil, false
	}
	var (
		cur      strFilter
		literals int
		fold     bool
		haveBase = base != ""
	)
	for _, s := range subs {
		switch {
		case s.Op == syntax.OpLiteral:
			if literals != 0 {
				return nil, false
			}
			literals++
			base += string(s.Rune)
			haveBase = true
			fold = foldCase(s)
		case s.Op == syntax.OpAlternate && haveBase:
			var ok bool
			if cur, ok = simplifyConcatAlternate(s, base, cur, fold); !ok {
				return nil, false
			}
		case s.Op == syntax.OpStar && s.Sub[0].Op == syntax.OpAnyCharNotNL:
		default:
			return nil, false
		}
	}
	if cur != nil {
		return cur, true
	}
	if haveBase {
		return newContainsFilter(base, fold), true
	}
	return nil, false
}

func simplifyConcatAlternate(re *syntax.Regexp, lit string, cur strFilter, fold bool) (strFilter, bool) {
	or := func(f strFilter) strFilter {
		if cur == nil {
			return f
		}
		return orFilter{cur, f}
	}
	for _, alt := range re.Sub {
		if !fold && foldCase(alt) {
			return nil, false
		}
		switch {
		case alt.Op == syntax.OpEmptyMatch:
			cur = or(newContainsFilter(lit, fold))
		case alt.Op == syntax.OpLiteral:
			cur = or(newContainsFilter(lit+string(alt.Rune), fold))
		case alt.Op == syntax.OpConcat:
			f, ok := simplifyConcat(alt, lit)
			if !ok {
				return nil, false
			}
			cur = or(f)
		case alt.Op == syntax.OpStar && alt.Sub[0].Op == syntax.OpAnyCharNotNL:
			cur = or(newContainsFilter(lit, fold))
		default:
			return nil, false
		}
	}
	return cur, cur != nil
}

// ipRange is a single address, a CIDR prefix or a from-to range.
type ipRange struct {
	from, to netip.Addr
}

func parseIPRange(s string) (ipRange, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return ipRange{a, a}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		return ipRange{p.Addr(), lastAddr(p)}, nil
	}
	if f, t, ok := strings.Cut(s, "-"); ok {
		from, err1 := netip.ParseAddr(f)
		to, err2 := netip.ParseAddr(t)
		if err1 == nil && err2 == nil && from.Zone() == "" && to.Zone() == "" && from.BitLen() == to.BitLen() && from.Compare(to) <= 0 {
			return ipRange{from, to}, nil
		}
	}
	return ipRange{}, fmt.Errorf("ip: invalid pattern: %q", s)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (r ipRange) contains(a netip.Addr) bool {
	if a.BitLen() != r.from.BitLen() {
		return false
	}
	return r.from.Compare(a) <= 0 && a.Compare(r.to) <= 0
}

// inLine reports whether s holds an address in the range, looking for
// addresses as Loki does: runs of address characters where an address
// may start.
func (r ipRange) inLine(s string) bool {
	const v4, v6 = "0123456789.", "0123456789abcdefABCDEF:."
	b := []byte(s)
	try := func(start int, charset string) (bool, int) {
		n := 0
		for start+n < len(b) && strings.IndexByte(charset, b[start+n]) >= 0 {
			n++
		}
		if a, err := netip.ParseAddr(s[start : start+n]); err == nil && r.contains(a) {
			return true, 0
		}
		return false, n
	}
	for i := 0; i < len(b); i++ {
		if i+3 < len(b) && isDigit(b[i]) && (b[i+1] == '.' || b[i+2] == '.' || b[i+3] == '.') {
			ok, n := try(i, v4)
			if ok {
				return true
			}
			i += n
			continue
		}
		if i+4 < len(b) && ipv6Start(b[i:i+5]) {
			ok, n := try(i, v6)
			if ok {
				return true
			}
			i += n
		}
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func ipv6Start(p []byte) bool {
	return p[0] == ':' && p[1] == ':' && isHex(p[2]) ||
		isHex(p[0]) && p[1] == ':' ||
		isHex(p[0]) && isHex(p[1]) && p[2] == ':' ||
		isHex(p[0]) && isHex(p[1]) && isHex(p[2]) && p[3] == ':' ||
		isHex(p[0]) && isHex(p[1]) && isHex(p[2]) && isHex(p[3]) && p[4] == ':'
}

// ansiEscape matches terminal colour and control sequences.
var ansiEscape = regexp.MustCompile("[\u001B\u009B][[\\]()#;?]*(?:(?:(?:[a-zA-Z\\d]*(?:;[a-zA-Z\\d]*)*)?\u0007)|(?:(?:\\d{1,4}(?:;\\d{0,4})*)?[\\dA-PRZcf-ntqry=><~]))")

// Decolorize is `| decolorize`: it removes terminal colour codes from
// the line.
type Decolorize struct{}

func (*Decolorize) stage() {}

func (*Decolorize) requiredLabels() []string { return nil }

func (*Decolorize) process(_ int64, line string, _ *lineLabels) (string, bool) {
	return ansiEscape.ReplaceAllString(line, ""), true
}
