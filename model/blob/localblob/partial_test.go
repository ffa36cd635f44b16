package localblob

import (
	"bytes"
	"testing"

	"github.com/filegate/filegate/model/blob/blobtest"
)

// The hash state an Append leaves in memory must never outlive the file
// it describes: another process (a second instance on the same folder, or
// this one restarted) appends in between, and the sidecar lags behind the
// data by up to stateEvery bytes.
func TestHashStateAcrossProcesses(t *testing.T) {
	root := t.TempDir()
	a, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	data := blobtest.PatternBytes(7, 5<<20)
	chunks := []struct {
		s        *Store
		from, to int
	}{
		{a, 0, 1 << 20},
		{a, 1 << 20, 2 << 20}, // a's sidecar now lags a chunk
		{b, 2 << 20, 3 << 20}, // b starts from the lagging sidecar
		{a, 3 << 20, 4 << 20}, // a's memory is stale: the file grew
		{b, 4 << 20, 5 << 20},
	}
	id := "cross"
	for i, c := range chunks {
		n, err := c.s.Append(t.Context(), id, int64(c.from), bytes.NewReader(data[c.from:c.to]), nil)
		if err != nil || n != int64(c.to-c.from) {
			t.Fatalf("chunk %d: %d, %v", i, n, err)
		}
	}
	// A fresh store is a restarted process: only the sidecar is left.
	c, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"a (stale memory)": a, "restarted": c} {
		if got, err := s.PartialSize(t.Context(), id); err != nil || got != int64(len(data)) {
			t.Fatalf("%s: size %d, %v", name, got, err)
		}
	}
	info, err := a.Publish(t.Context(), id, "cross-key")
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != blobtest.SHA256(data) || info.Size != int64(len(data)) {
		t.Fatalf("published {%d %s}, want {%d %s}", info.Size, info.SHA256, len(data), blobtest.SHA256(data))
	}
}

// A chunk the caller refuses is cut off again, and the next Append
// continues from the hash state before it.
func TestHashStateAfterRefusedChunk(t *testing.T) {
	s := newStore(t)
	id := "refused"
	data := blobtest.PatternBytes(8, 3<<20)
	if _, err := s.Append(t.Context(), id, 0, bytes.NewReader(data[:1<<20]), nil); err != nil {
		t.Fatal(err)
	}
	refuse := func(int64) error { return errAborted }
	if n, err := s.Append(t.Context(), id, 1<<20, bytes.NewReader(blobtest.PatternBytes(9, 1<<20)), refuse); err == nil || n != 0 {
		t.Fatalf("refused chunk: %d, %v", n, err)
	}
	if _, err := s.Append(t.Context(), id, 1<<20, bytes.NewReader(data[1<<20:]), nil); err != nil {
		t.Fatal(err)
	}
	info, err := s.Publish(t.Context(), id, "refused-key")
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != blobtest.SHA256(data) {
		t.Fatalf("published %s, want %s", info.SHA256, blobtest.SHA256(data))
	}
}
