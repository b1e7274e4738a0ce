package query

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/query/logql"
)

// TestLokiScalarTime: an instant query's number comes with the time Loki
// 3.7.8 gives it (two answers of a real Loki, at two times).
func TestLokiScalarTime(t *testing.T) {
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), `[6785024850173,"7"]`},
		{time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), `[6792224850173,"7"]`},
	} {
		b, err := json.Marshal(lokiScalar(logql.Point{T: tc.at.UnixMilli(), V: 7}))
		require.NoError(t, err)
		require.Equal(t, tc.want, string(b))
	}
}
