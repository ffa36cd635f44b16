package davfs_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"golang.org/x/net/webdav"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// fillFolder makes a folder of n small files with rows written directly
// through the repository (sharing one blob), which is what a listing reads.
func fillFolder(b testing.TB, e *env, name string, n int) *model.Node {
	ctx := context.Background()
	f := e.folder(e.root, name)
	seed := e.file(f, "seed.txt", "x")
	err := e.repo.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		now := time.Now().UTC()
		rows := make([]*model.Node, 0, 1000)
		for i := 1; i < n; i++ {
			id := model.NewID()
			rows = append(rows, &model.Node{ID: id, ParentID: f.ID, Name: fmt.Sprintf("file-%06d.txt", i),
				Path: fmt.Sprintf("/%s/file-%06d.txt", name, i), Lineage: f.Lineage + "/" + id, Size: 1,
				MimeType: "text/plain; charset=utf-8", SHA256: seed.SHA256, ETag: seed.ETag, BlobKey: seed.BlobKey,
				Tags: []string{}, Status: model.StatusCompleted, Version: 1, CreatedAt: now, UpdatedAt: now, ModTime: now})
			if len(rows) == cap(rows) || i == n-1 {
				if _, err := tx.NewInsert().Model(&rows).Exec(ctx); err != nil {
					return err
				}
				rows = rows[:0]
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// What autovacuum would have done by the time anyone lists the folder.
	if model.IsPostgres(e.db) {
		_, err = e.db.ExecContext(ctx, "VACUUM ANALYZE nodes")
	} else {
		_, err = e.db.ExecContext(ctx, "ANALYZE")
	}
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// cpuTime is the process's user+system CPU time: on a shared, loaded
// machine it tracks the work a request costs better than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const propfindAllprop = `<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`

// BenchmarkPropfind measures PROPFIND Depth 1 (allprop) on folders of
// 2,000 and 20,000 files, on both databases, including reading the whole
// response over loopback.
func BenchmarkPropfind(b *testing.B) {
	for _, kind := range dbtest.Kinds {
		e := newEnv(b, dbtest.Open(b, kind))
		a := e.admin("bench")
		for _, n := range []int{2000, 20000} {
			name := fmt.Sprintf("f%d", n)
			fillFolder(b, e, name, n)
			b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, ReadBufferSize: 256 << 10}}
				var size int64
				cpu0 := cpuTime()
				for b.Loop() {
					req, _ := http.NewRequest("PROPFIND", e.url("/"+name+"/"), strings.NewReader(propfindAllprop))
					req.SetBasicAuth(a.user, a.pass)
					req.Header.Set("Depth", "1")
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					size, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 207 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
				b.ReportMetric(float64(size), "bytes/op")
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
			})
		}
	}
}

// BenchmarkSmallPuts measures 2,000 PUTs of 4 KiB from 8 workers into one
// folder, on both databases (the test cluster runs PostgreSQL without
// fsync; blobs are fsynced), and reports operations per second.
func BenchmarkSmallPuts(b *testing.B) {
	for _, kind := range dbtest.Kinds {
		b.Run(string(kind), func(b *testing.B) {
			e := newEnv(b, dbtest.Open(b, kind))
			a := e.admin("bench")
			e.folder(e.root, "puts")
			body := strings.Repeat("x", 4096)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
			round := 0
			var total time.Duration
			for b.Loop() {
				round++
				start := time.Now()
				jobs := make(chan int)
				errs := make(chan error, 8)
				for range 8 {
					go func() {
						for i := range jobs {
							req, _ := http.NewRequest("PUT", e.url(fmt.Sprintf("/puts/r%d-%d.bin", round, i)), strings.NewReader(body))
							req.SetBasicAuth(a.user, a.pass)
							resp, err := client.Do(req)
							if err != nil {
								errs <- err
								return
							}
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if resp.StatusCode != 201 {
								errs <- fmt.Errorf("status %d", resp.StatusCode)
								return
							}
						}
						errs <- nil
					}()
				}
				for i := range 2000 {
					jobs <- i
				}
				close(jobs)
				for range 8 {
					if err := <-errs; err != nil {
						b.Fatal(err)
					}
				}
				total += time.Since(start)
			}
			b.ReportMetric(float64(2000*round)/total.Seconds(), "puts/s")
		})
	}
}

// zeros is an endless source of bytes that costs no memory.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// peakRSS is the process's peak resident set in MiB (server and client
// share the process here, so it bounds the server's).
func peakRSS() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024
}

// BenchmarkLargeFile PUTs (fsynced before the answer) and GETs a 1 GiB
// file through the handler on SQLite, reporting MB/s and the peak RSS.
func BenchmarkLargeFile(b *testing.B) {
	const size = 1 << 30
	e := newEnv(b, dbtest.Open(b, dbtest.SQLite))
	a := e.admin("bench")
	client := &http.Client{Transport: &http.Transport{WriteBufferSize: 256 << 10, ReadBufferSize: 256 << 10}}
	b.Run("PUT", func(b *testing.B) {
		for b.Loop() {
			req, _ := http.NewRequest("PUT", e.url("/big.bin"), io.LimitReader(zeros{}, size))
			req.ContentLength = size
			req.SetBasicAuth(a.user, a.pass)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
		b.SetBytes(size)
		b.ReportMetric(peakRSS(), "peak-rss-MiB")
	})
	b.Run("GET", func(b *testing.B) {
		buf := make([]byte, 256<<10)
		for b.Loop() {
			req, _ := http.NewRequest("GET", e.url("/big.bin"), nil)
			req.SetBasicAuth(a.user, a.pass)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.CopyBuffer(io.Discard, resp.Body, buf)
			resp.Body.Close()
			if n != size {
				b.Fatalf("read %d", n)
			}
		}
		b.SetBytes(size)
	})
}

// BenchmarkPropfindPeer is BenchmarkPropfind against the peer: a bare
// x/net/webdav handler on webdav.Dir, with the same files on disk.
func BenchmarkPropfindPeer(b *testing.B) {
	for _, n := range []int{2000, 20000} {
		dir := b.TempDir()
		for i := range n {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%06d.txt", i)), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		ts := httptest.NewServer(&webdav.Handler{FileSystem: webdav.Dir(dir), LockSystem: webdav.NewMemLS()})
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{ReadBufferSize: 256 << 10}}
			cpu0 := cpuTime()
			for b.Loop() {
				req, _ := http.NewRequest("PROPFIND", ts.URL+"/", strings.NewReader(propfindAllprop))
				req.Header.Set("Depth", "1")
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
		})
		ts.Close()
	}
}
