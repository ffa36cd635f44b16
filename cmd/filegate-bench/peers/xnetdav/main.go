// Command xnetdav is the bare golang.org/x/net/webdav server that
// filegate-bench measures as the baseline peer: webdav.Dir on a folder and
// the in-memory lock system, nothing else, so any gap between it and
// filegate is the cost of filegate's own work (auth, metadata, fsync).
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"time"

	"golang.org/x/net/webdav"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	dir := flag.String("dir", ".", "folder to serve")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	h := &webdav.Handler{
		FileSystem: webdav.Dir(*dir),
		LockSystem: webdav.NewMemLS(),
		Logger: func(r *http.Request, err error) {
			if err != nil {
				log.Printf("%s %s: %v", r.Method, r.URL.Path, err)
			}
		},
	}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("x/net/webdav serving %s on %s", *dir, *listen)
	log.Fatal(srv.ListenAndServe())
}
