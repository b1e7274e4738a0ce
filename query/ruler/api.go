package ruler

import (
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/rules"
	"go.yaml.in/yaml/v3"
)

// Loki ruler's read API for the LogQL rules: GET /loki/api/v1/rules
// (every namespace), /loki/api/v1/rules/{namespace} and
// /loki/api/v1/rules/{namespace}/{group}, as YAML; a namespace is a rule
// file. Rules come from files, so the API's writes (POST, DELETE) are not
// served (405).

// ruleGroupYAML is a rule group as Loki's ruler API writes it.
type ruleGroupYAML struct {
	Name        string            `yaml:"name"`
	Interval    model.Duration    `yaml:"interval,omitempty"`
	QueryOffset *model.Duration   `yaml:"query_offset,omitempty"`
	Limit       int               `yaml:"limit,omitempty"`
	Rules       []ruleYAML        `yaml:"rules"`
	Labels      map[string]string `yaml:"labels,omitempty"`
}

type ruleYAML struct {
	Record        string            `yaml:"record,omitempty"`
	Alert         string            `yaml:"alert,omitempty"`
	Expr          string            `yaml:"expr"`
	For           model.Duration    `yaml:"for,omitempty"`
	KeepFiringFor model.Duration    `yaml:"keep_firing_for,omitempty"`
	Labels        map[string]string `yaml:"labels,omitempty"`
	Annotations   map[string]string `yaml:"annotations,omitempty"`
}

func groupYAML(g *rules.Group) ruleGroupYAML {
	out := ruleGroupYAML{Name: g.Name(), Interval: model.Duration(g.Interval()), Limit: g.Limit()}
	if qo := g.QueryOffset(); qo != 0 {
		d := model.Duration(qo)
		out.QueryOffset = &d
	}
	for _, r := range g.Rules() {
		ry := ruleYAML{Expr: r.Query().String(), Labels: r.Labels().Map()}
		switch r := r.(type) {
		case *rules.AlertingRule:
			ry.Alert = r.Name()
			ry.For = model.Duration(r.HoldDuration())
			ry.KeepFiringFor = model.Duration(r.KeepFiringFor())
			ry.Annotations = r.Annotations().Map()
		default:
			ry.Record = r.Name()
		}
		if len(ry.Labels) == 0 {
			ry.Labels = nil
		}
		if len(ry.Annotations) == 0 {
			ry.Annotations = nil
		}
		out.Rules = append(out.Rules, ry)
	}
	return out
}

// LokiRules serves Loki ruler's read API over the LogQL rules of the
// request's tenant (ruler returns nil when it has none).
func LokiRules(ruler func(*http.Request) *Ruler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			http.Error(w, "rules come from rule files (logql_rule_files): this API only lists them", http.StatusMethodNotAllowed)
			return
		}
		ns, group := r.PathValue("namespace"), r.PathValue("group")
		byNS := map[string][]ruleGroupYAML{}
		if rl := ruler(r); rl != nil {
			for _, g := range rl.LogQL().RuleGroups() {
				if (ns != "" && g.File() != ns) || (group != "" && g.Name() != group) {
					continue
				}
				byNS[g.File()] = append(byNS[g.File()], groupYAML(g))
			}
		}
		w.Header().Set("Content-Type", "application/yaml")
		switch {
		case group != "":
			if len(byNS[ns]) == 0 {
				http.Error(w, "group does not exist", http.StatusNotFound)
				return
			}
			_ = yaml.NewEncoder(w).Encode(byNS[ns][0])
		case ns != "":
			if len(byNS[ns]) == 0 {
				http.Error(w, "no rule groups found", http.StatusNotFound)
				return
			}
			_ = yaml.NewEncoder(w).Encode(map[string][]ruleGroupYAML{ns: byNS[ns]})
		default:
			if len(byNS) == 0 {
				// Loki answers 404 when a tenant has no rules.
				http.Error(w, "no rule groups found", http.StatusNotFound)
				return
			}
			for _, gs := range byNS {
				sort.Slice(gs, func(i, j int) bool { return gs[i].Name < gs[j].Name })
			}
			_ = yaml.NewEncoder(w).Encode(byNS)
		}
	})
}

// GraphRedirect answers Prometheus' /graph links (an alert's
// generatorURL) with Lumen's metrics page on the same expression.
func GraphRedirect() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		expr := q.Get("g0.expr")
		target := "/#/metrics"
		if expr != "" {
			target += "?q=" + strings.ReplaceAll(url.QueryEscape(expr), "+", "%20")
		}
		http.Redirect(w, r, target, http.StatusFound)
	})
}

// timeParam parses a time given as unix milliseconds, unix seconds (with
// a fraction) or RFC 3339; def when empty.
func timeParam(s string, def time.Time) (time.Time, bool) {
	if s == "" {
		return def, true
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false
	}
	if f > 1e11 { // milliseconds
		return time.UnixMilli(int64(f)), true
	}
	return time.Unix(0, int64(f*1e9)), true
}
