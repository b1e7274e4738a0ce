package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// events is test2json output as the suite writes it: a parent fails with
// its failing subtest, stderr lines come through as plain text.
const events = `2026/12/01 12:00:00 Using filtered receivers: lumen
{"Action":"start","Package":"rw-receiver"}
{"Action":"run","Package":"rw-receiver","Test":"TestBadContentTypes"}
{"Action":"output","Package":"rw-receiver","Test":"TestBadContentTypes/image_png/lumen","Output":"    main_test.go:165: Response code should be exactly 415\n"}
{"Action":"fail","Package":"rw-receiver","Test":"TestBadContentTypes/image_png/lumen","Elapsed":0}
{"Action":"fail","Package":"rw-receiver","Test":"TestBadContentTypes/image_png","Elapsed":0}
{"Action":"pass","Package":"rw-receiver","Test":"TestBadContentTypes/application_json/lumen","Elapsed":0}
{"Action":"pass","Package":"rw-receiver","Test":"TestBadContentTypes/application_json","Elapsed":0}
{"Action":"fail","Package":"rw-receiver","Test":"TestBadContentTypes","Elapsed":0}
{"Action":"fail","Package":"rw-receiver","Test":"TestCorruptRequestBody/lumen","Elapsed":0}
{"Action":"fail","Package":"rw-receiver","Test":"TestCorruptRequestBody","Elapsed":0}
{"Action":"skip","Package":"rw-receiver","Test":"TestRW1ErrorHandling","Elapsed":0}
{"Action":"fail","Package":"rw-receiver","Elapsed":0.1}
`

func TestParse(t *testing.T) {
	res, err := parse(strings.NewReader(events))
	require.NoError(t, err)
	require.Equal(t, "remote-write receiver compliance: 2 passed, 5 failed, 1 skipped of 8", res.summary())
	require.Equal(t, []string{"TestBadContentTypes/image_png/lumen", "TestCorruptRequestBody/lumen"}, res.leafFailures())
	require.Equal(t, []string{"    main_test.go:165: Response code should be exactly 415\n"}, res.output["TestBadContentTypes/image_png/lumen"])
}

func TestJudge(t *testing.T) {
	res, err := parse(strings.NewReader(events))
	require.NoError(t, err)
	for _, tc := range []struct {
		name              string
		known             []string
		unexpected, stale []string
	}{
		{"nothing known", nil, []string{"TestBadContentTypes/image_png/lumen", "TestCorruptRequestBody/lumen"}, nil},
		{"a case without the receiver's name", []string{"TestBadContentTypes/image_png"}, []string{"TestCorruptRequestBody/lumen"}, nil},
		{"a whole test", []string{"TestBadContentTypes", "TestCorruptRequestBody"}, nil, nil},
		{"a passing test is stale", []string{"TestBadContentTypes", "TestCorruptRequestBody", "TestBadContentTypes/application_json"}, nil, []string{"TestBadContentTypes/application_json"}},
		{"a prefix of a name is not its parent", []string{"TestBadContent", "TestCorruptRequestBody/lumen"}, []string{"TestBadContentTypes/image_png/lumen"}, []string{"TestBadContent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unexpected, stale := judge(res, tc.known)
			require.Equal(t, tc.unexpected, unexpected)
			require.Equal(t, tc.stale, stale)
		})
	}
}

// The allow-list in the repository parses, and names tests, not prose.
func TestReadKnown(t *testing.T) {
	known, err := readKnown(filepath.Join("..", "..", "..", "ingest", "promrw", "testdata", "compliance-known-failures.txt"))
	require.NoError(t, err)
	for _, k := range known {
		require.Regexp(t, `^Test\S+$`, k)
	}
	p := filepath.Join(t.TempDir(), "known.txt")
	require.NoError(t, os.WriteFile(p, []byte("# why\n\nTestA/b  # Prometheus fails it too\n  TestC\n"), 0o644))
	known, err = readKnown(p)
	require.NoError(t, err)
	require.Equal(t, []string{"TestA/b", "TestC"}, known)
}
