package localblob

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/blobtest"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t) })
}

func TestStricterKeys(t *testing.T) {
	s := newStore(t)
	for _, k := range []string{"a//b", "a/", ".", "./a", "a/./b", strings.Repeat("x", MaxKeyLen+1)} {
		if _, err := s.Create(t.Context(), k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Create(%q) err = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Append(t.Context(), k, 0, strings.NewReader("x"), nil); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Append(%q) err = %v, want ErrInvalidKey", k, err)
		}
	}
	long := strings.Repeat("x", MaxKeyLen)
	w, err := s.Create(t.Context(), long)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatalf("commit of a %d-byte key: %v", MaxKeyLen, err)
	}
}

// A sidecar that is missing, corrupt or behind the data file must never
// make the published hash disagree with the bytes.
func TestPublishRepairsHashState(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, s *Store, id string)
	}{
		{"sidecar lost", func(t *testing.T, s *Store, id string) {
			if err := os.Remove(s.statePath(id)); err != nil {
				t.Fatal(err)
			}
		}},
		{"sidecar corrupt", func(t *testing.T, s *Store, id string) {
			b, err := os.ReadFile(s.statePath(id))
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(s.statePath(id), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"data fsynced, sidecar not written", func(t *testing.T, s *Store, id string) {
			// As if the process died between fsync and sidecar write.
			f, err := os.OpenFile(s.dataPath(id), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte("tail written before the crash")); err != nil {
				t.Fatal(err)
			}
		}},
		{"sidecar of another file", func(t *testing.T, s *Store, id string) {
			other := "other-" + id
			if _, err := s.Append(t.Context(), other, 0, strings.NewReader("unrelated bytes, other hash"), nil); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(s.statePath(other), s.statePath(id)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			id := "up"
			if _, err := s.Append(t.Context(), id, 0, bytes.NewReader(blobtest.PatternBytes(1, 3<<20)), nil); err != nil {
				t.Fatal(err)
			}
			c.damage(t, s, id)
			size, err := s.PartialSize(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Append(t.Context(), id, size, strings.NewReader("after"), nil); err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(s.dataPath(id))
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Publish(t.Context(), id, "k")
			if err != nil {
				t.Fatal(err)
			}
			if info.SHA256 != blobtest.SHA256(want) || info.Size != int64(len(want)) {
				t.Fatalf("published {%d %s}, bytes are {%d %s}", info.Size, info.SHA256, len(want), blobtest.SHA256(want))
			}
			if _, err := os.Stat(s.statePath(id)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("sidecar left after publish: %v", err)
			}
		})
	}
}

// Stat must still answer when the stored sum is gone (a copy by tools
// that drop xattrs, a filesystem without them).
func TestStatWithoutStoredSum(t *testing.T) {
	s := newStore(t)
	data := blobtest.PatternBytes(2, 100_000)
	w, err := s.Create(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	p := s.objectPath("k")
	if _, ok := getSum(p); !ok {
		t.Log("filesystem keeps no user xattrs; Stat recomputes every time")
	}
	tmp := p + ".tmp"
	raw, _ := os.ReadFile(p)
	if err := os.WriteFile(tmp, raw, 0o600); err != nil { // new inode, no xattr
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != blobtest.SHA256(data) {
		t.Fatalf("recomputed sum %s, want %s", info.SHA256, blobtest.SHA256(data))
	}
}

// Copy shares the inode, so it costs no space and no time.
func TestCopyHardLinks(t *testing.T) {
	s := newStore(t)
	w, _ := s.Create(t.Context(), "src")
	w.Write([]byte("shared"))
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Copy(t.Context(), "src", "dst"); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(s.objectPath("src"))
	b, _ := os.Stat(s.objectPath("dst"))
	if !os.SameFile(a, b) {
		t.Fatal("Copy did not hard link")
	}
	// Copying over an existing key replaces it in one step.
	w, _ = s.Create(t.Context(), "src2")
	w.Write([]byte("newer"))
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Copy(t.Context(), "src2", "dst"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(s.objectPath("dst"))
	if string(got) != "newer" {
		t.Fatalf("dst = %q after copy over", got)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Root(), dirTmp)); len(entries) != 0 {
		t.Fatalf("tmp/ not empty after copy: %v", entries)
	}
}

// net/http sends a body with sendfile only if it is a syscall.Conn.
func TestReaderOffersSendfile(t *testing.T) {
	s := newStore(t)
	w, _ := s.Create(t.Context(), "k")
	w.Write([]byte("bytes"))
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, ok := r.(syscall.Conn); !ok {
		t.Fatal("reader is not a syscall.Conn; downloads would not use sendfile")
	}
	if _, ok := r.(io.Writer); ok {
		t.Fatal("reader of an immutable blob offers Write")
	}
}

// TestDirectoryFsyncOnlyWhereNeeded checks which filesystems let a small
// blob's commit skip the directory fsync: ext4 and XFS, where the file's
// fsync commits its rename, yes; tmpfs (standing for any other) no.
func TestDirectoryFsyncOnlyWhereNeeded(t *testing.T) {
	cases := []struct {
		dir  string
		want func(fsType int64) bool
	}{
		{t.TempDir(), func(fsType int64) bool { return fsType == 0xEF53 || fsType == 0x58465342 }},
		{"/dev/shm", func(int64) bool { return false }},
	}
	for _, c := range cases {
		var st syscall.Statfs_t
		if err := syscall.Statfs(c.dir, &st); err != nil {
			t.Logf("%s: %v; skipped", c.dir, err)
			continue
		}
		root, err := os.MkdirTemp(c.dir, "fsync-")
		if err != nil {
			t.Logf("%s: %v; skipped", c.dir, err)
			continue
		}
		defer os.RemoveAll(root)
		s, err := New(root)
		if err != nil {
			t.Fatal(err)
		}
		if want := c.want(int64(st.Type)); s.renameInFileSync != want {
			t.Errorf("%s (filesystem type %#x): renameInFileSync = %v, want %v", c.dir, st.Type, s.renameInFileSync, want)
		}
	}
}
