package logql

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
	"time"
	"unicode"

	"github.com/dustin/go-humanize"
)

// The functions line_format and label_format templates may call: the same
// names, argument types and results as Loki's, which are Go's strings
// functions under their old names, a few of Loki's own, and a subset of
// the Sprig library, written here after their documented behaviour.
// __line__ and __timestamp__ read the line being formatted; a template
// runs on a map of the line's labels, so a missing label is "".

const (
	lineFunc      = "__line__"
	timestampFunc = "__timestamp__"
)

var templateFuncs = template.FuncMap{
	// Loki's first functions: Go's strings package.
	"ToLower":    strings.ToLower,
	"ToUpper":    strings.ToUpper,
	"Replace":    strings.Replace,
	"Trim":       strings.Trim,
	"TrimLeft":   strings.TrimLeft,
	"TrimRight":  strings.TrimRight,
	"TrimPrefix": strings.TrimPrefix,
	"TrimSuffix": strings.TrimSuffix,
	"TrimSpace":  strings.TrimSpace,

	// Loki's own.
	"regexReplaceAll": func(re, s, repl string) (string, error) {
		r, err := regexp.Compile(re)
		if err != nil {
			return "", err
		}
		return r.ReplaceAllString(s, repl), nil
	},
	"regexReplaceAllLiteral": func(re, s, repl string) (string, error) {
		r, err := regexp.Compile(re)
		if err != nil {
			return "", err
		}
		return r.ReplaceAllLiteralString(s, repl), nil
	},
	"count": func(re, s string) (int, error) {
		r, err := regexp.Compile(re)
		if err != nil {
			return 0, err
		}
		return len(r.FindAllStringIndex(s, -1)), nil
	},
	"urldecode":        url.QueryUnescape,
	"urlencode":        url.QueryEscape,
	"bytes":            bytesValue,
	"duration":         durationValue,
	"duration_seconds": durationValue,
	"unixEpochMillis":  func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) },
	"unixEpochNanos":   func(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) },
	"toDateInZone":     toDateInZone,
	"unixToTime":       unixToTime,
	"alignLeft":        alignLeft,
	"alignRight":       alignRight,

	// The Sprig subset.
	"b64enc": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	"b64dec": func(s string) string {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return err.Error()
		}
		return string(b)
	},
	"lower":     strings.ToLower,
	"upper":     strings.ToUpper,
	"title":     title,
	"trunc":     truncBytes,
	"substr":    substrBytes,
	"contains":  func(sub, s string) bool { return strings.Contains(s, sub) },
	"hasPrefix": func(prefix, s string) bool { return strings.HasPrefix(s, prefix) },
	"hasSuffix": func(suffix, s string) bool { return strings.HasSuffix(s, suffix) },
	"indent":    indent,
	"nindent": func(n int, s string) (string, error) {
		v, err := indent(n, s)
		return "\n" + v, err
	},
	"replace": func(old, repl, s string) string { return strings.ReplaceAll(s, old, repl) },
	"repeat": func(n int, s string) (string, error) {
		return recovered(func() string { return strings.Repeat(s, n) })
	},
	"trim":       strings.TrimSpace,
	"trimAll":    func(cut, s string) string { return strings.Trim(s, cut) },
	"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
	"trimPrefix": func(prefix, s string) string { return strings.TrimPrefix(s, prefix) },
	"int":        func(v any) int { return int(castInt(v)) },
	"float64":    castFloat,
	"add": func(vs ...any) int64 {
		var a int64
		for _, v := range vs {
			a += castInt(v)
		}
		return a
	},
	"sub": func(a, b any) int64 { return castInt(a) - castInt(b) },
	"mul": func(a any, vs ...any) int64 {
		r := castInt(a)
		for _, v := range vs {
			r *= castInt(v)
		}
		return r
	},
	"div": func(a, b any) (int64, error) {
		return recovered(func() int64 { return castInt(a) / castInt(b) })
	},
	"mod": func(a, b any) (int64, error) {
		return recovered(func() int64 { return castInt(a) % castInt(b) })
	},
	"addf": func(vs ...any) (float64, error) { return decimalOp(float64(0), vs, decimalAdd) },
	"subf": func(a any, vs ...any) (float64, error) { return decimalOp(a, vs, decimalSub) },
	"mulf": func(a any, vs ...any) (float64, error) { return decimalOp(a, vs, decimalMul) },
	"divf": func(a any, vs ...any) (float64, error) { return decimalOp(a, vs, decimalDiv) },
	"max": func(a any, vs ...any) int64 {
		r := castInt(a)
		for _, v := range vs {
			r = max(r, castInt(v))
		}
		return r
	},
	"min": func(a any, vs ...any) int64 {
		r := castInt(a)
		for _, v := range vs {
			r = min(r, castInt(v))
		}
		return r
	},
	"maxf": func(a any, vs ...any) float64 {
		r := castFloat(a)
		for _, v := range vs {
			r = math.Max(r, castFloat(v))
		}
		return r
	},
	"minf": func(a any, vs ...any) float64 {
		r := castFloat(a)
		for _, v := range vs {
			r = math.Min(r, castFloat(v))
		}
		return r
	},
	"ceil":  func(a any) float64 { return math.Ceil(castFloat(a)) },
	"floor": func(a any) float64 { return math.Floor(castFloat(a)) },
	"round": round,
	"fromJson": func(s string) any {
		var v any
		_ = json.Unmarshal([]byte(s), &v) // as Sprig: a bad document is nil
		return v
	},
	"date": func(layout string, t any) string { return dateIn(layout, t, "Local") },
	"toDate": func(layout, s string) time.Time {
		t, _ := time.ParseInLocation(layout, s, time.Local) // as Sprig: zero on error
		return t
	},
	"now":       time.Now,
	"unixEpoch": func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) },
	"default":   dflt,

	// Bound per execution to the line being formatted (see fmtTemplate).
	lineFunc:      func() string { return "" },
	timestampFunc: func() time.Time { return time.Time{} },
}

func bytesValue(s string) (float64, error) {
	b, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, err
	}
	return float64(b), nil
}

func durationValue(s string) (float64, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return d.Seconds(), nil
}

func toDateInZone(layout, zone, s string) time.Time {
	loc, err := time.LoadLocation(zone)
	if err != nil {
		loc = time.UTC
	}
	t, _ := time.ParseInLocation(layout, s, loc)
	return t
}

// unixToTime reads a unix time in days, seconds, milliseconds,
// microseconds or nanoseconds, told apart by its number of digits.
func unixToTime(epoch string) (time.Time, error) {
	i, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("unable to parse time '%v': %w", epoch, err)
	}
	switch len(epoch) {
	case 5:
		return time.Unix(i*86400, 0), nil
	case 10:
		return time.Unix(i, 0), nil
	case 13:
		return time.Unix(0, i*int64(time.Millisecond)), nil
	case 16:
		return time.Unix(0, i*int64(time.Microsecond)), nil
	case 19:
		return time.Unix(0, i), nil
	}
	return time.Time{}, fmt.Errorf("unable to parse time '%v': %w", epoch, err)
}

func alignLeft(n int, s string) string {
	r := []rune(s)
	if n < 0 || n == len(r) {
		return s
	}
	if pad := n - len(r); pad > 0 {
		return s + strings.Repeat(" ", pad)
	}
	return string(r[:n])
}

func alignRight(n int, s string) string {
	r := []rune(s)
	if n < 0 || n == len(r) {
		return s
	}
	if pad := n - len(r); pad > 0 {
		return strings.Repeat(" ", pad) + s
	}
	return string(r[len(r)-n:])
}

// title upper-cases the first letter of each word, as Go's deprecated
// strings.Title (Sprig's title) does.
func title(s string) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		sep := isSeparator(prev)
		prev = r
		if sep {
			return unicode.ToTitle(r)
		}
		return r
	}, s)
}

func isSeparator(r rune) bool {
	if r <= 0x7F {
		switch {
		case '0' <= r && r <= '9', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', r == '_':
			return false
		}
		return true
	}
	if unicode.IsLetter(r) || unicode.IsDigit(r) {
		return false
	}
	return unicode.IsSpace(r)
}

// truncBytes keeps the first n bytes of s, or with n < 0 the last -n.
func truncBytes(n int, s string) string {
	if n < 0 && len(s)+n > 0 {
		return s[len(s)+n:]
	}
	if n >= 0 && len(s) > n {
		return s[:n]
	}
	return s
}

// substrBytes is s[start:end] in bytes, to the end when end < 0 or past
// it; out of range, it fails as Sprig's does, with Go's message.
func substrBytes(start, end int, s string) (string, error) {
	return recovered(func() string {
		if start < 0 {
			return s[:end]
		}
		if end < 0 || end > len(s) {
			return s[start:]
		}
		return s[start:end]
	})
}

func indent(n int, s string) (string, error) {
	return recovered(func() string {
		pad := strings.Repeat(" ", n)
		return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
	})
}

// recovered runs f and returns the run-time error it stops with (a slice
// out of range, a division by zero, a negative count), as Sprig's
// functions, which let them happen, are reported through Go's templates:
// "error calling substr: runtime error: slice bounds out of range [5:3]".
func recovered[T any](f func() T) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return f(), nil
}

func round(a any, places int, on ...float64) float64 {
	roundOn := .5
	if len(on) > 0 {
		roundOn = on[0]
	}
	pow := math.Pow(10, float64(places))
	digit := pow * castFloat(a)
	var r float64
	if _, frac := math.Modf(digit); frac >= roundOn {
		r = math.Ceil(digit)
	} else {
		r = math.Floor(digit)
	}
	return r / pow
}

func dateIn(layout string, v any, zone string) string {
	var t time.Time
	switch v := v.(type) {
	case time.Time:
		t = v
	case *time.Time:
		t = *v
	case int64:
		t = time.Unix(v, 0)
	case int:
		t = time.Unix(int64(v), 0)
	case int32:
		t = time.Unix(int64(v), 0)
	default:
		t = time.Now()
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		loc = time.UTC
	}
	return t.In(loc).Format(layout)
}

// dflt is Sprig's default: the value, unless it is empty.
func dflt(d any, given ...any) any {
	if len(given) == 0 || isEmpty(given[0]) {
		return d
	}
	return given[0]
}

func isEmpty(v any) bool {
	g := reflect.ValueOf(v)
	if !g.IsValid() {
		return true
	}
	switch g.Kind() {
	case reflect.Array, reflect.Slice, reflect.Map, reflect.String:
		return g.Len() == 0
	case reflect.Bool:
		return !g.Bool()
	case reflect.Complex64, reflect.Complex128:
		return g.Complex() == 0
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return g.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return g.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return g.Float() == 0
	case reflect.Struct:
		return false
	case reflect.Chan, reflect.Func, reflect.Interface, reflect.Pointer, reflect.UnsafePointer:
		return g.IsNil()
	}
	return false
}

// castFloat converts as Sprig does: numbers, booleans, numeric strings;
// anything else is 0.
func castFloat(v any) float64 {
	if f, ok := numberOfAny(v); ok {
		return f
	}
	s, ok := textOf(v)
	if !ok {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return f
}

// textOf is a string's or a json.Number's text.
func textOf(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	}
	return "", false
}

// castInt converts as Sprig does: numbers (truncated), booleans, integer
// strings in any Go base, a decimal string's integer part; else 0.
func castInt(v any) int64 {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return int64(x)
	case float32:
		return int64(x)
	case float64:
		return int64(x)
	case bool:
		if x {
			return 1
		}
		return 0
	case time.Weekday:
		return int64(x)
	case time.Month:
		return int64(x)
	}
	s, ok := textOf(v)
	if !ok {
		return 0
	}
	i, err := strconv.ParseInt(integerPart(s), 0, 0)
	if err != nil {
		return 0
	}
	return i
}

var decimalString = regexp.MustCompile(`^([-+]?\d*)(\.\d*)?$`)

// integerPart turns "12.5" into "12"; other strings are left as they are.
func integerPart(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	m := decimalString.FindStringSubmatch(s)
	if m == nil {
		return s
	}
	switch m[1] {
	case "-", "+":
		return m[1] + "0"
	case "":
		return "0"
	}
	return m[1]
}

func numberOfAny(v any) (float64, bool) {
	switch x := v.(type) {
	case nil:
		return 0, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case int:
		return float64(x), true
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float32:
		return float64(x), true
	case float64:
		return x, true
	case time.Weekday:
		return float64(x), true
	case time.Month:
		return float64(x), true
	}
	return 0, false
}

// decimalOp folds vs into a with op in decimal arithmetic, each float
// taken at its shortest decimal form, as Sprig's addf, subf, mulf and divf
// do (0.1 + 0.2 is 0.3).
func decimalOp(a any, vs []any, op func(x, y *big.Rat) (*big.Rat, error)) (float64, error) {
	acc, err := decimalOf(castFloat(a))
	if err != nil {
		return 0, err
	}
	for _, v := range vs {
		d, err := decimalOf(castFloat(v))
		if err != nil {
			return 0, err
		}
		if acc, err = op(acc, d); err != nil {
			return 0, err
		}
	}
	f, _ := acc.Float64()
	return f, nil
}

func decimalOf(f float64) (*big.Rat, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("Cannot create a Decimal from %v", f)
	}
	r, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	return r, nil
}

func decimalAdd(x, y *big.Rat) (*big.Rat, error) { return new(big.Rat).Add(x, y), nil }
func decimalSub(x, y *big.Rat) (*big.Rat, error) { return new(big.Rat).Sub(x, y), nil }
func decimalMul(x, y *big.Rat) (*big.Rat, error) { return new(big.Rat).Mul(x, y), nil }

// decimalDiv divides to 16 decimal places, rounding half away from zero.
func decimalDiv(x, y *big.Rat) (*big.Rat, error) {
	if y.Sign() == 0 {
		return nil, errors.New("decimal division by 0")
	}
	q := new(big.Rat).Quo(x, y)
	scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(16), nil))
	q.Mul(q, scale)
	n, d := q.Num(), q.Denom()
	i, rem := new(big.Int).QuoRem(n, d, new(big.Int))
	if new(big.Int).Mul(new(big.Int).Abs(rem), big.NewInt(2)).Cmp(d) >= 0 {
		if n.Sign() < 0 {
			i.Sub(i, big.NewInt(1))
		} else {
			i.Add(i, big.NewInt(1))
		}
	}
	return new(big.Rat).Quo(new(big.Rat).SetInt(i), scale), nil
}

// fmtTemplate is a parsed line_format or label_format template. Its
// executions may run at once (the store filters with several workers), so
// each takes a clone from a pool whose __line__ and __timestamp__ read
// that clone's own line.
type fmtTemplate struct {
	t    *template.Template
	pool sync.Pool
}

type fmtRun struct {
	t    *template.Template
	line string
	ts   int64
	buf  bytes.Buffer
}

// newTemplate parses src as Loki does, under name ("line" or "label", as
// Loki's errors say).
func newTemplate(name, src string) (*fmtTemplate, error) {
	t, err := template.New(name).Option("missingkey=zero").Funcs(templateFuncs).Parse(src)
	if err != nil {
		return nil, err
	}
	ft := &fmtTemplate{t: t}
	ft.pool.New = func() any {
		r := &fmtRun{}
		c, err := t.Clone()
		if err != nil { // text/template's Clone does not fail
			c = t
		}
		c.Funcs(template.FuncMap{
			lineFunc:      func() string { return r.line },
			timestampFunc: func() time.Time { return time.Unix(0, r.ts) },
		})
		r.t = c
		return r
	}
	return ft, nil
}

// execute runs the template over the labels in m for a line.
func (ft *fmtTemplate) execute(m map[string]string, line string, ts int64) (string, error) {
	r := ft.pool.Get().(*fmtRun)
	defer ft.pool.Put(r)
	r.line, r.ts = line, ts
	r.buf.Reset()
	err := r.t.Execute(&r.buf, m)
	r.line = ""
	if err != nil {
		return "", err
	}
	return r.buf.String(), nil
}

// simpleKey returns name when the template is exactly {{.name}}.
func (ft *fmtTemplate) simpleKey() string {
	nodes := ft.t.Root.Nodes
	if len(nodes) != 1 || nodes[0].Type() != parse.NodeAction {
		return ""
	}
	cmds := nodes[0].(*parse.ActionNode).Pipe.Cmds
	if len(cmds) != 1 || len(cmds[0].Args) != 1 {
		return ""
	}
	if f, ok := cmds[0].Args[0].(*parse.FieldNode); ok && len(f.Ident) == 1 {
		return f.Ident[0]
	}
	return ""
}

// fields lists the label names a template reads (.name).
func (ft *fmtTemplate) fields() []string {
	var out []string
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					walk(c)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n != nil {
				for _, c := range n.Cmds {
					walk(c)
				}
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.FieldNode:
			out = append(out, n.Ident...)
		}
	}
	walk(ft.t.Root)
	return out
}
