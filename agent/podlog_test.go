package agent

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPodFromPath(t *testing.T) {
	p, err := PodFromPath("/var/log/pods/shop_web-7d4b9c-x2k4_0b6e3c1a-77aa-4f2e-9d1b-5c3e2f1a0b9c/app/3.log")
	if err != nil {
		t.Fatal(err)
	}
	want := Pod{Namespace: "shop", Name: "web-7d4b9c-x2k4", UID: "0b6e3c1a-77aa-4f2e-9d1b-5c3e2f1a0b9c", Container: "app", Restart: 3}
	if p != want {
		t.Fatalf("got %+v, want %+v", p, want)
	}
	for _, bad := range []string{"/var/log/pods/shop_web/app/0.log", "/var/log/pods/a_b_c/app/x.log", "/var/log/pods/a_b_c/app/0.txt", "0.log", "/var/log/pods/__/app/0.log"} {
		if _, err := PodFromPath(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestParseCRI(t *testing.T) {
	e, err := ParseCRI([]byte("2026-11-29T06:50:06.123456789Z stderr F hello  world "))
	if err != nil {
		t.Fatal(err)
	}
	if e.Stream != "stderr" || string(e.Text) != "hello  world " || e.Partial || !e.Time.Equal(time.Date(2026, 11, 29, 6, 50, 6, 123456789, time.UTC)) {
		t.Fatalf("%+v", e)
	}
	e, err = ParseCRI([]byte("2026-11-29T06:50:06+01:00 stdout P part"))
	if err != nil || !e.Partial || string(e.Text) != "part" {
		t.Fatalf("%+v %v", e, err)
	}
	e, err = ParseCRI([]byte("2026-11-29T06:50:06Z stdout F"))
	if err != nil || len(e.Text) != 0 {
		t.Fatalf("an empty line: %+v %v", e, err)
	}
	for _, bad := range []string{"", "nonsense", "2026-11-29T06:50:06Z", "2026-11-29T06:50:06Z stdin F x", "yesterday stdout F x", "2026-11-29T06:50:06Z stdout X x"} {
		if _, err := ParseCRI([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseDocker(t *testing.T) {
	e, err := ParseDocker([]byte(`{"log":"GET / 200\n","stream":"stdout","time":"2026-11-29T06:50:06.5Z"}`))
	if err != nil || e.Partial || string(e.Text) != "GET / 200" || e.Stream != "stdout" {
		t.Fatalf("%+v %v", e, err)
	}
	e, err = ParseDocker([]byte(`{"log":"a split li","stream":"stderr","time":"2026-11-29T06:50:06.5Z"}`))
	if err != nil || !e.Partial {
		t.Fatalf("%+v %v", e, err)
	}
	for _, bad := range []string{`{}`, `{"log":"x","stream":"nope"}`, `[`, `{"log":1,"stream":"stdout"}`} {
		if _, err := ParseDocker([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestJoinerJoinsSplitLinesPerStream(t *testing.T) {
	j := joiner{max: 1 << 20}
	t0 := time.Unix(100, 0)
	in := []Entry{
		{Time: t0, Stream: "stdout", Text: []byte("one "), Partial: true},
		{Time: t0.Add(1), Stream: "stderr", Text: []byte("err whole")},
		{Time: t0.Add(2), Stream: "stdout", Text: []byte("two "), Partial: true},
		{Time: t0.Add(3), Stream: "stdout", Text: []byte("three")},
	}
	var out []string
	for _, e := range in {
		if w, ok := j.add(e); ok {
			out = append(out, w.Stream+":"+string(w.Text)+"@"+w.Time.Format(time.RFC3339Nano))
		}
	}
	want := []string{"stderr:err whole@1970-01-01T00:01:40.000000001Z", "stdout:one two three@1970-01-01T00:01:40Z"}
	if strings.Join(out, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q", out)
	}
	if j.pendingBytes() != 0 {
		t.Fatal("parts left")
	}
	// A line over the limit is cut at it.
	j = joiner{max: 10}
	if _, ok := j.add(Entry{Stream: "stdout", Text: bytes.Repeat([]byte("x"), 6), Partial: true}); ok {
		t.Fatal("complete too early")
	}
	w, ok := j.add(Entry{Stream: "stdout", Text: bytes.Repeat([]byte("y"), 6), Partial: true})
	if !ok || string(w.Text) != "xxxxxxyyyy" {
		t.Fatalf("%q %v", w.Text, ok)
	}
}

// The decoders take whatever a file holds: never a panic, and a line they
// accept reads back the same.
func FuzzParseCRI(f *testing.F) {
	f.Add([]byte("2026-11-29T06:50:06.123456789Z stdout F hello"))
	f.Add([]byte("2026-11-29T06:50:06Z stderr P part"))
	f.Add([]byte("2026-11-29T06:50:06Z stdout F:x y"))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseCRI(line)
		if err != nil {
			return
		}
		if e.Stream != "stdout" && e.Stream != "stderr" {
			t.Fatalf("stream %q", e.Stream)
		}
		if !bytes.HasSuffix(line, e.Text) {
			t.Fatalf("text %q is not the end of %q", e.Text, line)
		}
	})
}

func FuzzParseDocker(f *testing.F) {
	f.Add([]byte(`{"log":"GET / 200\n","stream":"stdout","time":"2026-11-29T06:50:06.5Z"}`))
	f.Add([]byte(`{"log":"part","stream":"stderr","time":"2026-11-29T06:50:06Z"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseDocker(line)
		if err != nil {
			return
		}
		if e.Stream != "stdout" && e.Stream != "stderr" {
			t.Fatalf("stream %q", e.Stream)
		}
		var d struct{ Log string }
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatal(err)
		}
		if nl := map[bool]string{false: "\n", true: ""}[e.Partial]; string(e.Text)+nl != d.Log {
			t.Fatalf("text %q (partial %v) is not the entry's %q", e.Text, e.Partial, d.Log)
		}
	})
}

func FuzzPodFromPath(f *testing.F) {
	f.Add("/var/log/pods/shop_web_uid/app/0.log")
	f.Add("/var/log/pods/a_b/app/0.log")
	f.Fuzz(func(t *testing.T, path string) {
		p, err := PodFromPath(path)
		if err != nil {
			return
		}
		if p.Namespace == "" || p.Name == "" || p.UID == "" || p.Container == "" || p.Restart < 0 {
			t.Fatalf("%q gave %+v", path, p)
		}
	})
}
