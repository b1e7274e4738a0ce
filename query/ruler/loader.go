package ruler

import (
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/parser/posrange"
	"go.yaml.in/yaml/v3"

	"github.com/lumenobs/lumen/query/logql"
)

// Lang is the query language of a rule file.
type Lang string

const (
	PromQL Lang = "promql"
	LogQL  Lang = "logql"
)

// builtinFiles are the ready-made rule sets: name → file in builtin/.
var builtinFiles = map[string]struct {
	file string
	lang Lang
}{
	"spanmetrics": {"builtin/spanmetrics.yml", PromQL},
	"lumen":       {"builtin/lumen.yml", PromQL},
}

// builtinPrefix names an embedded file among rule files.
const builtinPrefix = "builtin:"

//go:embed builtin/*.yml
var builtin embed.FS

// Builtins lists the ready-made rule sets.
func Builtins() []string {
	var names []string
	for n := range builtinFiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// BuiltinFile is the rules of a ready-made set, for docs and tests.
func BuiltinFile(name string) ([]byte, error) {
	b, ok := builtinFiles[name]
	if !ok {
		return nil, fmt.Errorf("no built-in rule set %q", name)
	}
	return builtin.ReadFile(b.file)
}

// Expand is the files globs name, in order, each once; a glob that names
// nothing is an error (a typo should not silently mean no rules).
func Expand(globs []string) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	for _, g := range globs {
		m, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("rule files %q: %w", g, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("rule files %q: no file matches", g)
		}
		for _, f := range m {
			if !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		}
	}
	return files, nil
}

// loader reads rule files (and the built-in sets) and parses their
// expressions in its language.
type loader struct {
	p    parser.Parser
	lang Lang
	log  *slog.Logger
}

func newLoader(lang Lang, log *slog.Logger) loader {
	p := parser.NewParser(parser.Options{})
	if lang == LogQL {
		p = logqlParser{p}
	}
	return loader{p: p, lang: lang, log: log}
}

// Load reads and validates one rule file, every error with its line and
// column.
func (l loader) Load(identifier string, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	var b []byte
	var err error
	if name, ok := strings.CutPrefix(identifier, builtinPrefix); ok {
		b, err = BuiltinFile(name)
	} else {
		b, err = os.ReadFile(identifier)
	}
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %w", identifier, err)}
	}
	rgs, errs := l.parse(b, ignoreUnknownFields, scheme)
	for i := range errs {
		errs[i] = fmt.Errorf("%s: %w", identifier, errs[i])
	}
	return rgs, errs
}

// placed gives the errors of a file's YAML decoding a position when they
// have none (a bad duration is reported by its value alone, and twice):
// that of the first scalar holding a value the error quotes.
func placed(content []byte, errs []error) []error {
	if len(errs) == 0 {
		return errs
	}
	var root yaml.Node
	_ = yaml.Unmarshal(content, &root)
	seen := map[string]bool{}
	out := errs[:0]
	for _, err := range errs {
		msg := err.Error()
		if seen[msg] {
			continue
		}
		seen[msg] = true
		if !hasPosition(msg) {
			for _, q := range quoted.FindAllStringSubmatch(msg, -1) {
				v, uerr := strconv.Unquote(q[0])
				if uerr != nil {
					continue
				}
				if n := findScalar(&root, v); n != nil {
					err = fmt.Errorf("%d:%d: %w", n.Line, n.Column, err)
					break
				}
			}
		}
		out = append(out, err)
	}
	return out
}

var (
	quoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	positioned = regexp.MustCompile(`^\d+:\d+: |line \d+`)
)

func hasPosition(msg string) bool { return positioned.MatchString(msg) }

func findScalar(n *yaml.Node, v string) *yaml.Node {
	if n.Kind == yaml.ScalarNode && n.Value == v {
		return n
	}
	for _, c := range n.Content {
		if f := findScalar(c, v); f != nil {
			return f
		}
	}
	return nil
}

// parse reads and validates a rule file's content.
func (l loader) parse(b []byte, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	rgs, errs := rulefmt.Parse(b, ignoreUnknownFields, scheme, l.p, l.log)
	return rgs, placed(b, errs)
}

// Parse parses one rule's expression.
func (l loader) Parse(query string) (parser.Expr, error) { return l.p.ParseExpr(query) }

// Check reads every rule file as the ruler would and reports all their
// errors, each naming its file, line and column, group and rule.
func Check(promFiles, logqlFiles []string, builtins []string) error {
	_, errs := readAll(promFiles, logqlFiles, builtins)
	return errors.Join(errs...)
}

// Count is the groups and rules of valid rule files.
func Count(promFiles, logqlFiles, builtins []string) (groups, rules int, err error) {
	all, errs := readAll(promFiles, logqlFiles, builtins)
	if len(errs) > 0 {
		return 0, 0, errors.Join(errs...)
	}
	for _, rgs := range all {
		for _, g := range rgs.Groups {
			groups++
			rules += len(g.Rules)
		}
	}
	return groups, rules, nil
}

// readAll reads the rule files globs name and the ready-made sets.
func readAll(promFiles, logqlFiles, builtins []string) ([]*rulefmt.RuleGroups, []error) {
	var all []*rulefmt.RuleGroups
	var errs []error
	for _, set := range []struct {
		lang  Lang
		globs []string
	}{{PromQL, promFiles}, {LogQL, logqlFiles}} {
		files, err := Expand(set.globs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if set.lang == PromQL {
			for _, b := range builtins {
				files = append(files, builtinPrefix+b)
			}
		}
		l := newLoader(set.lang, slog.New(slog.DiscardHandler))
		for _, f := range files {
			rgs, fe := l.Load(f, false, model.UTF8Validation)
			if len(fe) > 0 {
				errs = append(errs, fe...)
				continue
			}
			all = append(all, rgs)
		}
	}
	return all, errs
}

// logqlParser parses rule expressions as LogQL metric queries, as Loki's
// ruler does; the rest of Prometheus' parser (label sets in templates)
// is PromQL's.
type logqlParser struct{ parser.Parser }

func (p logqlParser) ParseExpr(input string) (parser.Expr, error) {
	e, err := logql.Parse(input)
	if err != nil {
		return nil, err
	}
	if logql.IsLogQuery(e) {
		return nil, fmt.Errorf("%q is a log query: a rule needs a metric query (rate, count_over_time, sum by …)", input)
	}
	return logqlExpr{e}, nil
}

// logqlExpr carries a LogQL expression through Prometheus' rule manager,
// which holds expressions as parser.Expr and hands their String() to the
// query function.
type logqlExpr struct{ e logql.Expr }

func (x logqlExpr) String() string    { return x.e.String() }
func (x logqlExpr) Pretty(int) string { return x.e.String() }
func (x logqlExpr) PositionRange() posrange.PositionRange {
	return posrange.PositionRange{End: posrange.Pos(len(x.e.String()))}
}
func (logqlExpr) Type() parser.ValueType { return parser.ValueTypeVector }
func (logqlExpr) PromQLExpr()            {}
