package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// limitServer is the loopback ceiling: it discards what it is sent,
// remembering only sizes, and serves GETs from one RAM buffer. It answers
// WebDAV writes (PUT, MKCOL, MOVE, DELETE) and the tus shape (POST with
// creation-with-upload, PATCH) with the statuses a real server gives, doing
// no work, so any target's gap to it is the target's own cost.
type limitServer struct {
	mu    sync.Mutex
	sizes map[string]int64
	ram   []byte
	ids   atomic.Int64
	bufs  sync.Pool
}

func newLimitServer() *limitServer {
	l := &limitServer{sizes: map[string]int64{}}
	l.bufs.New = func() any { b := make([]byte, bufSize); return &b }
	return l
}

// discard reads the body to the end in 256 KiB reads.
func (l *limitServer) discard(r io.Reader) int64 {
	bp := l.bufs.Get().(*[]byte)
	defer l.bufs.Put(bp)
	var n int64
	for {
		k, err := r.Read(*bp)
		n += int64(k)
		if err != nil {
			return n
		}
	}
}

// ramOf returns size bytes of the RAM buffer, growing it when needed. A
// large buffer asks for transparent huge pages: on 4 KiB pages the first
// 1 GiB sent from a fresh buffer went at a third of the speed of later
// ones (until khugepaged had merged them), which made the first round's
// ceiling lower than the targets it bounds.
func (l *limitServer) ramOf(size int64) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if int64(len(l.ram)) < size {
		l.ram = make([]byte, size)
		if size > 1<<20 {
			_ = syscall.Madvise(l.ram, syscall.MADV_HUGEPAGE)
		}
		for i := 0; i < len(l.ram); i += len(pattern) {
			copy(l.ram[i:], pattern)
		}
	}
	return l.ram[:size]
}

// serveGet sends size bytes from the RAM buffer in writes of up to 4 MiB:
// no read, no file, one copy into the socket. That is the fastest way
// found to send a body over loopback here; sendfile from tmpfs, which the
// limit used before, measured 2.1–2.6 GB/s against 3.4–5.7 for these
// writes, and filegate's own 4 MiB copies from the page cache beat it.
func (l *limitServer) serveGet(w http.ResponseWriter, size int64) {
	b := l.ramOf(size)
	for len(b) > 0 {
		k := min(len(b), 4<<20)
		if _, err := w.Write(b[:k]); err != nil {
			return
		}
		b = b[k:]
	}
}

func (l *limitServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPut:
		n := l.discard(r.Body)
		l.mu.Lock()
		l.sizes[r.URL.Path] = n
		l.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	case http.MethodGet, http.MethodHead:
		if r.URL.Path == "/ping" {
			return
		}
		l.mu.Lock()
		size, ok := l.sizes[r.URL.Path]
		l.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		if r.Method == http.MethodGet {
			l.serveGet(w, size)
		}
	case "MKCOL", "MOVE", "COPY":
		w.WriteHeader(http.StatusCreated)
	case http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPost: // tus creation, with upload when a body comes
		w.Header().Set("Tus-Resumable", "1.0.0")
		id := l.ids.Add(1)
		loc := strings.TrimSuffix(r.URL.Path, "/") + "/" + strconv.FormatInt(id, 10)
		w.Header().Set("Location", loc)
		if r.Header.Get("Content-Type") == "application/offset+octet-stream" {
			w.Header().Set("Upload-Offset", strconv.FormatInt(l.discard(r.Body), 10))
		}
		w.WriteHeader(http.StatusCreated)
	case http.MethodPatch:
		off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
		if err != nil {
			http.Error(w, "bad Upload-Offset", http.StatusBadRequest)
			return
		}
		w.Header().Set("Tus-Resumable", "1.0.0")
		w.Header().Set("Upload-Offset", strconv.FormatInt(off+l.discard(r.Body), 10))
		w.WriteHeader(http.StatusNoContent)
	case http.MethodOptions:
		w.Header().Set("Tus-Resumable", "1.0.0")
		w.Header().Set("Tus-Version", "1.0.0")
		w.Header().Set("Tus-Extension", "creation,creation-with-upload")
		w.Header().Set("DAV", "1, 2")
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// serveLimit is the hidden "serve-limit" subcommand: the harness runs its
// own binary as the limit server, so the limit is a separate process like
// every other target and its RSS is measured the same way.
func serveLimit(args []string) error {
	fs := flag.NewFlagSet("serve-limit", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	ram := fs.Int64("ram", 0, "bytes of RAM to fill before serving, so no GET pays for it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l := newLimitServer()
	l.ramOf(*ram)
	srv := &http.Server{Addr: *listen, Handler: l, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("limit server on %s", *listen)
	if err := srv.ListenAndServe(); err != nil {
		return fmt.Errorf("limit server: %w", err)
	}
	return nil
}
