package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// event is one line of `go tool test2json` output.
type event struct {
	Action string
	Test   string
	Output string
}

// result is what one run of the suite did, by test name (subtests
// included, as `go test -v` names them: TestBadContentTypes/image_png/lumen).
type result struct {
	passed, failed, skipped []string
	output                  map[string][]string
}

// parse reads test2json events; lines that are not JSON (the suite's own
// stderr) are skipped.
func parse(r io.Reader) (result, error) {
	res := result{output: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			return result{}, fmt.Errorf("test2json event %.80q: %w", line, err)
		}
		if e.Test == "" {
			continue
		}
		switch e.Action {
		case "pass":
			res.passed = append(res.passed, e.Test)
		case "fail":
			res.failed = append(res.failed, e.Test)
		case "skip":
			res.skipped = append(res.skipped, e.Test)
		case "output":
			res.output[e.Test] = append(res.output[e.Test], e.Output)
		}
	}
	if err := sc.Err(); err != nil {
		return result{}, fmt.Errorf("read test2json events: %w", err)
	}
	return res, nil
}

func (r result) total() int { return len(r.passed) + len(r.failed) + len(r.skipped) }

// summary is the one line CI shows.
func (r result) summary() string {
	return fmt.Sprintf("remote-write receiver compliance: %d passed, %d failed, %d skipped of %d",
		len(r.passed), len(r.failed), len(r.skipped), r.total())
}

// leafFailures are the failed tests none of whose subtests failed: a
// parent fails when a subtest does, and is judged by its subtests.
func (r result) leafFailures() []string {
	var out []string
	for _, t := range r.failed {
		if !slices.ContainsFunc(r.failed, func(u string) bool { return strings.HasPrefix(u, t+"/") }) {
			out = append(out, t)
		}
	}
	return out
}

// readKnown reads the allow-list: a test name a line, as `go test -v`
// prints it; '#' starts a comment; blank lines are ignored.
func readKnown(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read known failures: %w", err)
	}
	var known []string
	for l := range strings.Lines(string(b)) {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		if l = strings.TrimSpace(l); l != "" {
			known = append(known, l)
		}
	}
	return known, nil
}

// covers reports whether the allow-list entry k covers test t: t is k or
// one of its subtests (an entry may leave out the receiver's name).
func covers(k, t string) bool { return t == k || strings.HasPrefix(t, k+"/") }

// judge splits the leaf failures into the unexpected ones, which fail the
// run, and lists the allow-list entries that cover no failure (stale: the
// test passes now, or no longer exists).
func judge(r result, known []string) (unexpected, stale []string) {
	leaves := r.leafFailures()
	for _, t := range leaves {
		if !slices.ContainsFunc(known, func(k string) bool { return covers(k, t) }) {
			unexpected = append(unexpected, t)
		}
	}
	for _, k := range known {
		if !slices.ContainsFunc(leaves, func(t string) bool { return covers(k, t) }) {
			stale = append(stale, k)
		}
	}
	return unexpected, stale
}
