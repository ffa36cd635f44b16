package blobtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/filegate/filegate/model/blob"
)

// testSizedOpen checks blob.SizedOpener on stores that have it: the reader
// reads like Open's, sends nothing it need not, and its first read
// reports a missing blob as ErrNotFound and a size other than the
// recorded one as ErrSize, whether that read is the whole blob, a range
// or a ReadAt.
func testSizedOpen(t *testing.T, s blob.Store) {
	so, ok := s.(blob.SizedOpener)
	if !ok {
		t.Skip("the store opens cheaply and has no SizedOpener")
	}
	ctx := t.Context()
	const size = 3<<20 + 123
	data := PatternBytes(4, size)
	put(t, s, "sized", data)
	put(t, s, "empty", nil)

	r, err := so.OpenSized(ctx, "sized", size)
	if err != nil {
		t.Fatal(err)
	}
	checkRangedReads(t, r, data)
	r.Close()

	r, err = so.OpenSized(ctx, "sized", size)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole read: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, data), err)
	}

	r, err = so.OpenSized(ctx, "empty", 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read of an empty blob = %d, %v; want 0, EOF", n, err)
	}
	r.Close()

	wholeRead := func(r blob.Reader) error { _, err := io.ReadAll(r); return err }
	rangeRead := func(r blob.Reader) error {
		if _, err := r.Seek(1<<20, io.SeekStart); err != nil {
			return err
		}
		_, err := r.Read(make([]byte, 100))
		return err
	}
	readAt := func(r blob.Reader) error { _, err := r.ReadAt(make([]byte, 100), 5); return err }
	rows := []struct {
		name string
		key  string
		size int64
		read func(blob.Reader) error
		want error
	}{
		{"missing, whole", "absent", 10, wholeRead, blob.ErrNotFound},
		{"missing, range", "absent", 2 << 20, rangeRead, blob.ErrNotFound},
		{"missing, ReadAt", "absent", 10, readAt, blob.ErrNotFound},
		{"longer than recorded, whole", "sized", size - 1, wholeRead, blob.ErrSize},
		{"shorter than recorded, whole", "sized", size + 1, wholeRead, blob.ErrSize},
		{"shorter than recorded, range", "sized", size + 1, rangeRead, blob.ErrSize},
		{"longer than recorded, ReadAt", "sized", size - 7, readAt, blob.ErrSize},
		{"range beyond its end", "sized", 2 * size, func(r blob.Reader) error {
			if _, err := r.Seek(size+10, io.SeekStart); err != nil {
				return err
			}
			_, err := r.Read(make([]byte, 100))
			return err
		}, blob.ErrSize},
	}
	for _, row := range rows {
		r, err := so.OpenSized(ctx, row.key, row.size)
		if err != nil {
			t.Fatalf("%s: OpenSized = %v, want no error before the first read", row.name, err)
		}
		if err := row.read(r); !errors.Is(err, row.want) {
			t.Errorf("%s: first read = %v, want %v", row.name, err, row.want)
		}
		r.Close()
	}

	if _, err := so.OpenSized(ctx, "../bad", 1); !errors.Is(err, blob.ErrInvalidKey) {
		t.Errorf("OpenSized of a bad key = %v, want ErrInvalidKey", err)
	}
}

// Overwrite puts body under key in place of what is there, the way a disk
// fault or a hand in the storage would, for tests of damage.
func Overwrite(t testing.TB, s blob.Store, key string, body []byte) {
	t.Helper()
	ctx := context.Background()
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}
