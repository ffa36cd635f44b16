package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// shm is a tmpfs file of shmSize bytes for large GETs; nil without
	// /dev/shm.
	shm     *os.File
	shmSize int64
	ids     atomic.Int64
	bufs    sync.Pool
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

// ramOf returns size bytes of the RAM buffer, growing it when needed.
func (l *limitServer) ramOf(size int64) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if int64(len(l.ram)) < size {
		l.ram = make([]byte, size)
		for i := 0; i < len(l.ram); i += len(pattern) {
			copy(l.ram[i:], pattern)
		}
	}
	return l.ram[:size]
}

// fillShm puts size bytes into an unlinked file on tmpfs, which large GETs
// are sent from with sendfile, as a server sends a file from the page
// cache: copying a RAM buffer through write(2) would make the ceiling
// lower than what a real server reaches.
func (l *limitServer) fillShm(size int64) error {
	f, err := os.CreateTemp("/dev/shm", "filegate-bench-limit-")
	if err != nil {
		return err
	}
	os.Remove(f.Name())
	if _, err := newBody(size, 0).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	l.shm, l.shmSize = f, size
	return nil
}

// serveGet sends size bytes: small ones from the RAM buffer, large ones
// from the tmpfs file through a descriptor of the request's own, so
// concurrent GETs do not share a file offset.
func (l *limitServer) serveGet(w http.ResponseWriter, size int64) {
	if l.shm == nil || size <= 1<<20 || size > l.shmSize {
		w.Write(l.ramOf(size))
		return
	}
	f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", l.shm.Fd()))
	if err != nil {
		w.Write(l.ramOf(size))
		return
	}
	defer f.Close()
	io.Copy(w, io.LimitReader(f, size))
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
	ram := fs.Int64("ram", 0, "bytes of RAM (tmpfs) to fill before serving, so no GET pays for it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l := newLimitServer()
	l.ramOf(min(*ram, 1<<20))
	if *ram > 1<<20 {
		if err := l.fillShm(*ram); err != nil {
			log.Printf("no tmpfs file, large GETs come from a RAM buffer: %v", err)
			l.ramOf(*ram)
		}
	}
	srv := &http.Server{Addr: *listen, Handler: l, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("limit server on %s", *listen)
	if err := srv.ListenAndServe(); err != nil {
		return fmt.Errorf("limit server: %w", err)
	}
	return nil
}
