package ui

import (
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path, acceptEncoding string) *http.Response {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", acceptEncoding) // set, so Go's client does not decompress for us
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	r := io.Reader(resp.Body)
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHandler checks what this build embeds: the built UI (make ui), or the
// page that says how to build it.
func TestHandler(t *testing.T) {
	h := Handler()
	if _, err := fs.Stat(web, "web/dist/index.html"); err != nil {
		resp := get(t, h, "/", "identity")
		if b := body(t, resp); resp.StatusCode != 200 || !strings.Contains(b, "make build") {
			t.Fatalf("placeholder: %d %q", resp.StatusCode, b)
		}
		if resp := get(t, h, "/app.js", "identity"); resp.StatusCode != 404 {
			t.Fatalf("a file of an unbuilt UI answered %d", resp.StatusCode)
		}
		return
	}
	resp := get(t, h, "/", "gzip")
	index := body(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("index: %d %v", resp.StatusCode, resp.Header)
	}
	js := regexp.MustCompile(`src="(app-[A-Z0-9]+\.js)"`).FindStringSubmatch(index)
	if js == nil {
		t.Fatalf("index.html names no hashed bundle: %s", index)
	}
	for _, enc := range []string{"gzip", "identity"} {
		resp := get(t, h, "/"+js[1], enc)
		b := body(t, resp)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || len(b) < 1000 {
			t.Fatalf("bundle with %s: %d %v, %d bytes", enc, resp.StatusCode, resp.Header, len(b))
		}
		if got := resp.Header.Get("Content-Encoding"); (enc == "gzip") != (got == "gzip") {
			t.Fatalf("Accept-Encoding %s answered Content-Encoding %q", enc, got)
		}
	}
	for _, p := range []string{"/missing.js", "/" + js[1] + ".gz", "/.keep"} {
		if resp := get(t, h, p, "gzip"); resp.StatusCode != 404 {
			t.Fatalf("%s answered %d", p, resp.StatusCode)
		}
	}
}
