package logql

import (
	"slices"

	"github.com/prometheus/prometheus/model/labels"
)

// The labels of one line while a pipeline runs, kept as Loki keeps them:
// the stream's labels (the base, never changed), and labels added in three
// categories, stream, structured metadata and parsed, where a parsed label
// hides a structured-metadata one of the same name and both hide a stream
// label. __error__ and __error_details__ are held apart from the labels: a
// label filter on __error__ reads the error, and only a string matcher can
// drop a line for it.

const (
	errorLabel        = "__error__"
	errorDetailsLabel = "__error_details__"
	preserveErrLabel  = "__preserve_error__"
	extractedSuffix   = "_extracted"
)

// Error values a pipeline sets, as Loki names them.
const (
	errJSON        = "JSONParserErr"
	errLogfmt      = "LogfmtParserErr"
	errLabelFilter = "LabelFilterErr"
	errTemplate    = "TemplateFormatErr"
)

type category int

const (
	catStream category = iota
	catMeta
	catParsed
)

// lineLabels is one line's labels as the stages change them.
type lineLabels struct {
	base labels.Labels
	add  [3][]labels.Label
	del  []string

	err, errDetails string

	hints *hints
	// extracted is the names parsed on this line so far: a parser does
	// not parse a name again, so the first value found wins.
	extracted map[string]struct{}
}

func newLineLabels(base labels.Labels, h *hints) *lineLabels {
	if h == nil {
		h = &hints{}
	}
	return &lineLabels{base: base, hints: h}
}

// addMeta adds a line's structured metadata: a name the stream has already
// gets the suffix _extracted; __error__ and __error_details__ set the
// error.
func (lb *lineLabels) addMeta(md labels.Labels) {
	md.Range(func(l labels.Label) {
		name := l.Name
		if lb.base.Has(name) {
			name += extractedSuffix
		}
		switch name {
		case errorLabel:
			lb.err = l.Value
		case errorDetailsLabel:
			lb.errDetails = l.Value
		default:
			lb.set(catMeta, name, l.Value)
		}
	})
}

func findLabel(ls []labels.Label, name string) (int, bool) {
	for i, l := range ls {
		if l.Name == name {
			return i, true
		}
	}
	return -1, false
}

func (lb *lineLabels) inCat(name string, c category) bool {
	_, ok := findLabel(lb.add[c], name)
	return ok
}

// baseHas reports whether the stream's labels have name, even if a stage
// dropped it since.
func (lb *lineLabels) baseHas(name string) bool { return lb.base.Has(name) }

// collides reports whether a parsed name must take the suffix _extracted:
// the stream or the structured metadata has it.
func (lb *lineLabels) collides(name string) bool {
	return lb.baseHas(name) || lb.inCat(name, catMeta)
}

// get returns a label's value and whether it is set (an empty stream
// label is not).
func (lb *lineLabels) get(name string) (string, bool) {
	v, _, ok := lb.getCat(name)
	return v, ok
}

func (lb *lineLabels) getCat(name string) (string, category, bool) {
	for c := range lb.add {
		if i, ok := findLabel(lb.add[c], name); ok {
			return lb.add[c][i].Value, category(c), true
		}
	}
	if slices.Contains(lb.del, name) {
		return "", 0, false
	}
	if v := lb.base.Get(name); v != "" {
		return v, catStream, true
	}
	return "", 0, false
}

func deleteLabel(ls []labels.Label, name string) []labels.Label {
	return slices.DeleteFunc(ls, func(l labels.Label) bool { return l.Name == name })
}

// set sets a label in a category. A parsed label replaces the other
// categories' one; structured metadata does not replace a parsed label.
func (lb *lineLabels) set(c category, name, value string) {
	switch c {
	case catParsed:
		lb.add[catMeta] = deleteLabel(lb.add[catMeta], name)
		lb.add[catStream] = deleteLabel(lb.add[catStream], name)
	case catMeta:
		lb.add[catStream] = deleteLabel(lb.add[catStream], name)
		if lb.inCat(name, catParsed) {
			return
		}
	case catStream:
		if lb.inCat(name, catMeta) || lb.inCat(name, catParsed) {
			return
		}
	}
	if i, ok := findLabel(lb.add[c], name); ok {
		lb.add[c][i].Value = value
		return
	}
	lb.add[c] = append(lb.add[c], labels.Label{Name: name, Value: value})
	if c == catParsed {
		if lb.extracted == nil {
			lb.extracted = map[string]struct{}{}
		}
		lb.extracted[name] = struct{}{}
	}
}

// setParsed is how parsers set a label.
func (lb *lineLabels) setParsed(name, value string) { lb.set(catParsed, name, value) }

// drop deletes labels.
func (lb *lineLabels) drop(names ...string) {
	for _, n := range names {
		for c := range lb.add {
			lb.add[c] = deleteLabel(lb.add[c], n)
		}
		lb.del = append(lb.del, n)
	}
}

// setError marks the line with an error and, when err is not nil, its
// details.
func (lb *lineLabels) setError(kind string, err error) {
	lb.err = kind
	if err != nil {
		lb.errDetails = err.Error()
	}
	if lb.hints.preserveErr {
		lb.setParsed(preserveErrLabel, "true")
	}
}

func (lb *lineLabels) hasErr() bool { return lb.err != "" }

// list returns the labels, unsorted: the stream's that are neither
// dropped nor hidden, structured metadata, parsed labels, then the error.
func (lb *lineLabels) list() []labels.Label {
	out := make([]labels.Label, 0, lb.base.Len()+len(lb.add[0])+len(lb.add[1])+len(lb.add[2])+2)
	lb.base.Range(func(l labels.Label) {
		if slices.Contains(lb.del, l.Name) || lb.inCat(l.Name, catMeta) || lb.inCat(l.Name, catParsed) {
			return
		}
		if i, ok := findLabel(lb.add[catStream], l.Name); ok {
			l.Value = lb.add[catStream][i].Value
		}
		out = append(out, l)
	})
	for _, l := range lb.add[catMeta] {
		if !lb.inCat(l.Name, catParsed) {
			out = append(out, l)
		}
	}
	out = append(out, lb.add[catParsed]...)
	if lb.err != "" {
		out = append(out, labels.Label{Name: errorLabel, Value: lb.err})
	}
	if lb.errDetails != "" {
		out = append(out, labels.Label{Name: errorDetailsLabel, Value: lb.errDetails})
	}
	return out
}

// unchanged reports whether the labels are the stream's: nothing added
// or dropped and no error. Error details alone (once a drop cleared the
// error) do not show then, as in Loki.
func (lb *lineLabels) unchanged() bool {
	return len(lb.del) == 0 && len(lb.add[0])+len(lb.add[1])+len(lb.add[2]) == 0 && lb.err == ""
}

// labels returns the line's labels, sorted.
func (lb *lineLabels) labels() labels.Labels {
	if lb.unchanged() {
		return lb.base
	}
	return labels.New(lb.list()...)
}

// toMap fills m with the labels, as templates see them.
func (lb *lineLabels) toMap(m map[string]string) {
	if lb.unchanged() {
		lb.base.Range(func(l labels.Label) { m[l.Name] = l.Value })
		return
	}
	for _, l := range lb.list() {
		m[l.Name] = l.Value
	}
}

// hints are what a metric query tells its parsers (Loki's parser hints):
// which labels it needs, so that parsers extract no others and stop once
// they have them, and the label filters a parser can apply as soon as it
// sets their label. A log query's hints only hold the filters.
type hints struct {
	required    []string // nil: all labels
	noLabels    bool
	preserveErr bool
	filters     []hintFilter
}

type hintFilter struct {
	name string
	pred Pred
}

// shouldExtract reports whether a parser extracts name at all.
func (h *hints) shouldExtract(name string) bool {
	return len(h.required) == 0 || slices.Contains(h.required, name)
}

// shouldExtractPrefix reports whether a required label starts with prefix
// (nested JSON objects).
func (h *hints) shouldExtractPrefix(prefix string) bool {
	if len(h.required) == 0 {
		return true
	}
	for _, r := range h.required {
		if len(r) >= len(prefix) && r[:len(prefix)] == prefix {
			return true
		}
	}
	return false
}

// wasExtracted reports whether a parser set name on this line already.
func (lb *lineLabels) wasExtracted(name string) bool {
	_, ok := lb.extracted[name]
	return ok
}

// allRequired reports whether every required label has been extracted.
func (lb *lineLabels) allRequired() bool {
	h := lb.hints
	if len(h.required) == 0 || len(lb.extracted) < len(h.required) {
		return false
	}
	for _, r := range h.required {
		if !lb.wasExtracted(r) {
			return false
		}
	}
	return true
}

// noLabels reports whether parsers have nothing (left) to extract.
func (lb *lineLabels) noLabels() bool { return lb.hints.noLabels || lb.allRequired() }

// skip reports whether a parser leaves name alone: not wanted, or parsed
// already.
func (lb *lineLabels) skip(name string) bool {
	return !lb.hints.shouldExtract(name) || lb.wasExtracted(name)
}

// extract sets a label a parser found, as parsers do: as name_extracted
// when name is a stream label or metadata, not at all when skip says so.
// false drops the line (keepParsing).
func (lb *lineLabels) extract(name, value string) bool {
	if lb.collides(name) {
		name += extractedSuffix
	}
	if lb.skip(name) {
		return true
	}
	lb.setParsed(name, value)
	return lb.keepParsing(name)
}

// keepParsing applies the first label filter of the pipeline on name, if
// any, as soon as a parser set it: false drops the line.
func (lb *lineLabels) keepParsing(name string) bool {
	for _, f := range lb.hints.filters {
		if f.name == name {
			return evalPred(f.pred, lb)
		}
	}
	return true
}
