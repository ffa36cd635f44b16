package localblob

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/filegate/filegate/model/blob/blobtest"
)

// Appends are not fsynced, so a power cut may leave a partial upload's
// data file shorter than what was acknowledged, while its sidecar (also
// unsynced) says more. The file's size must win: PartialSize reports it,
// the sidecar is ignored when it leads, and an upload resumed from there
// publishes the SHA-256 of the bytes it really holds. The cut is
// simulated by truncating the data file.
func TestPowerCutRollsBackToTheFile(t *testing.T) {
	const total = 5 << 20
	data := blobtest.PatternBytes(11, total)
	// The first Append writes the sidecar (at 1 MiB); later ones keep
	// the hash state in memory only.
	chunks := []int{1 << 20, 2 << 20, 3<<20 + 17}
	cases := []struct {
		name      string
		cut       int64
		restarted bool // a new Store: the process died with the power
		leads     bool // the sidecar claims more than the cut file holds
	}{
		{"sidecar leads, restarted", 700<<10 + 5, true, true},
		{"sidecar leads, same process", 700<<10 + 5, false, true},
		{"sidecar lags, restarted", 2<<20 + 3, true, false},
		{"sidecar lags, same process", 2<<20 + 3, false, false},
		{"file emptied, restarted", 0, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			s, err := New(root)
			if err != nil {
				t.Fatal(err)
			}
			id := "cut"
			from := 0
			for _, to := range chunks {
				if n, err := s.Append(t.Context(), id, int64(from), bytes.NewReader(data[from:to]), nil); err != nil || n != int64(to-from) {
					t.Fatalf("append %d-%d: %d, %v", from, to, n, err)
				}
				from = to
			}
			if err := os.Truncate(s.dataPath(id), c.cut); err != nil {
				t.Fatal(err)
			}
			if c.restarted {
				if s, err = New(root); err != nil {
					t.Fatal(err)
				}
			}
			fi, err := os.Stat(s.dataPath(id))
			if err != nil {
				t.Fatal(err)
			}
			off, _, ok := s.loadState(id, fi)
			if c.leads && ok {
				t.Fatalf("a sidecar at %d was accepted for a file of %d bytes", off, c.cut)
			}
			if !c.leads && (!ok || off != 1<<20) {
				t.Fatalf("lagging sidecar: offset %d, accepted %v; want 1 MiB, true", off, ok)
			}
			size, err := s.PartialSize(t.Context(), id)
			if err != nil || size != c.cut {
				t.Fatalf("PartialSize after the cut: %d, %v; want %d", size, err, c.cut)
			}
			// The acknowledged offset is gone: appending there is refused.
			if _, err := s.Append(t.Context(), id, int64(from), bytes.NewReader(data[from:]), nil); err == nil {
				t.Fatal("append at the offset before the cut was accepted")
			}
			// Resume as a tus client does, from what PartialSize says.
			if _, err := s.Append(t.Context(), id, size, bytes.NewReader(data[size:]), nil); err != nil {
				t.Fatal(err)
			}
			info, err := s.Publish(t.Context(), id, "cut-key")
			if err != nil {
				t.Fatal(err)
			}
			if info.Size != total || info.SHA256 != blobtest.SHA256(data) {
				t.Fatalf("published {%d %s}, want {%d %s}", info.Size, info.SHA256, total, blobtest.SHA256(data))
			}
			if st, err := s.Stat(t.Context(), "cut-key"); err != nil || st.SHA256 != info.SHA256 {
				t.Fatalf("stored sum %q, %v; want %s", st.SHA256, err, info.SHA256)
			}
		})
	}
}

// BenchmarkAppendUpload is a tus upload as the blob store sees it: a file
// of FILEGATE_BENCH_BYTES (256 MiB by default) appended in 8 MiB chunks
// from memory, then published. It measures what a PATCH waits for in the
// store, without HTTP:
//
//	go test -run '^$' -bench AppendUpload -benchtime 3x ./model/blob/localblob/
func BenchmarkAppendUpload(b *testing.B) {
	const chunk = 8 << 20
	n := benchBytes(b)
	buf := blobtest.PatternBytes(13, chunk)
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(n)
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("bench-%d", i)
		for off := int64(0); off < n; off += chunk {
			k := min(chunk, n-off)
			if _, err := s.Append(b.Context(), id, off, bytes.NewReader(buf[:k]), nil); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.Publish(b.Context(), id, id); err != nil {
			b.Fatal(err)
		}
		if err := s.Delete(b.Context(), id); err != nil {
			b.Fatal(err)
		}
	}
}
