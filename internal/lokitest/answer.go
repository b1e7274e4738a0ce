package lokitest

import (
	"encoding/json"
	"slices"
	"strings"
)

// Comparable is a Loki (or Jaeger) API answer made comparable with
// another: a query's statistics (timings) left out, objects' keys in
// order, and a list answer (series, operations, which both answer in no
// set order) sorted. A body that is not JSON is returned trimmed.
func Comparable(body string) string {
	var a map[string]any
	if json.Unmarshal([]byte(body), &a) != nil {
		return strings.TrimSpace(body)
	}
	switch d := a["data"].(type) {
	case map[string]any:
		delete(d, "stats")
	case []any:
		slices.SortFunc(d, func(x, y any) int {
			bx, _ := json.Marshal(x)
			by, _ := json.Marshal(y)
			return strings.Compare(string(bx), string(by))
		})
	}
	b, err := json.Marshal(a)
	if err != nil {
		return strings.TrimSpace(body)
	}
	return string(b)
}
