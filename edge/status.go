package edge

import (
	"embed"
	"io/fs"
	"net/http"
)

// statusFiles is the status page: plain HTML, CSS and JavaScript served
// from the binary, no external assets.
//
//go:embed status/index.html status/status.css status/status.js
var statusFiles embed.FS

// statusRoutes serves the status page at GET / of the admin endpoint: the
// pools and servers (health, weight, drain, live connections), the
// certificates with their expiry and the recent reloads, refreshed live
// from the API.
func statusRoutes(mux *http.ServeMux) {
	sub, _ := fs.Sub(statusFiles, "status")
	files := http.FileServerFS(sub)
	secure := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Only this endpoint's own scripts, styles and API.
			w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Cache-Control", "no-store")
			h.ServeHTTP(w, r)
		})
	}
	mux.Handle("GET /{$}", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, sub, "index.html")
	})))
	mux.Handle("GET /status/", secure(http.StripPrefix("/status/", files)))
}
