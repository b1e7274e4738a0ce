package limits

import (
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/fault"
)

func TestIngestLimits(t *testing.T) {
	l := Default()
	require.NoError(t, l.Validate())
	require.NoError(t, l.CheckLabels("series", labels.FromStrings("__name__", "up", "job", "x"), l.MaxLabelNamesPerSeries))

	err := l.CheckLabels("stream", labels.FromStrings("a", "1", "b", "2"), 1)
	require.ErrorIs(t, err, fault.ErrLimit)
	require.ErrorContains(t, err, "has 2 labels, more than the limit of 1 (max_label_names_per_stream)")

	err = l.CheckLabels("series", labels.FromStrings(strings.Repeat("n", 1025), "v"), l.MaxLabelNamesPerSeries)
	require.ErrorContains(t, err, "label name of 1025 bytes, longer than the limit of 1024 (max_label_name_length)")
	err = l.CheckLabels("series", labels.FromStrings("n", strings.Repeat("v", 2049)), l.MaxLabelNamesPerSeries)
	require.ErrorContains(t, err, `value of label "n" is 2049 bytes, longer than the limit of 2048 (max_label_value_length)`)
	require.Less(t, len(err.Error()), 600, "a huge label set is not echoed whole")

	bad := l
	bad.MaxLabelNamesPerSeries = 1
	require.Error(t, bad.Validate())
	bad = l
	bad.MaxActiveSeries = -1
	require.Error(t, bad.Validate())
}
