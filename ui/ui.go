// Package ui serves Lumen's web UI from files embedded in the binary.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed all:web
var web embed.FS

// Handler serves the UI. Until the UI is built into web/dist, it serves a
// page that says so and lists the APIs.
func Handler() http.Handler {
	dist, err := fs.Sub(web, "web/dist")
	if err == nil {
		if _, err := fs.Stat(dist, "index.html"); err == nil {
			return http.FileServerFS(dist)
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
