package gateway

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// adminUI is the admin page: plain HTML, CSS and JavaScript, no build step
// and nothing loaded from elsewhere.
//
//go:embed adminui
var adminUI embed.FS

// adminPage serves the page's files under /admin/ with headers that keep
// it from being framed, from running anything but its own script, and
// from leaking its address.
func adminPage() http.Handler {
	sub, err := fs.Sub(adminUI, "adminui")
	if err != nil {
		panic(err) // the folder is embedded at build time
	}
	files := http.StripPrefix("/admin/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
			"img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		// FileServer answers 500 to a name fs.FS refuses (invalid
		// UTF-8, NUL); no such name is a page.
		if name := strings.TrimPrefix(r.URL.Path, "/admin/"); name != "" && !fs.ValidPath(name) {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}
