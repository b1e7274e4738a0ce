package drain

import (
	"testing"
	"time"
)

// FuzzTrain: any lines, in any of the formats, are mined without a panic
// and every pattern counts at least one line.
func FuzzTrain(f *testing.F) {
	for _, s := range []string{
		`level=info msg="processed job" duration=12ms`, `{"msg":"hello world from a json line","level":"warn"}`,
		`10.0.0.1 - - [30/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "curl"`, `a="unterminated b=1 c d e`, `{"msg":`, "",
	} {
		f.Add(s, s+" 2")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, format := range []string{FormatJSON, FormatLogfmt, FormatUnknown} {
			d := New(DefaultConfig(), format)
			base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
			for i := 0; i < 6; i++ {
				line := a
				if i%2 == 1 {
					line = b
				}
				d.Train(line, (base+int64(i)*1000)*int64(time.Millisecond))
			}
			for _, p := range d.Patterns(base, base+60_000, 10_000) {
				total := int64(0)
				for _, s := range p.Samples {
					total += s.N
				}
				if total < 1 {
					t.Fatalf("pattern %q counts no line", p.Pattern)
				}
			}
		}
	})
}
