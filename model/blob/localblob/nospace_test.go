//go:build linux

package localblob

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/blobtest"
)

// eachWriteMode runs f on a tiny store that writes large blobs direct,
// and on one that writes everything through the cache.
func eachWriteMode(t *testing.T, f func(t *testing.T, s *Store)) {
	for _, direct := range []bool{true, false} {
		name := map[bool]string{true: "direct", false: "buffered"}[direct]
		t.Run(name, func(t *testing.T) {
			s := tinyStore(t)
			if direct && !s.direct {
				t.Skip("tmpfs refuses O_DIRECT on this kernel")
			}
			s.direct = direct
			f(t, s)
		})
	}
}

// tinyStore returns a store on a fresh 1 MiB tmpfs, or skips when this
// process may not mount one.
func tinyStore(t *testing.T) *Store {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a 1 MiB tmpfs to test ENOSPC (needs root / CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	s, err := Open(filepath.Join(dir, "store"), Options{DirectIO: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWriteNoSpace(t *testing.T) { eachWriteMode(t, testWriteNoSpace) }

func testWriteNoSpace(t *testing.T, s *Store) {
	w, err := s.Create(t.Context(), "too/big")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	_, err = io.Copy(w, blobtest.Pattern(1, 4<<20))
	if err == nil {
		_, err = w.Commit(t.Context())
	}
	if !errors.Is(err, blob.ErrNoSpace) {
		t.Fatalf("writing 4 MiB into 1 MiB: err = %v, want ErrNoSpace", err)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err %v lost the underlying ENOSPC", err)
	}
	if _, err := w.Commit(t.Context()); err == nil {
		t.Fatal("Commit after a failed write succeeded")
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), "too/big"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat after ENOSPC: %v, want ErrNotFound", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Root(), dirTmp)); len(entries) != 0 {
		t.Fatalf("tmp/ keeps %d files after abort", len(entries))
	}
	// The space is back: a small blob fits.
	w2, err := s.Create(t.Context(), "small")
	if err != nil {
		t.Fatal(err)
	}
	w2.Write([]byte("fits"))
	if _, err := w2.Commit(t.Context()); err != nil {
		t.Fatalf("small commit after ENOSPC: %v", err)
	}
	if n, err := s.Sweep(t.Context(), time.Now().Add(time.Second)); err != nil || n != 0 {
		t.Fatalf("Sweep = %d, %v; want nothing left over", n, err)
	}
}

func TestAppendNoSpace(t *testing.T) { eachWriteMode(t, testAppendNoSpace) }

func testAppendNoSpace(t *testing.T, s *Store) {
	if _, err := s.Append(t.Context(), "up", 0, blobtest.Pattern(1, 1000), nil); err != nil {
		t.Fatal(err)
	}
	n, err := s.Append(t.Context(), "up", 1000, blobtest.Pattern(2, 4<<20), nil)
	if !errors.Is(err, blob.ErrNoSpace) || n != 0 {
		t.Fatalf("Append of 4 MiB into 1 MiB = %d, %v; want 0, ErrNoSpace", n, err)
	}
	size, err := s.PartialSize(t.Context(), "up")
	if err != nil || size != 1000 {
		t.Fatalf("PartialSize after ENOSPC = %d, %v; want 1000", size, err)
	}
	if _, err := s.Append(t.Context(), "up", 1000, blobtest.Pattern(3, 500), nil); err != nil {
		t.Fatalf("Append after ENOSPC: %v", err)
	}
	info, err := s.Publish(t.Context(), "up", "up")
	if err != nil {
		t.Fatal(err)
	}
	want := append(blobtest.PatternBytes(1, 1000), blobtest.PatternBytes(3, 500)...)
	if info.Size != 1500 || info.SHA256 != blobtest.SHA256(want) {
		t.Fatalf("published {%d %s}, want {1500 %s}", info.Size, info.SHA256, blobtest.SHA256(want))
	}
}
