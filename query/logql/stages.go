package logql

import (
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
)

// processor is what a pipeline stage does to one line: it returns the
// line, changed or not, and false to drop it.
type processor interface {
	process(ts int64, line string, lb *lineLabels) (string, bool)
	// requiredLabels is the labels the stage reads (Loki's hints for
	// metric queries' parsers).
	requiredLabels() []string
}

// LineFilter keeps lines that contain (|=), do not contain (!=), match
// (|~), do not match (!~), follow (|>) or do not follow (!>) one of its
// values; `|= ip("…")` and `!= ip("…")` look for addresses.
type LineFilter struct {
	Op     string // |=, !=, |~, !~, |>, !>
	Values []string
	ms     []strFilter
}

func (*LineFilter) stage() {}

func (*LineFilter) requiredLabels() []string { return nil }

func (f *LineFilter) process(_ int64, line string, _ *lineLabels) (string, bool) {
	return line, f.match(line)
}

// negated reports whether the filter keeps lines that match none of its
// values.
func (f *LineFilter) negated() bool { return f.Op[0] == '!' }

func (f *LineFilter) match(line string) bool {
	hit := false
	for _, m := range f.ms {
		if hit = m.match(line); hit {
			break
		}
	}
	return hit != f.negated()
}

// newLineMatcher builds the matcher of one value of a line filter.
func newLineMatcher(op, value string, ip bool) (strFilter, error) {
	if ip {
		r, err := parseIPRange(value)
		if err != nil {
			return nil, err
		}
		return ipLineFilter{r}, nil
	}
	switch op {
	case "|=", "!=":
		return newContainsFilter(value, false), nil
	case "|>", "!>":
		nodes, err := parseLineFilterPattern(value)
		if err != nil {
			return nil, err
		}
		return patternLineFilter{nodes}, nil
	}
	return newLineRegexp(value)
}

// newLineRegexp is a line regexp, turned into literal comparisons where
// Loki does so.
func newLineRegexp(expr string) (strFilter, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	parsed, err := parseSimplified(expr)
	if err != nil {
		return regexFilter{re}, nil
	}
	if f, ok := simplifyRegexp(parsed, false); ok {
		return f, nil
	}
	return regexFilter{re}, nil
}

type ipLineFilter struct{ r ipRange }

func (f ipLineFilter) match(s string) bool { return f.r.inLine(s) }

type patternLineFilter struct{ nodes []patternNode }

func (f patternLineFilter) match(s string) bool { return testPattern(f.nodes, s) }

func parseLineFilterPattern(s string) ([]patternNode, error) {
	if s == "" {
		return nil, nil
	}
	nodes, err := parsePattern(s)
	if err != nil {
		return nil, err
	}
	if err := checkNoConsecutive(nodes); err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if n.isCapture() && n.capture != "_" {
			return nil, errNamedCapture(n)
		}
	}
	return nodes, nil
}

func errNamedCapture(n patternNode) error {
	return &wrapErr{msg: errNamedInLine.Error() + ": found '" + n.String() + "'", err: errNamedInLine}
}

type wrapErr struct {
	msg string
	err error
}

func (e *wrapErr) Error() string { return e.msg }
func (e *wrapErr) Unwrap() error { return e.err }

// RegexpParser is `| regexp "…"`: the regexp's named groups become labels
// when it matches the line.
type RegexpParser struct {
	Regexp string
	re     *regexp.Regexp
	names  map[int]string
}

func (*RegexpParser) stage() {}

func (*RegexpParser) requiredLabels() []string { return nil }

func (r *RegexpParser) process(_ int64, line string, lb *lineLabels) (string, bool) {
	for i, v := range r.re.FindStringSubmatch(line) {
		if name, ok := r.names[i]; ok && !lb.extract(name, v) {
			return line, false
		}
	}
	return line, true
}

// LineFormat is `| line_format "…"`: the line becomes the template's
// output over the line's labels.
type LineFormat struct {
	Src    string
	t      *fmtTemplate
	simple string // the label of a template that is just {{.label}}
}

func (*LineFormat) stage() {}

func (f *LineFormat) requiredLabels() []string { return f.t.fields() }

func (f *LineFormat) process(ts int64, line string, lb *lineLabels) (string, bool) {
	if f.simple != "" {
		v, _ := lb.get(f.simple)
		return v, true
	}
	m := make(map[string]string, 16)
	lb.toMap(m)
	out, err := f.t.execute(m, line, ts)
	if err != nil {
		lb.err, lb.errDetails = errTemplate, err.Error()
		return line, true
	}
	return out, true
}

// LabelFmt is one label of label_format: Name=Value renames the label
// Value to Name; Name="template" sets Name to the template's output.
type LabelFmt struct {
	Name, Value string
	Rename      bool
	t           *fmtTemplate
}

// LabelFormat is `| label_format a=b, c="{{…}}"`.
type LabelFormat struct{ Fmts []LabelFmt }

func (*LabelFormat) stage() {}

func (f *LabelFormat) requiredLabels() []string {
	var out []string
	for _, l := range f.Fmts {
		if l.Rename {
			out = append(out, l.Value)
		} else {
			out = append(out, l.t.fields()...)
		}
	}
	return out
}

// process renames and formats in order; templates see the labels as they
// were before the first template of the stage ran.
func (f *LabelFormat) process(ts int64, line string, lb *lineLabels) (string, bool) {
	m := map[string]string{}
	for _, l := range f.Fmts {
		if l.Rename {
			if v, _, ok := lb.getCat(l.Value); ok {
				lb.setParsed(l.Name, v)
				lb.drop(l.Value)
			}
			continue
		}
		if len(m) == 0 {
			lb.toMap(m)
		}
		out, err := l.t.execute(m, line, ts)
		if err != nil {
			lb.err, lb.errDetails = errTemplate, err.Error()
			continue
		}
		lb.setParsed(l.Name, out)
	}
	return line, true
}

// LabelName names a label of drop or keep, or with M a label and the
// values to match.
type LabelName struct {
	Name string
	M    *labels.Matcher
}

// DropLabels is `| drop a, b="x"`: it removes the labels (those whose
// value matches); dropping __error__ clears the line's error.
type DropLabels struct{ Labels []LabelName }

func (*DropLabels) stage() {}

func (*DropLabels) requiredLabels() []string { return nil }

func (d *DropLabels) process(_ int64, line string, lb *lineLabels) (string, bool) {
	for _, l := range d.Labels {
		if l.M == nil {
			switch l.Name {
			case errorLabel:
				lb.err = ""
			case errorDetailsLabel:
				lb.errDetails = ""
			default:
				if _, ok := lb.get(l.Name); ok {
					lb.drop(l.Name)
				}
			}
			continue
		}
		switch l.M.Name {
		case errorLabel:
			if l.M.Matches(lb.err) {
				lb.err = ""
			}
		case errorDetailsLabel:
			if l.M.Matches(lb.errDetails) {
				lb.errDetails = ""
			}
		default:
			if v, _ := lb.get(l.M.Name); l.M.Matches(v) {
				lb.drop(l.M.Name)
			}
		}
	}
	return line, true
}

// KeepLabels is `| keep a, b="x"`: it removes every other label (and
// those whose value does not match); the error labels stay.
type KeepLabels struct{ Labels []LabelName }

func (*KeepLabels) stage() {}

func (*KeepLabels) requiredLabels() []string { return nil }

func (k *KeepLabels) process(_ int64, line string, lb *lineLabels) (string, bool) {
	if len(k.Labels) == 0 {
		return line, true
	}
	for _, l := range lb.list() {
		switch l.Name {
		case errorLabel, errorDetailsLabel, preserveErrLabel:
			continue
		}
		keep := slices.ContainsFunc(k.Labels, func(n LabelName) bool {
			return n.M != nil && n.M.Name == l.Name && n.M.Matches(l.Value) || n.Name == l.Name
		})
		if !keep {
			lb.drop(l.Name)
		}
	}
	return line, true
}

// execOrder is the order Loki runs stages in: line filters move ahead of
// the stages before them that do not change the line (parsers, label
// formats, drop, keep, decolorize), but not past a label filter,
// line_format or unpack.
func execOrder(stages []Stage) []Stage {
	out := make([]Stage, 0, len(stages))
	var filters, others []Stage
	flush := func() {
		out = append(out, filters...)
		out = append(out, others...)
		filters, others = filters[:0], others[:0]
	}
	for _, st := range stages {
		switch st.(type) {
		case *LabelFilter:
			flush()
			out = append(out, st)
		case *LineFilter:
			filters = append(filters, st)
		case *LineFormat, *UnpackParser:
			others = append(others, st)
			flush()
		default:
			others = append(others, st)
		}
	}
	flush()
	return out
}

// newHints builds Loki's parser hints from the stages: for a log query
// (required nil, not noLabels, no groups) only the label filters a parser
// applies early.
func newHints(stages []Stage, required, groups []string, without, noLabels bool, metricLabel string) *hints {
	var names []string
	add := func(ls ...string) {
		for _, l := range ls {
			names = append(names, l)
			if base, ok := strings.CutSuffix(l, extractedSuffix); ok {
				names = append(names, base)
			}
		}
	}
	add(required...)
	add(groups...)
	add(metricLabel)
	names = uniqueNonEmpty(names)

	var filters []hintFilter
	for _, st := range stages {
		f, ok := st.(*LabelFilter)
		if !ok {
			continue
		}
		switch f.Pred.(type) {
		case And, Or:
			continue
		}
		ls := predLabels(f.Pred, nil)
		if len(ls) == 1 {
			filters = append(filters, hintFilter{name: ls[0], pred: f.Pred})
		}
	}
	if noLabels {
		if len(names) > 0 {
			return &hints{required: names, preserveErr: slices.Contains(names, errorLabel), filters: filters}
		}
		return &hints{noLabels: true}
	}
	if without || len(groups) == 0 {
		return &hints{filters: filters}
	}
	return &hints{required: names, preserveErr: slices.Contains(names, errorLabel)}
}

func uniqueNonEmpty(s []string) []string {
	var out []string
	for _, v := range s {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// stagesRequire lists the labels the stages read.
func stagesRequire(stages []Stage) []string {
	var out []string
	for _, st := range stages {
		if p, ok := st.(processor); ok {
			out = append(out, p.requiredLabels()...)
		}
	}
	return out
}
