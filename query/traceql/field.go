package traceql

import (
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Type is the type of a Value.
type Type uint8

// The types of values, as TraceQL's statics.
const (
	TypeNil Type = iota
	TypeString
	TypeInt
	TypeFloat
	TypeBool
	TypeDuration
	TypeStatus // error, ok, unset
	TypeKind   // unspecified, internal, server, client, producer, consumer
)

// Value is a literal, or the value of an attribute or intrinsic on a span.
type Value struct {
	Type Type
	S    string // TypeString; the name of a TypeStatus or TypeKind
	N    int64
	F    float64
	B    bool
	D    time.Duration
}

func (v Value) numeric() bool {
	return v.Type == TypeInt || v.Type == TypeFloat || v.Type == TypeDuration
}

// float is a numeric value as a float (a duration in ns).
func (v Value) float() float64 {
	switch v.Type {
	case TypeInt:
		return float64(v.N)
	case TypeDuration:
		return float64(v.D)
	}
	return v.F
}

// String writes the value as Tempo shows a static: a duration as Go
// writes it, nil as "nil".
func (v Value) String() string {
	switch v.Type {
	case TypeNil:
		return "nil"
	case TypeInt:
		return strconv.FormatInt(v.N, 10)
	case TypeFloat:
		return strconv.FormatFloat(v.F, 'g', -1, 64)
	case TypeBool:
		return strconv.FormatBool(v.B)
	case TypeDuration:
		return v.D.String()
	}
	return v.S
}

var statusNames = map[ptrace.StatusCode]string{ptrace.StatusCodeError: "error", ptrace.StatusCodeOk: "ok", ptrace.StatusCodeUnset: "unset"}

var kindNames = map[ptrace.SpanKind]string{ptrace.SpanKindUnspecified: "unspecified", ptrace.SpanKindInternal: "internal",
	ptrace.SpanKindServer: "server", ptrace.SpanKindClient: "client", ptrace.SpanKindProducer: "producer", ptrace.SpanKindConsumer: "consumer"}

// fromOTLP converts an attribute value; a slice gives its elements.
func fromOTLP(v pcommon.Value, out []Value) []Value {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return append(out, Value{Type: TypeString, S: v.Str()})
	case pcommon.ValueTypeInt:
		return append(out, Value{Type: TypeInt, N: v.Int()})
	case pcommon.ValueTypeDouble:
		return append(out, Value{Type: TypeFloat, F: v.Double()})
	case pcommon.ValueTypeBool:
		return append(out, Value{Type: TypeBool, B: v.Bool()})
	case pcommon.ValueTypeSlice:
		for _, e := range v.Slice().All() {
			if e.Type() != pcommon.ValueTypeSlice && e.Type() != pcommon.ValueTypeMap {
				out = fromOTLP(e, out)
			}
		}
		return out
	case pcommon.ValueTypeBytes:
		return append(out, Value{Type: TypeString, S: base64.StdEncoding.EncodeToString(v.Bytes().AsRaw())})
	case pcommon.ValueTypeEmpty:
		return out
	}
	return append(out, Value{Type: TypeString, S: v.AsString()})
}

// Scopes of an attribute.
const (
	ScopeSpan            = "span"
	ScopeResource        = "resource"
	ScopeAny             = "" // .x: the span's, else its resource's
	ScopeEvent           = "event"
	ScopeLink            = "link"
	ScopeInstrumentation = "instrumentation"
	ScopeIntrinsic       = "intrinsic"
)

// Attr names an attribute or an intrinsic.
type Attr struct {
	Scope string // one of the Scope constants
	Name  string // the attribute's key, or the intrinsic's canonical name
	text  string // as written
}

// intrinsics maps what a query may write to the canonical names.
var intrinsics = map[string]string{
	"name": "name", "status": "status", "statusMessage": "statusMessage", "kind": "kind", "duration": "duration",
	"rootName": "rootName", "rootServiceName": "rootServiceName", "traceDuration": "traceDuration",
	"nestedSetParent": "nestedSetParent", "nestedSetLeft": "nestedSetLeft", "nestedSetRight": "nestedSetRight",
	"span:name": "name", "span:status": "status", "span:statusMessage": "statusMessage", "span:kind": "kind",
	"span:duration": "duration", "span:id": "span:id", "span:parentID": "span:parentID",
	"trace:rootName": "rootName", "trace:rootService": "rootServiceName", "trace:duration": "traceDuration", "trace:id": "trace:id",
	"event:name": "event:name", "event:timeSinceStart": "event:timeSinceStart",
	"link:traceID": "link:traceID", "link:spanID": "link:spanID",
	"instrumentation:name": "instrumentation:name", "instrumentation:version": "instrumentation:version",
}

// traceLevel lists the intrinsics that need the whole trace.
var traceLevel = map[string]bool{"rootName": true, "rootServiceName": true, "traceDuration": true, "trace:id": true,
	"nestedSetParent": true, "nestedSetLeft": true, "nestedSetRight": true}

func (a *Attr) String() string { return a.text }

// Key is the attribute's key in a search result, as Tempo writes it: the
// name without its scope.
func (a *Attr) Key() string { return a.Name }

// local reports whether the attribute can be read from a span and its
// resource alone (Query.Match).
func (a *Attr) local() bool {
	switch a.Scope {
	case ScopeInstrumentation:
		return false
	case ScopeIntrinsic:
		return !traceLevel[a.Name] && !strings.HasPrefix(a.Name, "instrumentation:")
	}
	return true
}

// Values appends the attribute's values on s: none when it is missing,
// several for an array or for events and links.
func (a *Attr) Values(s *Span, out []Value) []Value {
	get := func(m pcommon.Map) bool {
		if v, ok := m.Get(a.Name); ok {
			out = fromOTLP(v, out)
			return true
		}
		return false
	}
	switch a.Scope {
	case ScopeSpan:
		get(s.Span.Attributes())
	case ScopeResource:
		get(s.Resource.Attributes())
	case ScopeAny:
		if !get(s.Span.Attributes()) {
			get(s.Resource.Attributes())
		}
	case ScopeEvent:
		for _, ev := range s.Span.Events().All() {
			get(ev.Attributes())
		}
	case ScopeLink:
		for _, l := range s.Span.Links().All() {
			get(l.Attributes())
		}
	case ScopeInstrumentation:
		get(s.Scope.Attributes())
	case ScopeIntrinsic:
		return a.intrinsic(s, out)
	}
	return out
}

func (a *Attr) intrinsic(s *Span, out []Value) []Value {
	str := func(v string) []Value { return append(out, Value{Type: TypeString, S: v}) }
	integer := func(n int) []Value { return append(out, Value{Type: TypeInt, N: int64(n)}) }
	t := s.trace
	switch a.Name {
	case "name":
		return str(s.Span.Name())
	case "status":
		return append(out, Value{Type: TypeStatus, S: statusNames[s.Span.Status().Code()]})
	case "statusMessage":
		return str(s.Span.Status().Message())
	case "kind":
		return append(out, Value{Type: TypeKind, S: kindNames[s.Span.Kind()]})
	case "duration":
		return append(out, Value{Type: TypeDuration, D: time.Duration(s.duration())})
	case "span:id":
		return str(s.Span.SpanID().String())
	case "span:parentID":
		if p := s.Span.ParentSpanID(); !p.IsEmpty() {
			return str(p.String())
		}
		return out
	case "event:name":
		for _, ev := range s.Span.Events().All() {
			out = str(ev.Name())
		}
		return out
	case "event:timeSinceStart":
		for _, ev := range s.Span.Events().All() {
			out = append(out, Value{Type: TypeDuration, D: time.Duration(int64(ev.Timestamp()) - int64(s.Span.StartTimestamp()))})
		}
		return out
	case "link:traceID":
		for _, l := range s.Span.Links().All() {
			out = str(l.TraceID().String())
		}
		return out
	case "link:spanID":
		for _, l := range s.Span.Links().All() {
			out = str(l.SpanID().String())
		}
		return out
	case "instrumentation:name":
		return str(s.Scope.Name())
	case "instrumentation:version":
		return str(s.Scope.Version())
	}
	if t == nil {
		return out
	}
	switch a.Name {
	case "rootName":
		return str(t.RootName)
	case "rootServiceName":
		return str(t.RootService)
	case "traceDuration":
		return append(out, Value{Type: TypeDuration, D: time.Duration(t.End - t.Start)})
	case "trace:id":
		return str(s.Span.TraceID().String())
	case "nestedSetParent":
		return integer(s.nsParent)
	case "nestedSetLeft":
		return integer(s.left)
	case "nestedSetRight":
		return integer(s.right)
	}
	return out
}

// operand is one side of a comparison: an attribute or a literal.
type operand interface {
	values(s *Span, out []Value) []Value
	String() string
	local() bool
}

// static is a literal operand.
type static struct {
	v    Value
	text string
}

func (c static) values(_ *Span, out []Value) []Value {
	if c.v.Type == TypeNil {
		return out
	}
	return append(out, c.v)
}
func (c static) String() string { return c.text }
func (static) local() bool      { return true }

func (a *Attr) values(s *Span, out []Value) []Value { return a.Values(s, out) }

// Expr is a condition on one span, the inside of a spanset filter.
type Expr interface {
	holds(s *Span) bool
	String() string
	// local reports whether the condition reads only the span and its
	// resource (not its trace or scope).
	local() bool
}

// And holds when both sides do.
type And struct{ L, R Expr }

// Or holds when either side does.
type Or struct{ L, R Expr }

// Not holds when its condition does not.
type Not struct{ X Expr }

func (e And) holds(s *Span) bool { return e.L.holds(s) && e.R.holds(s) }
func (e Or) holds(s *Span) bool  { return e.L.holds(s) || e.R.holds(s) }
func (e Not) holds(s *Span) bool { return !e.X.holds(s) }
func (e And) String() string     { return "(" + e.L.String() + " && " + e.R.String() + ")" }
func (e Or) String() string      { return "(" + e.L.String() + " || " + e.R.String() + ")" }
func (e Not) String() string     { return "!" + e.X.String() }
func (e And) local() bool        { return e.L.local() && e.R.local() }
func (e Or) local() bool         { return e.L.local() && e.R.local() }
func (e Not) local() bool        { return e.X.local() }

// truth is an operand used as a condition: true, false, or a boolean
// attribute ({ .cache.hit }).
type truth struct{ x operand }

func (e truth) holds(s *Span) bool {
	var buf [4]Value
	for _, v := range e.x.values(s, buf[:0]) {
		if v.Type == TypeBool && v.B {
			return true
		}
	}
	return false
}
func (e truth) String() string { return e.x.String() }
func (e truth) local() bool    { return e.x.local() }

// Cond compares two operands, most often an attribute with a literal.
type Cond struct {
	L, R operand
	Op   string // = != > >= < <= =~ !~
	re   *regexp.Regexp
}

// Attr and Value give the attribute and the literal of an `attribute op
// literal` condition (ok false for any other).
func (c *Cond) Attr() (a *Attr, v Value, ok bool) {
	a, isAttr := c.L.(*Attr)
	lit, isLit := c.R.(static)
	if !isAttr || !isLit {
		return nil, Value{}, false
	}
	return a, lit.v, true
}

func (c *Cond) String() string { return c.L.String() + " " + c.Op + " " + c.R.String() }
func (c *Cond) local() bool    { return c.L.local() && c.R.local() }

// holds evaluates the comparison as Tempo does: a missing attribute is
// nil, which equals only nil (`!= nil` tests that an attribute exists) and
// makes every other comparison false; values of different types compare
// false, except numbers with numbers (ints, floats and durations in ns).
// An attribute with several values (an array, events, links) holds when
// one value does, or for != and !~ when all do.
func (c *Cond) holds(s *Span) bool {
	var lb, rb [4]Value
	lv, rv := c.L.values(s, lb[:0]), c.R.values(s, rb[:0])
	if isNil(c.R) || isNil(c.L) {
		other := lv
		if isNil(c.L) {
			other = rv
		}
		bothNil := isNil(c.R) && isNil(c.L)
		switch c.Op {
		case "=":
			return len(other) == 0 || bothNil
		case "!=":
			return len(other) > 0 && !bothNil
		}
		return false
	}
	if len(lv) == 0 || len(rv) == 0 {
		return false
	}
	all := c.Op == "!=" || c.Op == "!~"
	for _, l := range lv {
		for _, r := range rv {
			ok := c.compare(l, r)
			if ok && !all {
				return true
			}
			if !ok && all {
				return false
			}
		}
	}
	return all
}

func isNil(o operand) bool {
	st, ok := o.(static)
	return ok && st.v.Type == TypeNil
}

func (c *Cond) compare(l, r Value) bool {
	switch {
	case l.numeric() && r.numeric():
		if l.Type == TypeInt && r.Type == TypeInt {
			return ordered(c.Op, l.N, r.N)
		}
		return ordered(c.Op, l.float(), r.float())
	case l.Type == TypeString && r.Type == TypeString:
		switch c.Op {
		case "=~":
			return c.re != nil && c.re.MatchString(l.S)
		case "!~":
			return c.re != nil && !c.re.MatchString(l.S)
		}
		return ordered(c.Op, l.S, r.S)
	case l.Type == TypeBool && r.Type == TypeBool:
		switch c.Op {
		case "=":
			return l.B == r.B
		case "!=":
			return l.B != r.B
		}
	case (l.Type == TypeStatus || l.Type == TypeKind) && (r.Type == l.Type || r.Type == TypeString):
		// status = error; a string works too (status = "error").
		switch c.Op {
		case "=":
			return l.S == r.S
		case "!=":
			return l.S != r.S
		case "=~":
			return c.re != nil && c.re.MatchString(l.S)
		case "!~":
			return c.re != nil && !c.re.MatchString(l.S)
		}
	}
	return false
}

func ordered[T int64 | float64 | string](op string, a, b T) bool {
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

// relax returns a condition that holds on every span e holds on and can be
// evaluated on a span alone: the parts that need the trace or the span's
// scope become true.
func relax(e Expr) Expr {
	if e == nil || e.local() {
		return e
	}
	switch e := e.(type) {
	case And:
		l, r := relax(e.L), relax(e.R)
		switch {
		case l == nil:
			return r
		case r == nil:
			return l
		}
		return And{l, r}
	case Or:
		l, r := relax(e.L), relax(e.R)
		if l == nil || r == nil {
			return nil
		}
		return Or{l, r}
	}
	return nil // nil: every span
}

// attrs appends the attributes e reads.
func attrs(e Expr, out []*Attr) []*Attr {
	switch e := e.(type) {
	case And:
		return attrs(e.R, attrs(e.L, out))
	case Or:
		return attrs(e.R, attrs(e.L, out))
	case Not:
		return attrs(e.X, out)
	case truth:
		if a, ok := e.x.(*Attr); ok {
			out = append(out, a)
		}
	case *Cond:
		for _, o := range []operand{e.L, e.R} {
			if a, ok := o.(*Attr); ok {
				out = append(out, a)
			}
		}
	}
	return out
}
