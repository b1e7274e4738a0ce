// Package logfields adds to log lines, as they are received, the fields
// Loki 3 adds at ingest, so that the streams and lines Grafana's Logs
// Drilldown lists look the same on Lumen: a service_name stream label
// taken from the first of a list of labels (or "unknown_service"), and a
// detected_level structured-metadata field taken from a level label or
// field, or guessed from the line's words. Both are configured as Loki's
// limits_config discover_service_name, discover_log_levels,
// log_level_fields and log_level_from_json_max_depth are.
package logfields

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/buger/jsonparser"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/store"
)

// Names of what is added.
const (
	ServiceNameLabel = "service_name"
	UnknownService   = "unknown_service"
	LevelLabel       = store.LevelLabel
	UnknownLevel     = "unknown"
)

// Config says what is discovered.
type Config struct {
	// DiscoverServiceName lists the labels whose value becomes a stream's
	// service_name when it has none; the first present wins, and a stream
	// with none of them gets "unknown_service". Empty turns it off.
	DiscoverServiceName []string `yaml:"discover_service_name"`
	// DiscoverLogLevels adds detected_level to every line that has none.
	DiscoverLogLevels bool `yaml:"discover_log_levels"`
	// LogLevelFields are the label, metadata, JSON and logfmt field names
	// a level is read from, in order.
	LogLevelFields []string `yaml:"log_level_fields"`
	// LogLevelFromJSONMaxDepth is how deep JSON objects are searched for
	// a level field; 0 or less is no limit.
	LogLevelFromJSONMaxDepth int `yaml:"log_level_from_json_max_depth"`
}

// DefaultConfig is Loki 3's default.
func DefaultConfig() Config {
	return Config{
		DiscoverServiceName: []string{"service", "app", "application", "app_name", "name", "app_kubernetes_io_name",
			"container", "container_name", "k8s_container_name", "component", "workload", "job", "k8s_job_name"},
		DiscoverLogLevels:        true,
		LogLevelFields:           []string{"level", "LEVEL", "Level", "log.level", "severity", "SEVERITY", "Severity", "SeverityText", "lvl", "LVL", "Lvl", "severity_text", "Severity_Text", "SEVERITY_TEXT"},
		LogLevelFromJSONMaxDepth: 2,
	}
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	for _, n := range append(append([]string(nil), c.DiscoverServiceName...), c.LogLevelFields...) {
		if n == "" {
			return fmt.Errorf("log fields: an empty name in discover_service_name or log_level_fields")
		}
	}
	return nil
}

// Detector applies a Config.
type Detector struct {
	cfg    Config
	fields map[string]bool
}

// New returns a detector for cfg; nil when it discovers nothing.
func New(cfg Config) *Detector {
	if len(cfg.DiscoverServiceName) == 0 && !cfg.DiscoverLogLevels {
		return nil
	}
	if len(cfg.LogLevelFields) == 0 {
		cfg.LogLevelFields = DefaultConfig().LogLevelFields
	}
	d := &Detector{cfg: cfg, fields: map[string]bool{}}
	for _, f := range cfg.LogLevelFields {
		d.fields[f] = true
	}
	return d
}

// Stream returns lset with a service_name when discovery is on and it has
// none.
func (d *Detector) Stream(lset labels.Labels) labels.Labels {
	if d == nil || len(d.cfg.DiscoverServiceName) == 0 || lset.Has(ServiceNameLabel) {
		return lset
	}
	name := UnknownService
	for _, l := range d.cfg.DiscoverServiceName {
		if v := lset.Get(l); v != "" {
			name = v
			break
		}
	}
	return labels.NewBuilder(lset).Set(ServiceNameLabel, name).Labels()
}

// Apply adds service_name to each stream and detected_level to each of its
// lines, in place.
func (d *Detector) Apply(streams []store.LogStream) {
	if d == nil {
		return
	}
	for i := range streams {
		streams[i].Labels = d.Stream(streams[i].Labels)
		if !d.cfg.DiscoverLogLevels {
			continue
		}
		fromStream, ok := d.streamLevel(streams[i].Labels)
		for j := range streams[i].Entries {
			e := &streams[i].Entries[j]
			if lvl, set := d.level(fromStream, ok, e); set {
				e.Metadata = withLevel(e.Metadata, lvl)
			}
		}
	}
}

// withLevel is md with detected_level set to lvl.
func withLevel(md labels.Labels, lvl string) labels.Labels {
	if md.IsEmpty() {
		if ls, ok := store.LevelOnly(lvl); ok {
			return ls // shared with every line of that level, and with those read back from blocks
		}
	}
	return labels.NewBuilder(md).Set(LevelLabel, lvl).Labels()
}

// streamLevel is the level a stream's labels give its lines, if any.
func (d *Detector) streamLevel(stream labels.Labels) (string, bool) {
	for _, f := range d.cfg.LogLevelFields {
		if stream.Has(f) {
			return Normalise(stream.Get(f)), true
		}
	}
	return "", false
}

// level is the detected_level to set on e: a present one normalised, or
// one from the stream's labels (fromStream, when inStream), the line's
// metadata or the line itself.
func (d *Detector) level(fromStream string, inStream bool, e *store.LogEntry) (string, bool) {
	if e.Metadata.IsEmpty() {
		if inStream {
			return fromStream, true
		}
		return d.fromLine(e.Line), true
	}
	if v := e.Metadata.Get(LevelLabel); e.Metadata.Has(LevelLabel) {
		n := Normalise(v)
		return n, n != v
	}
	if inStream {
		return fromStream, true
	}
	for _, f := range d.cfg.LogLevelFields {
		if e.Metadata.Has(f) {
			return Normalise(e.Metadata.Get(f)), true
		}
	}
	if v := e.Metadata.Get("severity_number"); v != "" {
		return fromSeverityNumber(v), true
	}
	return d.fromLine(e.Line), true
}

// Normalise maps the usual spellings of a level to Loki's names; anything
// else is kept as it is.
func Normalise(v string) string {
	switch strings.ToLower(v) {
	case "trace", "trc":
		return "trace"
	case "debug", "dbg":
		return "debug"
	case "info", "inf", "information":
		return "info"
	case "warn", "wrn", "warning":
		return "warn"
	case "error", "err":
		return "error"
	case "critical":
		return "critical"
	case "fatal":
		return "fatal"
	}
	return v
}

// fromSeverityNumber maps an OTLP severity number to a level.
func fromSeverityNumber(v string) string {
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		return "info"
	case n == 0:
		return UnknownLevel
	case n <= 4:
		return "trace"
	case n <= 8:
		return "debug"
	case n <= 12:
		return "info"
	case n <= 16:
		return "warn"
	case n <= 20:
		return "error"
	case n <= 24:
		return "fatal"
	}
	return UnknownLevel
}

func (d *Detector) fromLine(line string) string {
	var v string
	switch {
	case isJSON(line):
		v = d.jsonLevel(line)
	case strings.Contains(line, "="):
		v = d.logfmtLevel(line)
	default:
		return wordLevel(line)
	}
	if n := Normalise(v); n != v || isLevel(n) {
		return n
	}
	return wordLevel(line)
}

func isLevel(v string) bool {
	switch v {
	case "trace", "debug", "info", "warn", "error", "critical", "fatal":
		return true
	}
	return false
}

// isJSON: the line's first and last non-space characters are braces.
func isJSON(line string) bool {
	t := strings.TrimFunc(line, unicode.IsSpace)
	return len(t) >= 2 && t[0] == '{' && t[len(t)-1] == '}'
}

// jsonLevel is the first string value, in document order, under a level
// field name, in objects at most the configured depth deep (Loki walks the
// line with jsonparser the same way). A malformed line keeps what was found
// before the fault.
func (d *Detector) jsonLevel(line string) string {
	found := ""
	var walk func(data []byte, depth int) error
	walk = func(data []byte, depth int) error {
		if d.cfg.LogLevelFromJSONMaxDepth > 0 && depth >= d.cfg.LogLevelFromJSONMaxDepth {
			return nil
		}
		return jsonparser.ObjectEach(data, func(key, value []byte, typ jsonparser.ValueType, _ int) error {
			switch typ {
			case jsonparser.String:
				if d.fields[string(key)] {
					found = string(value)
					return errFound
				}
			case jsonparser.Object:
				return walk(value, depth+1)
			}
			return nil
		})
	}
	// jsonparser only reads: the line is walked in place, not copied.
	_ = walk(unsafe.Slice(unsafe.StringData(line), len(line)), 0)
	return found
}

// errFound stops the walk at the level field.
var errFound = errors.New("found")

// logfmtLevel is the value of the earliest-listed level field among the
// line's logfmt pairs (names compared without case), read until the line
// stops being logfmt.
func (d *Detector) logfmtLevel(line string) string {
	best, res := len(d.cfg.LogLevelFields), ""
	for i := 0; i < len(line); {
		for i < len(line) && line[i] <= ' ' {
			i++
		}
		ks := i
		for i < len(line) && line[i] > ' ' && line[i] != '=' && line[i] != '"' {
			i++
		}
		if i == ks {
			return res
		}
		key := line[ks:i]
		vs, ve, quoted := i, i, false
		if i < len(line) && line[i] == '=' {
			i++
			if i < len(line) && line[i] == '"' {
				quoted, vs = true, i+1
				for i++; i < len(line) && line[i] != '"'; i++ {
					if line[i] == '\\' {
						i++
					}
				}
				if i >= len(line) {
					return res // an unterminated quote ends the pairs
				}
				ve = i
				i++
			} else {
				for vs = i; i < len(line) && line[i] > ' '; i++ {
				}
				ve = i
			}
		}
		for x, f := range d.cfg.LogLevelFields[:best] {
			if strings.EqualFold(key, f) {
				best, res = x, line[vs:ve]
				if quoted {
					res = unescape(res)
				}
				if x == 0 {
					return res
				}
				break
			}
		}
	}
	return res
}

// unescape drops the backslash of each escaped byte of a quoted value.
func unescape(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var levelWords = []struct{ word, level string }{
	{"trace", "trace"}, {"debug", "debug"}, {"fatal", "fatal"}, {"critical", "critical"},
	{"error", "error"}, {"err", "error"}, {"warning", "warn"}, {"warn", "warn"}, {"info", "info"},
}

// wordLevel guesses a level from the earliest level word standing on its
// own in the line ("unknown" when there is none).
func wordLevel(line string) string {
	if lvl, ok := asciiWordLevel(line); ok {
		return lvl
	}
	return lowerWordLevel(line)
}

// lowerWordLevel is wordLevel over a lowercased copy of the line.
func lowerWordLevel(line string) string {
	lower := strings.ToLower(line)
	at, guess := len(lower), UnknownLevel
	for _, w := range levelWords {
		i := boundedIndex(lower, w.word)
		if i < 0 || i >= at {
			continue
		}
		at, guess = i, w.level
		if at == 0 {
			break
		}
	}
	return guess
}

// asciiWordLevel is wordLevel in one pass without lowercasing a copy, for
// lines that are all ASCII (most); ok is false for any other line, whose
// lowercase form may differ in length or gain letters (U+0130 lowercases
// to 'i').
func asciiWordLevel(line string) (string, bool) {
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c >= utf8.RuneSelf {
			return "", false
		}
		// A level word starts at a boundary with one of these letters.
		switch c | 0x20 {
		case 't', 'd', 'f', 'c', 'e', 'w', 'i':
		default:
			continue
		}
		if i > 0 && !leftBoundary(line, i-1) {
			continue
		}
		for _, w := range levelWords {
			if len(line)-i >= len(w.word) && asciiEqualFold(line[i:i+len(w.word)], w.word) && rightBoundary(line, i+len(w.word)) {
				// Lowercasing the whole line could not give an earlier
				// match: the bytes before i are ASCII, and a word starting
				// before i and reaching past it would need a boundary
				// byte inside it at i-1.
				return w.level, true
			}
		}
	}
	return UnknownLevel, true
}

// asciiEqualFold compares s with a lowercase ASCII word, ignoring the case
// of s.
func asciiEqualFold(s, lower string) bool {
	for i := 0; i < len(lower); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func boundedIndex(s, word string) int {
	for off := 0; ; {
		i := strings.Index(s[off:], word)
		if i < 0 {
			return -1
		}
		i += off
		if leftBoundary(s, i-1) && rightBoundary(s, i+len(word)) {
			return i
		}
		off = i + 1
	}
}

// leftBoundary: a colon is not one (misc:error is not a level).
func leftBoundary(s string, i int) bool {
	if i < 0 || i >= len(s) {
		return true
	}
	return strings.IndexByte(" \t\n[({\"=", s[i]) >= 0
}

func rightBoundary(s string, i int) bool {
	if i < 0 || i >= len(s) {
		return true
	}
	return strings.IndexByte(" \t\n[](){}:,!\"=", s[i]) >= 0
}
