package logql

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/buger/jsonparser"
)

// The JSON stages, json and unpack. They read lines with jsonparser, the
// reader Loki's own stages use, so that what is a JSON object, how far a
// malformed line is read, and the error a line gets, are the same.

// LabelExpr is one name="expression" of json or logfmt with parameters;
// `json status` is status="status".
type LabelExpr struct {
	Name string
	Expr string
	path []string // json: the expression's keys and [index]es
}

// JSONParser is `| json`: each field of a JSON object line becomes a
// label, nested objects' names joined with '_', arrays and nulls skipped;
// with Exprs (`| json code="status", first="tags[0]"`), only the fields
// the expressions name.
type JSONParser struct {
	Exprs []LabelExpr
}

func (*JSONParser) stage() {}

func (*JSONParser) requiredLabels() []string { return nil }

var (
	errAllFound       = errors.New("found all required labels")
	errDropLine       = errors.New("a label filter drops the line")
	errNotJSONObject  = errors.New("expecting json object(6), but it is not")
	errUnexpectedJSON = errors.New("unexpected JSON value")
)

func (j *JSONParser) process(_ int64, line string, lb *lineLabels) (string, bool) {
	if len(j.Exprs) > 0 {
		return j.processExprs(line, lb)
	}
	if lb.noLabels() {
		return line, true
	}
	w := &jsonWalker{lb: lb}
	err := jsonparser.ObjectEach([]byte(line), w.field)
	switch {
	case err == nil, errors.Is(err, errAllFound):
		return line, true
	case errors.Is(err, errDropLine):
		return line, false
	}
	lb.setError(errJSON, err)
	return line, true
}

// jsonWalker sets the fields of an object as labels, depth first.
type jsonWalker struct {
	lb     *lineLabels
	prefix []string // the keys of the objects around the current one
}

func (w *jsonWalker) field(key, value []byte, typ jsonparser.ValueType, _ int) error {
	var err error
	switch typ {
	case jsonparser.String, jsonparser.Number, jsonparser.Boolean:
		err = w.value(string(key), value, typ)
	case jsonparser.Object:
		n := len(w.prefix)
		w.prefix = append(w.prefix, string(key))
		if w.lb.hints.shouldExtractPrefix(JoinSanitized(w.prefix)) {
			err = jsonparser.ObjectEach(value, w.field)
		}
		w.prefix = w.prefix[:n]
		return err
	}
	if w.lb.allRequired() {
		return errAllFound
	}
	return err
}

func (w *jsonWalker) value(key string, value []byte, typ jsonparser.ValueType) error {
	lb := w.lb
	var name string
	if len(w.prefix) == 0 {
		if name = SanitizeKey(key); name == "" {
			return nil
		}
		if lb.collides(name) {
			name += extractedSuffix
		}
	} else {
		parts := append(w.prefix[:len(w.prefix):len(w.prefix)], key)
		name = JoinSanitized(parts)
		if lb.collides(name) {
			parts[len(parts)-1] += extractedSuffix
			name = JoinSanitized(parts)
		}
	}
	if lb.skip(name) {
		return nil
	}
	lb.setParsed(name, JSONValue(value, typ))
	if !lb.keepParsing(name) {
		return errDropLine
	}
	return nil
}

// JSONValue is a JSON scalar's label value: a string unescaped (invalid UTF-8
// as spaces), a number as written, true or false.
func JSONValue(v []byte, typ jsonparser.ValueType) string {
	switch typ {
	case jsonparser.String:
		return jsonString(v)
	case jsonparser.Number:
		return string(v)
	case jsonparser.Boolean:
		if string(v) == "true" {
			return "true"
		}
		return "false"
	}
	return ""
}

func jsonString(v []byte) string {
	u, err := jsonparser.Unescape(v, nil)
	if err != nil {
		return ""
	}
	s := string(u)
	if strings.ContainsRune(s, utf8.RuneError) {
		s = strings.Map(invalidToSpace, s)
	}
	return s
}

// processExprs sets each expression's field; a name whose field the line
// lacks is set empty. A line that does not start like JSON is marked
// JSONParserErr.
func (j *JSONParser) processExprs(line string, lb *lineLabels) (string, bool) {
	if len(line) == 0 || lb.noLabels() {
		return line, true
	}
	switch line[0] {
	case '"', '{', '[':
	default:
		lb.setError(errJSON, nil)
		return line, true
	}
	data := []byte(line)
	matches := 0
	for _, e := range j.Exprs {
		v, typ, err := jsonLookup(data, e.path)
		if errors.Is(err, jsonparser.KeyPathNotFoundError) {
			continue
		}
		if err != nil {
			lb.setError(errJSON, err)
			continue
		}
		name := e.Name
		if lb.collides(name) {
			name += extractedSuffix
		}
		switch typ {
		case jsonparser.Null:
			lb.setParsed(name, "")
		case jsonparser.Object:
			lb.setParsed(name, string(v))
		default:
			lb.setParsed(name, jsonString(v))
		}
		matches++
	}
	if matches < len(j.Exprs) {
		for _, e := range j.Exprs {
			if _, ok := lb.get(e.Name); !ok {
				lb.setParsed(e.Name, "")
			}
		}
	}
	return line, true
}

// jsonLookup finds the value at path one step at a time, each key or
// [index] looked up in the object or array the step before found.
func jsonLookup(data []byte, path []string) ([]byte, jsonparser.ValueType, error) {
	cur := data
	for i, step := range path {
		v, typ, _, err := jsonparser.Get(cur, step)
		if i == len(path)-1 || err != nil {
			if err != nil && i < len(path)-1 {
				err = jsonparser.KeyPathNotFoundError
			}
			return v, typ, err
		}
		if typ != jsonparser.Object && typ != jsonparser.Array {
			return nil, jsonparser.NotExist, jsonparser.KeyPathNotFoundError
		}
		cur = v
	}
	return nil, jsonparser.NotExist, jsonparser.KeyPathNotFoundError
}

// UnpackParser is `| unpack`: a JSON object line's string fields become
// labels and its _entry field the line (Promtail's pack stage undone).
type UnpackParser struct{}

func (*UnpackParser) stage() {}

func (*UnpackParser) requiredLabels() []string { return nil }

const packedEntryKey = "_entry"

func (*UnpackParser) process(_ int64, line string, lb *lineLabels) (string, bool) {
	if len(line) == 0 || lb.noLabels() {
		return line, true
	}
	if line[0] != '{' {
		lb.setError(errJSON, errNotJSONObject)
		return line, true
	}
	entry, packed := line, false
	var found []string // name, value, …
	err := jsonparser.ObjectEach([]byte(line), func(key, value []byte, typ jsonparser.ValueType, _ int) error {
		if typ != jsonparser.String {
			return nil
		}
		k := string(key)
		if k == packedEntryKey {
			u, err := jsonparser.Unescape(value, nil)
			if err != nil {
				return err
			}
			entry, packed = string(u), true
			return nil
		}
		if lb.collides(k) {
			k += extractedSuffix
		}
		if lb.skip(k) {
			return nil
		}
		found = append(found, SanitizeKey(k), jsonString(value))
		return nil
	})
	if err != nil {
		lb.setError(errJSON, err)
		return line, true
	}
	if packed {
		for i := 0; i < len(found); i += 2 {
			lb.setParsed(found[i], found[i+1])
			if !lb.keepParsing(found[i]) {
				return entry, false
			}
		}
	}
	return entry, true
}

// SanitizeKey turns a field name into a label name as Loki's parsers do:
// spaces trimmed, a leading digit prefixed with '_', every other
// character than ASCII letters, digits and '_' replaced with '_'.
func SanitizeKey(key string) string {
	key = strings.TrimSpace(key)
	if key == "" {
		return ""
	}
	if key[0] >= '0' && key[0] <= '9' {
		key = "_" + key
	}
	return strings.Map(sanitizeRune, key)
}

func sanitizeRune(r rune) rune {
	if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || r >= '0' && r <= '9' {
		return r
	}
	return '_'
}

// JoinSanitized is a nested JSON field's label name: its keys sanitized
// and joined with '_', blank keys left out.
func JoinSanitized(parts []string) string {
	var b strings.Builder
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('_')
		} else if p[0] >= '0' && p[0] <= '9' {
			b.WriteByte('_')
		}
		for _, r := range p {
			b.WriteRune(sanitizeRune(r))
		}
	}
	return b.String()
}

// parseJSONPath reads a json expression: fields joined with '.', ["key"]
// and [index]: user.geo.country, tags[0], user["id"].
func parseJSONPath(expr string) ([]string, error) {
	var out []string
	i := 0
	skipSpace := func() {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n') {
			i++
		}
	}
	field := func() (string, bool) {
		s := i
		for i < len(expr) && (isIdentStart(expr[i]) || s < i && expr[i] >= '0' && expr[i] <= '9') {
			i++
		}
		return expr[s:i], i > s
	}
	for {
		skipSpace()
		if i >= len(expr) {
			break
		}
		switch c := expr[i]; {
		case c == '[':
			i++
			skipSpace()
			if i < len(expr) && expr[i] == '"' {
				i++
				s := i
				for i < len(expr) && expr[i] != '"' && expr[i] != ']' {
					i++
				}
				key := expr[s:i]
				if i < len(expr) && expr[i] == '"' {
					i++
				}
				skipSpace()
				if i >= len(expr) || expr[i] != ']' {
					return nil, errUnexpectedJSON
				}
				i++
				out = append(out, key)
				continue
			}
			s := i
			for i < len(expr) && expr[i] >= '0' && expr[i] <= '9' {
				i++
			}
			if s == i {
				return nil, errUnexpectedJSON
			}
			idx := expr[s:i]
			skipSpace()
			if i >= len(expr) || expr[i] != ']' {
				return nil, errUnexpectedJSON
			}
			i++
			out = append(out, "["+strings.TrimLeft(idx, "0")+"]")
			if out[len(out)-1] == "[]" {
				out[len(out)-1] = "[0]"
			}
		case c == '.' && len(out) > 0:
			i++
			skipSpace()
			f, ok := field()
			if !ok {
				return nil, errUnexpectedJSON
			}
			out = append(out, f)
		case isIdentStart(c) && len(out) == 0:
			f, _ := field()
			out = append(out, f)
		default:
			return nil, errUnexpectedJSON
		}
	}
	if len(out) == 0 {
		return nil, errUnexpectedJSON
	}
	return out, nil
}
