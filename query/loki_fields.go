package query

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/axiomhq/hyperloglog"
	"github.com/buger/jsonparser"
	"github.com/dustin/go-humanize"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/internal/logfmtscan"
	"github.com/lumenobs/lumen/query/logql"
	"github.com/lumenobs/lumen/store"
)

// detectedFieldsParams are a /detected_fields request's, read as Loki
// reads them.
type detectedFieldsParams struct {
	expr       *logql.LogExpr
	start, end time.Time
	lineLimit  int
	fieldLimit int
}

func (a *LokiAPI) readDetectedFieldsParams(r *http.Request) (detectedFieldsParams, error) {
	var p detectedFieldsParams
	var err error
	if p.start, p.end, err = a.lokiBounds(r); err != nil {
		return p, err
	}
	if p.end.Before(p.start) {
		return p, badRequestf(msgEndBeforeStart)
	}
	if p.lineLimit, err = lokiInt(r, "line_limit", 100); err != nil {
		return p, err
	}
	if p.lineLimit <= 0 {
		return p, badRequestf("limit must be a positive value")
	}
	name := "limit"
	if r.FormValue(name) == "" {
		name = "field_limit" // Loki's older name
	}
	if p.fieldLimit, err = lokiInt(r, name, 1000); err != nil {
		return p, err
	}
	if p.fieldLimit <= 0 {
		return p, badRequestf("limit must be a positive value")
	}
	step, err := lokiStepOf(r.FormValue("step"), p.start, p.end)
	if err != nil {
		return p, err
	}
	if step.Milliseconds() <= 0 {
		return p, badRequestf(msgBadStep)
	}
	if p.end.Sub(p.start)/step > 11000 {
		return p, badRequestf(msgTooManySteps)
	}
	e, err := logql.Parse(r.FormValue("query"))
	if err != nil {
		return p, lokiBadRequest{msg: err.Error()}
	}
	le, ok := e.(*logql.LogExpr)
	if !ok {
		return p, badRequestf("only log selector is supported")
	}
	p.expr = le
	if p.lineLimit > a.cfg.MaxLimit {
		return p, badRequestf("max entries limit per query exceeded, limit > max_entries_limit_per_query (%d > %d)", p.lineLimit, a.cfg.MaxLimit)
	}
	return p, nil
}

// fieldLine is one line a detected-fields request looks at: its stream,
// its structured metadata, the labels its query's parsers extracted and
// the line as the query's pipeline left it.
type fieldLine struct {
	stream   labels.Labels
	metadata labels.Labels
	parsed   labels.Labels
	line     string
}

// fieldLines reads the newest lineLimit lines of the query, in the order
// Loki's detected-fields handler sees them: streams sorted by their label
// text, each newest first.
func (a *LokiAPI) fieldLines(r *http.Request, p detectedFieldsParams) ([]fieldLine, error) {
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		return nil, err
	}
	defer done()
	q := store.LogSelect{Matchers: p.expr.Matchers, Start: p.start.UnixNano(), End: p.end.UnixNano(), Limit: p.lineLimit, Backward: true}
	if len(p.expr.Stages) > 0 {
		q.Keep = func(lset labels.Labels, e *store.LogEntry) bool {
			return len(logql.Pipe(p.expr, lset, []store.LogEntry{*e})) > 0
		}
	}
	streams, err := a.r.SelectLogs(ctx, q)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(streams, func(x, y store.LogStream) int { return strings.Compare(x.Labels.String(), y.Labels.String()) })
	var out []fieldLine
	for _, s := range streams {
		for i := len(s.Entries) - 1; i >= 0; i-- {
			e := s.Entries[i]
			fl := fieldLine{stream: s.Labels, metadata: e.Metadata, line: e.Line, parsed: labels.EmptyLabels()}
			if len(p.expr.Stages) > 0 {
				if ls := logql.Pipe(p.expr, s.Labels, []store.LogEntry{e}); len(ls) == 1 {
					fl.line = ls[0].Line
					b := labels.NewScratchBuilder(0)
					ls[0].Labels.Range(func(l labels.Label) {
						if s.Labels.Get(l.Name) != l.Value && e.Metadata.Get(l.Name) != l.Value && !strings.HasPrefix(l.Name, "__") {
							b.Add(l.Name, l.Value)
						}
					})
					fl.parsed = b.Labels()
				}
			}
			out = append(out, fl)
		}
	}
	return out, nil
}

// detectedField is one field of a /detected_fields answer.
type detectedField struct {
	Label       string   `json:"label,omitempty"`
	Type        string   `json:"type,omitempty"`
	Cardinality uint64   `json:"cardinality,omitempty"`
	Parsers     []string `json:"parsers"`
	JSONPath    []string `json:"jsonPath,omitempty"`
}

type detectedFieldsResponse struct {
	Fields []detectedField `json:"fields,omitempty"`
	Values []string        `json:"values,omitempty"`
	Limit  int             `json:"limit,omitempty"`
}

// fieldAcc gathers one field's values.
type fieldAcc struct {
	sketch   *hyperloglog.Sketch
	typ      string
	parsers  []string
	jsonPath []string
}

// detectedFields answers /loki/api/v1/detected_fields: the fields of the
// newest line_limit lines (100 by default) — structured metadata, and
// what the json parser (or, where it fails, logfmt) finds in each line —
// with each field's type (of its last value seen), its cardinality (a
// HyperLogLog estimate, exact for small sets) and its parsers.
func (a *LokiAPI) detectedFields(w http.ResponseWriter, r *http.Request) {
	p, err := a.readDetectedFieldsParams(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	lines, err := a.fieldLines(r, p)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	fields := map[string]*fieldAcc{}
	get := func(name string, parsers []string) *fieldAcc {
		f, ok := fields[name]
		if !ok && len(fields) < p.fieldLimit {
			f = &fieldAcc{sketch: hyperloglog.New(), typ: "string", parsers: slices.Clone(parsers)}
			fields[name] = f
		}
		return f
	}
	for _, fl := range lines {
		fl.metadata.Range(func(l labels.Label) {
			if f := get(l.Name, nil); f != nil {
				f.typ = fieldType(l.Value)
				f.sketch.Insert([]byte(l.Value))
			}
		})
		pf := parseFields(fl)
		for _, kv := range pf.values {
			f := get(kv.name, pf.parsers)
			if f == nil {
				continue
			}
			for _, ps := range pf.parsers {
				if !slices.Contains(f.parsers, ps) {
					f.parsers = append(f.parsers, ps)
				}
			}
			if slices.Contains(pf.parsers, "json") {
				f.jsonPath = pf.paths[kv.name]
			}
			f.typ = fieldType(kv.value)
			f.sketch.Insert([]byte(kv.value))
		}
	}
	var resp detectedFieldsResponse
	for name, f := range fields {
		ps := f.parsers
		if len(ps) == 0 {
			ps = nil
		}
		resp.Fields = append(resp.Fields, detectedField{Label: name, Type: f.typ, Cardinality: f.sketch.Estimate(), Parsers: ps, JSONPath: f.jsonPath})
	}
	slices.SortFunc(resp.Fields, func(x, y detectedField) int { return strings.Compare(x.Label, y.Label) })
	if len(resp.Fields) > 0 {
		resp.Limit = p.fieldLimit
	}
	writeJSON(w, http.StatusOK, resp)
}

// detectedFieldValues answers /loki/api/v1/detected_field/{name}/values:
// the distinct values of one field in the newest line_limit lines, byte
// sizes written as Loki writes them (12KB → 12kB), at most limit.
func (a *LokiAPI) detectedFieldValues(w http.ResponseWriter, r *http.Request) {
	p, err := a.readDetectedFieldsParams(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	name := r.PathValue("name")
	lines, err := a.fieldLines(r, p)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	seen := map[string]bool{}
	for _, fl := range lines {
		if len(seen) >= p.fieldLimit {
			break
		}
		if fl.metadata.Has(name) {
			seen[fl.metadata.Get(name)] = true
		}
		for _, kv := range parseFields(fl).values {
			if kv.name != name {
				continue
			}
			v := kv.value
			if n, err := humanize.ParseBytes(v); err == nil && hasBytesUnit(strings.ToLower(v)) {
				v = strings.Replace(humanize.Bytes(n), " ", "", 1)
			}
			seen[v] = true
		}
	}
	var resp detectedFieldsResponse
	for v := range seen {
		resp.Values = append(resp.Values, v)
	}
	slices.Sort(resp.Values)
	if len(resp.Values) > 0 {
		resp.Limit = p.fieldLimit
	}
	writeJSON(w, http.StatusOK, resp)
}

var bytesUnits = []string{"b", "kib", "kb", "mib", "mb", "gib", "gb", "tib", "tb", "pib", "pb", "eib", "eb",
	"ki", "k", "mi", "m", "gi", "g", "ti", "t", "pi", "p", "ei", "e"}

func hasBytesUnit(v string) bool {
	return slices.ContainsFunc(bytesUnits, func(u string) bool { return strings.HasSuffix(v, u) })
}

// fieldType is the type Loki gives a field from one of its values: the
// first of int, float, boolean, duration and bytes it parses as, else
// string.
func fieldType(v string) string {
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		return "int"
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return "float"
	}
	if _, err := strconv.ParseBool(v); err == nil {
		return "boolean"
	}
	if _, err := time.ParseDuration(v); err == nil {
		return "duration"
	}
	if _, err := humanize.ParseBytes(v); err == nil {
		return "bytes"
	}
	return "string"
}

type fieldKV struct{ name, value string }

// parsedFields are the fields found in one line and by which parser.
type parsedFields struct {
	values  []fieldKV
	paths   map[string][]string
	parsers []string
}

// parseFields finds a line's fields as Loki's detected-fields handler
// does: the labels the query's own parsers extracted, and the line parsed
// as JSON (nested keys joined with _, arrays skipped) or, when it is not
// JSON, as logfmt (empty values skipped). A name that is also a stream
// label gets the suffix _extracted; the first of a name wins.
func parseFields(fl fieldLine) parsedFields {
	var pf parsedFields
	fl.parsed.Range(func(l labels.Label) {
		if l.Name != "__error__" && l.Name != "__error_details__" && l.Name != "__preserve_error__" {
			pf.values = append(pf.values, fieldKV{l.Name, l.Value})
		}
	})
	base := labels.NewBuilder(fl.stream)
	fl.parsed.Range(func(l labels.Label) { base.Del(l.Name) })
	stream := base.Labels()
	seen := map[string]bool{}
	for _, kv := range pf.values {
		seen[kv.name] = true
	}
	add := func(name, value string) {
		if !seen[name] {
			seen[name] = true
			pf.values = append(pf.values, fieldKV{name, value})
		}
	}
	if vals, paths, ok := jsonFields(fl.line, stream); ok {
		pf.parsers, pf.paths = []string{"json"}, paths
		for _, kv := range vals {
			add(kv.name, kv.value)
		}
		return pf
	}
	pf.parsers = []string{"logfmt"}
	var s logfmtscan.Scanner
	s.Reset([]byte(fl.line))
	local := map[string]bool{}
	for !s.Done() {
		if !s.Scan() {
			continue
		}
		key := logql.SanitizeKey(string(s.Key()))
		if key == "" {
			continue
		}
		if stream.Has(key) {
			key += "_extracted"
		}
		if local[key] {
			continue
		}
		v := s.Value()
		if bytes.ContainsRune(v, utf8.RuneError) {
			v = bytes.Map(invalidToSpace, v)
		}
		if len(v) == 0 {
			continue
		}
		local[key] = true
		add(key, string(v))
	}
	return pf
}

func invalidToSpace(r rune) rune {
	if r == utf8.RuneError {
		return ' '
	}
	return r
}

// jsonFields flattens a JSON object line as Loki's json parser does;
// false when the line is not a JSON object.
func jsonFields(line string, stream labels.Labels) ([]fieldKV, map[string][]string, bool) {
	var out []fieldKV
	paths := map[string][]string{}
	seen := map[string]bool{}
	var walk func(data []byte, prefix []string) error
	walk = func(data []byte, prefix []string) error {
		return jsonparser.ObjectEach(data, func(key, value []byte, typ jsonparser.ValueType, _ int) error {
			switch typ {
			case jsonparser.Object:
				return walk(value, append(prefix[:len(prefix):len(prefix)], string(key)))
			case jsonparser.String, jsonparser.Number, jsonparser.Boolean:
			default:
				return nil
			}
			var name string
			path := append(prefix[:len(prefix):len(prefix)], string(key))
			if len(prefix) == 0 {
				name = logql.SanitizeKey(string(key))
				if name == "" {
					return nil
				}
				if stream.Has(name) {
					name += "_extracted"
				}
			} else {
				name = logql.JoinSanitized(path)
				if stream.Has(name) {
					path[len(path)-1] += "_extracted"
					name = logql.JoinSanitized(path)
					path[len(path)-1] = strings.TrimSuffix(path[len(path)-1], "_extracted")
				}
			}
			if seen[name] {
				return nil
			}
			seen[name] = true
			out = append(out, fieldKV{name, logql.JSONValue(value, typ)})
			paths[name] = path
			return nil
		})
	}
	if err := walk([]byte(line), nil); err != nil {
		return nil, nil, false
	}
	return out, paths, true
}
