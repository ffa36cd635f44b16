package localblob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/blobtest"
)

// directStore is a store that asks for O_DIRECT writes; s.direct says
// whether the filesystem under the test's temporary folder allows them.
func directStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{DirectIO: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformanceDirect runs the shared suite with direct writes on, so
// the opt-in path meets the same contract as the default one.
func TestConformanceDirect(t *testing.T) {
	s := directStore(t)
	if !s.DirectIO() {
		t.Skipf("the filesystem under %s refuses O_DIRECT", s.Root())
	}
	blobtest.Run(t, func(t *testing.T) blob.Store { return directStore(t) })
}

// TestDirectIOIsOptIn checks that the default store writes through the
// page cache, and that asking for O_DIRECT is honoured where allowed.
func TestDirectIOIsOptIn(t *testing.T) {
	if s := newStore(t); s.DirectIO() {
		t.Fatal("New turned O_DIRECT on; it must stay opt-in")
	}
	s := directStore(t)
	if s.DirectIO() != directSupported(filepath.Join(s.Root(), dirTmp)) {
		t.Fatalf("DirectIO() = %v, but the filesystem's answer differs", s.DirectIO())
	}
}

// oddReader returns its bytes in reads of varying, unaligned sizes, as a
// network body does.
type oddReader struct {
	b []byte
	i int
}

func (r *oddReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	r.i++
	n := min(len(p), len(r.b), 1+(r.i*7919)%300000)
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// TestLargeBlobsGoDirect checks that blobs of several buffers are written
// direct, that their bytes and SHA-256 are exact whatever the tail and the
// sender's read sizes, and that blobs under one buffer stay buffered.
func TestLargeBlobsGoDirect(t *testing.T) {
	s := directStore(t)
	if !s.direct {
		t.Skipf("the filesystem under %s refuses O_DIRECT", s.Root())
	}
	cases := []struct {
		name   string
		size   int
		direct bool
	}{
		{"small", 200 << 10, false},
		{"under one pipe buffer", bufSize - 1, false},
		{"one pipe buffer and a bit", bufSize + 5, false},
		{"one direct buffer and a bit", bufSize + directBufSize + 5, true},
		{"aligned", 8 << 20, true},
		{"block tail", 5<<20 + directAlign, true},
		{"odd tail", 7<<20 + 4095, true},
		{"tail under a block", 3<<20 + 1, true},
	}
	for i, c := range cases {
		for _, viaWrite := range []bool{false, true} {
			name := c.name + "/readfrom"
			if viaWrite {
				name = c.name + "/write"
			}
			t.Run(name, func(t *testing.T) {
				data := blobtest.PatternBytes(uint64(100+i), c.size)
				before := s.directWrites.Load()
				key := fmt.Sprintf("direct/%d-%v", i, viaWrite)
				w, err := s.Create(t.Context(), key)
				if err != nil {
					t.Fatal(err)
				}
				if viaWrite {
					// io.Copy through a plain io.Writer, in odd pieces.
					_, err = io.Copy(struct{ io.Writer }{w}, &oddReader{b: data})
				} else {
					_, err = io.Copy(w, &oddReader{b: data})
				}
				if err != nil {
					t.Fatal(err)
				}
				info, err := w.Commit(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if info.SHA256 != blobtest.SHA256(data) || info.Size != int64(c.size) {
					t.Fatalf("committed %d bytes with sum %s, want %d and %s", info.Size, info.SHA256, c.size, blobtest.SHA256(data))
				}
				got, err := os.ReadFile(s.objectPath(key))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("the stored bytes differ from the sent ones")
				}
				if wrote := s.directWrites.Load() > before; wrote != c.direct {
					t.Fatalf("direct writes made: %v, want %v", wrote, c.direct)
				}
			})
		}
	}
}

// TestDirectAppendsAtUnalignedOffsets appends chunks that leave the
// upload at offsets no block boundary matches: each goes through the
// cache up to the next boundary, then direct, and the published blob
// holds every byte with the right sum, as with direct writes off.
func TestDirectAppendsAtUnalignedOffsets(t *testing.T) {
	for _, direct := range []bool{true, false} {
		name := "direct"
		if !direct {
			name = "buffered"
		}
		t.Run(name, func(t *testing.T) {
			s := directStore(t)
			if direct && !s.direct {
				t.Skipf("the filesystem under %s refuses O_DIRECT", s.Root())
			}
			s.direct = direct
			var all []byte
			var off int64
			for i, size := range []int{1_000_003, 6<<20 + 5, 3 << 20, 2<<20 - 1} {
				chunk := blobtest.PatternBytes(uint64(200+i), size)
				n, err := s.Append(t.Context(), "up1", off, &oddReader{b: chunk}, nil)
				if err != nil || n != int64(size) {
					t.Fatalf("append %d: %d bytes, %v", i, n, err)
				}
				all = append(all, chunk...)
				off += n
			}
			info, err := s.Publish(t.Context(), "up1", "final/up1")
			if err != nil {
				t.Fatal(err)
			}
			if info.SHA256 != blobtest.SHA256(all) || info.Size != int64(len(all)) {
				t.Fatalf("published %d bytes with sum %s, want %d and %s", info.Size, info.SHA256, len(all), blobtest.SHA256(all))
			}
			got, err := os.ReadFile(s.objectPath("final/up1"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, all) {
				t.Fatal("the published bytes differ from the appended ones")
			}
			if wrote := s.directWrites.Load() > 0; wrote != direct {
				t.Fatalf("direct writes made: %v, want %v", wrote, direct)
			}
		})
	}
}

// failAfter returns its bytes, then an error: a client that hangs up
// halfway through a large body.
type failAfter struct {
	r   io.Reader
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// TestDirectWriteCutOff checks that a large body cut off while buffers
// are with the writers leaves no partial blob: Abort drops the temp file.
// An upload's chunk cut off the same way keeps what arrived (tus resumes
// from there), and the published blob holds exactly those bytes.
func TestDirectWriteCutOff(t *testing.T) {
	s := directStore(t)
	if !s.direct {
		t.Skipf("the filesystem under %s refuses O_DIRECT", s.Root())
	}
	errHangUp := errors.New("client hung up")
	w, err := s.Create(t.Context(), "cut/blob")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(w, &failAfter{r: bytes.NewReader(blobtest.PatternBytes(300, 9<<20)), err: errHangUp})
	if !errors.Is(err, errHangUp) {
		t.Fatalf("copy: %v, want the reader's error", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(filepath.Join(s.Root(), dirTmp)); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}

	first := blobtest.PatternBytes(301, 3<<20+11)
	if _, err := s.Append(t.Context(), "up2", 0, bytes.NewReader(first), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	second := blobtest.PatternBytes(302, 16<<20)
	r := &cancelAfter{r: bytes.NewReader(second), after: 6 << 20, cancel: cancel}
	n, err := s.Append(ctx, "up2", int64(len(first)), r, nil)
	if !errors.Is(err, context.Canceled) || n < 6<<20 || n >= int64(len(second)) {
		t.Fatalf("append cut off after 6 MiB: %d bytes kept, %v; want at least 6 MiB kept and the context's error", n, err)
	}
	want := append(first, second[:n]...)
	info, err := s.Publish(t.Context(), "up2", "final/up2")
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(want)) || info.SHA256 != blobtest.SHA256(want) {
		t.Fatalf("published %d bytes with sum %s, want %d and %s", info.Size, info.SHA256, len(want), blobtest.SHA256(want))
	}
	got, err := os.ReadFile(s.objectPath("final/up2"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the published bytes differ from the kept ones")
	}
}

// cancelAfter cancels its context once it has returned after bytes.
type cancelAfter struct {
	r      io.Reader
	after  int
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}
