// Package ui serves Lumen's web UI from files embedded in the binary.
package ui

import (
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed all:web
var web embed.FS

// Handler serves the UI: index.html revalidated on every load, the bundles
// (whose names carry a hash of their content) cached for good, each sent
// gzip-compressed when the build left a .gz beside it and the client takes
// gzip. Until the UI is built into web/dist, it serves a page that says how
// to build it and lists the APIs.
func Handler() http.Handler {
	dist, err := fs.Sub(web, "web/dist")
	if err == nil {
		if _, err := fs.Stat(dist, "index.html"); err == nil {
			return assets{dist}
		}
	}
	placeholder, _ := fs.ReadFile(web, "web/placeholder.html") // embedded: cannot fail
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(placeholder)
	})
}

type assets struct{ fs fs.FS }

func (a assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	if strings.HasSuffix(name, ".gz") || strings.HasPrefix(path.Base(name), ".") {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	if name == "index.html" {
		h.Set("Cache-Control", "no-cache")
	} else {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	h.Add("Vary", "Accept-Encoding")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		if b, err := fs.ReadFile(a.fs, name+".gz"); err == nil {
			if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
				h.Set("Content-Type", ct)
			}
			h.Set("Content-Encoding", "gzip")
			_, _ = w.Write(b)
			return
		}
	}
	b, err := fs.ReadFile(a.fs, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
		h.Set("Content-Type", ct)
	}
	_, _ = w.Write(b)
}
