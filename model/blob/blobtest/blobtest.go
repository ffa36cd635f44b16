// Package blobtest is the conformance suite for blob.Store implementations.
// An implementation's test calls Run with a constructor of empty stores;
// the suite uses nothing but the blob.Store interface, so it runs the same
// against a local folder and an S3 bucket.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filegate/filegate/model/blob"
)

// emptySHA256 is the SHA-256 of zero bytes.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// largeSize is the size of the streamed blob: big enough to cross every
// buffer and part size, generated on the fly.
const largeSize = 64 << 20

type spec struct {
	name string
	run  func(t *testing.T, s blob.Store)
}

// Run checks that the stores made by newStore keep the blob.Store
// contract. newStore is called once per subtest and must return an empty
// store; it registers its own cleanup with t.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	specs := append(blobSpecs(), partialSpecs()...)
	for _, sp := range specs {
		t.Run(sp.name, func(t *testing.T) {
			sp.run(t, newStore(t))
		})
	}
}

func blobSpecs() []spec {
	return []spec{
		{"WriteCommitRead", testWriteCommitRead},
		{"NotVisibleBeforeCommit", testNotVisibleBeforeCommit},
		{"AbortLeavesNothing", testAbortLeavesNothing},
		{"AbortAfterCommitKeepsBlob", testAbortAfterCommit},
		{"RangedReads", testRangedReads},
		{"SizedOpen", testSizedOpen},
		{"Stat", testStat},
		{"DeleteIdempotent", testDelete},
		{"Copy", testCopy},
		{"WalkListsCommittedOnly", testWalk},
		{"InvalidKeys", testInvalidKeys},
		{"ValidKeys", testValidKeys},
		{"ZeroByteBlob", testZeroByte},
		{"LargeStream", testLargeStream},
		{"CancelledContext", testCancelled},
		{"SweepSparesLiveAndCommitted", testSweep},
		{"Concurrent", testConcurrent},
	}
}

// put stores data under key and checks the returned Info.
func put(t *testing.T, s blob.Store, key string, data []byte) blob.Info {
	t.Helper()
	w, err := s.Create(t.Context(), key)
	if err != nil {
		t.Fatalf("Create(%q): %v", key, err)
	}
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		t.Fatalf("Write(%q): %v", key, err)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit(%q): %v", key, err)
	}
	checkInfo(t, info, int64(len(data)), SHA256(data))
	return info
}

func checkInfo(t *testing.T, info blob.Info, size int64, sum string) {
	t.Helper()
	if info.Size != size || info.SHA256 != sum {
		t.Fatalf("info = {%d %s}, want {%d %s}", info.Size, info.SHA256, size, sum)
	}
	if info.ModTime.IsZero() {
		t.Fatalf("info.ModTime is zero")
	}
}

func readAll(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	r, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	if r.Size() != int64(len(b)) {
		t.Fatalf("Size() = %d, read %d bytes", r.Size(), len(b))
	}
	return b
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v, want %v", what, err, target)
	}
}

// checkAbsent asserts key is neither openable nor stat-able.
func checkAbsent(t *testing.T, s blob.Store, key string) {
	t.Helper()
	r, err := s.Open(t.Context(), key)
	if err == nil {
		r.Close()
	}
	wantErr(t, "Open "+key, err, blob.ErrNotFound)
	_, err = s.Stat(t.Context(), key)
	wantErr(t, "Stat "+key, err, blob.ErrNotFound)
}

// walk returns every committed blob.
func walk(t *testing.T, s blob.Store) map[string]blob.Info {
	t.Helper()
	got := map[string]blob.Info{}
	err := s.Walk(t.Context(), func(key string, info blob.Info) error {
		if _, dup := got[key]; dup {
			return fmt.Errorf("key %q visited twice", key)
		}
		got[key] = info
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return got
}

func testWriteCommitRead(t *testing.T, s blob.Store) {
	w, err := s.Create(t.Context(), "doc/report.pdf")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	var all []byte
	for _, part := range []string{"hello", ", ", "", "world", strings.Repeat("!", 5000)} {
		n, err := w.Write([]byte(part))
		if err != nil || n != len(part) {
			t.Fatalf("Write = %d, %v", n, err)
		}
		all = append(all, part...)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	checkInfo(t, info, int64(len(all)), SHA256(all))
	if got := readAll(t, s, "doc/report.pdf"); !bytes.Equal(got, all) {
		t.Fatalf("read back %d bytes, differ from the %d written", len(got), len(all))
	}
	if _, err := w.Write([]byte("late")); err == nil {
		t.Fatal("Write after Commit succeeded")
	}
	if _, err := w.Commit(t.Context()); err == nil {
		t.Fatal("second Commit succeeded")
	}
}

func testNotVisibleBeforeCommit(t *testing.T, s blob.Store) {
	w, err := s.Create(t.Context(), "pending")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := io.Copy(w, Pattern(1, 3<<20)); err != nil {
		t.Fatal(err)
	}
	checkAbsent(t, s, "pending")
	if got := walk(t, s); len(got) != 0 {
		t.Fatalf("Walk before commit lists %v", got)
	}
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), "pending"); err != nil {
		t.Fatalf("Stat after commit: %v", err)
	}
}

func testAbortLeavesNothing(t *testing.T, s blob.Store) {
	w, err := s.Create(t.Context(), "aborted")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, Pattern(2, 5<<20+17)); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("second Abort: %v", err)
	}
	if _, err := w.Commit(t.Context()); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	checkAbsent(t, s, "aborted")
	if got := walk(t, s); len(got) != 0 {
		t.Fatalf("Walk after abort lists %v", got)
	}
	n, err := s.Sweep(t.Context(), time.Now().Add(time.Hour))
	if err != nil || n != 0 {
		t.Fatalf("Sweep after abort = %d, %v; want 0 leftovers", n, err)
	}
}

func testAbortAfterCommit(t *testing.T, s blob.Store) {
	w, err := s.Create(t.Context(), "kept")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("kept bytes")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort after Commit: %v", err)
	}
	if got := readAll(t, s, "kept"); string(got) != "kept bytes" {
		t.Fatalf("after Abort read %q", got)
	}
}

func testRangedReads(t *testing.T, s blob.Store) {
	const size = 3<<20 + 123
	data := PatternBytes(3, size)
	put(t, s, "ranged", data)
	r, err := s.Open(t.Context(), "ranged")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkRangedReads(t, r, data)
}

// checkRangedReads reads data back through r with seeks from every
// origin, then with ReadAt; r must be at offset 0 and unread.
func checkRangedReads(t *testing.T, r blob.Reader, data []byte) {
	t.Helper()
	size := int64(len(data))
	if r.Size() != size {
		t.Fatalf("Size = %d, want %d", r.Size(), size)
	}
	seeks := []struct {
		name   string
		offset int64
		whence int
		want   int64
		length int
	}{
		{"start", 0, io.SeekStart, 0, 100},
		{"middle", 1<<20 + 5, io.SeekStart, 1<<20 + 5, 70000},
		{"current", 1000, io.SeekCurrent, 1<<20 + 5 + 70000 + 1000, 10},
		{"from end", -10, io.SeekEnd, size - 10, 10},
		{"last byte", size - 1, io.SeekStart, size - 1, 1},
	}
	for _, c := range seeks {
		pos, err := r.Seek(c.offset, c.whence)
		if err != nil || pos != c.want {
			t.Fatalf("%s: Seek = %d, %v; want %d", c.name, pos, err, c.want)
		}
		buf := make([]byte, c.length)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatalf("%s: read: %v", c.name, err)
		}
		if !bytes.Equal(buf, data[c.want:c.want+int64(c.length)]) {
			t.Fatalf("%s: bytes differ", c.name)
		}
	}
	if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read at end = %d, %v; want 0, EOF", n, err)
	}
	ats := []struct {
		off     int64
		length  int
		wantN   int
		wantEOF bool
	}{
		{0, 10, 10, false},
		{2<<20 + 7, 4096, 4096, false},
		{size - 5, 5, 5, false},
		{size - 5, 10, 5, true},
		{size, 1, 0, true},
	}
	for _, c := range ats {
		buf := make([]byte, c.length)
		n, err := r.ReadAt(buf, c.off)
		if n != c.wantN || (err == io.EOF) != c.wantEOF || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d, off %d) = %d, %v; want %d, eof=%v", c.length, c.off, n, err, c.wantN, c.wantEOF)
		}
		if !bytes.Equal(buf[:n], data[c.off:c.off+int64(n)]) {
			t.Fatalf("ReadAt(off %d): bytes differ", c.off)
		}
	}
}

func testStat(t *testing.T, s blob.Store) {
	_, err := s.Stat(t.Context(), "missing")
	wantErr(t, "Stat missing", err, blob.ErrNotFound)
	data := PatternBytes(4, 12345)
	put(t, s, "stat/me", data)
	info, err := s.Stat(t.Context(), "stat/me")
	if err != nil {
		t.Fatal(err)
	}
	checkInfo(t, info, int64(len(data)), SHA256(data))
}

func testDelete(t *testing.T, s blob.Store) {
	if err := s.Delete(t.Context(), "never-there"); err != nil {
		t.Fatalf("Delete missing: %v", err)
	}
	put(t, s, "gone/soon", []byte("x"))
	put(t, s, "stays", []byte("y"))
	for i := 0; i < 2; i++ {
		if err := s.Delete(t.Context(), "gone/soon"); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	checkAbsent(t, s, "gone/soon")
	if got := readAll(t, s, "stays"); string(got) != "y" {
		t.Fatalf("neighbour changed to %q", got)
	}
}

func testCopy(t *testing.T, s blob.Store) {
	data := PatternBytes(5, 2<<20+3)
	src := put(t, s, "copy/src", data)
	info, err := s.Copy(t.Context(), "copy/src", "copy/dst")
	if err != nil {
		t.Fatal(err)
	}
	checkInfo(t, info, src.Size, src.SHA256)
	if err := s.Delete(t.Context(), "copy/src"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, "copy/dst"); !bytes.Equal(got, data) {
		t.Fatal("copy differs from source after the source was deleted")
	}
	_, err = s.Copy(t.Context(), "copy/src", "copy/other")
	wantErr(t, "Copy of missing source", err, blob.ErrNotFound)
	checkAbsent(t, s, "copy/other")
	_, err = s.Copy(t.Context(), "copy/dst", "../escape")
	wantErr(t, "Copy to invalid key", err, blob.ErrInvalidKey)
}

func testWalk(t *testing.T, s blob.Store) {
	want := map[string][]byte{
		"a":           []byte("top"),
		"a/b":         []byte("nested under a name that is also a key"),
		"x/y/z.bin":   PatternBytes(6, 70000),
		"empty/blob0": nil,
	}
	for k, v := range want {
		put(t, s, k, v)
	}
	w, err := s.Create(t.Context(), "uncommitted")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte("pending")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(t.Context(), "walk-upload", 0, strings.NewReader("partial"), nil); err != nil {
		t.Fatal(err)
	}
	got := walk(t, s)
	if len(got) != len(want) {
		t.Fatalf("Walk listed %d blobs, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		info, ok := got[k]
		if !ok {
			t.Fatalf("Walk missed %q", k)
		}
		checkInfo(t, info, int64(len(v)), SHA256(v))
	}
	stop := errors.New("stop")
	calls := 0
	err = s.Walk(t.Context(), func(string, blob.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Walk with failing fn = %v after %d calls; want stop after 1", err, calls)
	}
}

// invalidKeys break the documented key syntax.
var invalidKeys = []string{
	"", "/abs", "..", "../up", "a/../b", "a/..", "with space", "back\\slash",
	"colon:x", "tab\tx", "new\nline", "nul\x00x", "ümlaut", "star*", "q?x", "pct%2F",
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	put(t, s, "good", []byte("g"))
	ctx := t.Context()
	for _, k := range invalidKeys {
		t.Run(fmt.Sprintf("%q", k), func(t *testing.T) {
			w, err := s.Create(ctx, k)
			if err == nil {
				w.Abort()
			}
			wantErr(t, "Create", err, blob.ErrInvalidKey)
			r, err := s.Open(ctx, k)
			if err == nil {
				r.Close()
			}
			wantErr(t, "Open", err, blob.ErrInvalidKey)
			_, err = s.Stat(ctx, k)
			wantErr(t, "Stat", err, blob.ErrInvalidKey)
			wantErr(t, "Delete", s.Delete(ctx, k), blob.ErrInvalidKey)
			_, err = s.Copy(ctx, "good", k)
			wantErr(t, "Copy to", err, blob.ErrInvalidKey)
			_, err = s.Copy(ctx, k, "good2")
			wantErr(t, "Copy from", err, blob.ErrInvalidKey)
		})
	}
	if got := walk(t, s); len(got) != 1 {
		t.Fatalf("invalid keys left blobs behind: %v", got)
	}
}

func testValidKeys(t *testing.T, s blob.Store) {
	keys := []string{
		"a", "Z", "0", "A-Za-z0-9._-", "deep/ly/nested/key.bin", ".hidden", "a..b", "...",
		"sha256/e3/b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		strings.Repeat("k", 200),
	}
	for i, k := range keys {
		put(t, s, k, []byte(fmt.Sprintf("blob %d", i)))
	}
	got := walk(t, s)
	for i, k := range keys {
		if string(readAll(t, s, k)) != fmt.Sprintf("blob %d", i) {
			t.Fatalf("key %q read back other bytes", k)
		}
		if _, ok := got[k]; !ok {
			t.Fatalf("Walk missed %q", k)
		}
	}
}

func testZeroByte(t *testing.T, s blob.Store) {
	w, err := s.Create(t.Context(), "zero")
	if err != nil {
		t.Fatal(err)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	checkInfo(t, info, 0, emptySHA256)
	r, err := s.Open(t.Context(), "zero")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, err := r.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read of empty blob = %d, %v", n, err)
	}
	if r.Size() != 0 {
		t.Fatalf("Size = %d", r.Size())
	}
	st, err := s.Stat(t.Context(), "zero")
	if err != nil {
		t.Fatal(err)
	}
	checkInfo(t, st, 0, emptySHA256)
}

func testLargeStream(t *testing.T, s blob.Store) {
	want := PatternSHA256(7, largeSize)
	w, err := s.Create(t.Context(), "large")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	// Odd-sized writes cross every internal buffer boundary.
	buf := make([]byte, 300_007)
	n, err := io.CopyBuffer(struct{ io.Writer }{w}, Pattern(7, largeSize), buf)
	if err != nil || n != largeSize {
		t.Fatalf("copy = %d, %v", n, err)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	checkInfo(t, info, largeSize, want)
	r, err := s.Open(t.Context(), "large")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("bytes read back hash to %s, want %s", got, want)
	}
}

func testCancelled(t *testing.T, s blob.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	w, err := s.Create(ctx, "cancelled")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte("some bytes")); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = w.Commit(ctx)
	wantErr(t, "Commit with cancelled ctx", err, context.Canceled)
	checkAbsent(t, s, "cancelled")
	_, err = s.Append(ctx, "cancelled-upload", 0, strings.NewReader("x"), nil)
	wantErr(t, "Append with cancelled ctx", err, context.Canceled)
}

func testSweep(t *testing.T, s blob.Store) {
	put(t, s, "committed", []byte("c"))
	if _, err := s.Append(t.Context(), "upload", 0, strings.NewReader("part"), nil); err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(t.Context(), "live")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := io.Copy(w, Pattern(8, 2<<20)); err != nil {
		t.Fatal(err)
	}
	// Nothing is older than an hour ago: a live writer survives.
	if n, err := s.Sweep(t.Context(), time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Sweep(an hour ago) = %d, %v; want 0", n, err)
	}
	if _, err := w.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatalf("Commit after Sweep: %v", err)
	}
	if n, err := s.Sweep(t.Context(), time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("Sweep with nothing left over = %d, %v; want 0", n, err)
	}
	for _, k := range []string{"committed", "live"} {
		if _, err := s.Stat(t.Context(), k); err != nil {
			t.Fatalf("Sweep removed committed %q: %v", k, err)
		}
	}
	if n, err := s.PartialSize(t.Context(), "upload"); err != nil || n != 4 {
		t.Fatalf("Sweep touched the partial upload: %d, %v", n, err)
	}
}

func testConcurrent(t *testing.T, s blob.Store) {
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- concurrentWorker(t.Context(), s, i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := walk(t, s); len(got) != 2*workers {
		t.Fatalf("Walk lists %d blobs, want %d", len(got), 2*workers)
	}
}

func concurrentWorker(ctx context.Context, s blob.Store, i int) error {
	seed := uint64(100 + i)
	size := int64(1<<20 + i*4099)
	key := fmt.Sprintf("conc/%d", i)
	w, err := s.Create(ctx, key)
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := io.Copy(w, Pattern(seed, size)); err != nil {
		return err
	}
	info, err := w.Commit(ctx)
	if err != nil {
		return err
	}
	if want := PatternSHA256(seed, size); info.SHA256 != want {
		return fmt.Errorf("%s: sha %s, want %s", key, info.SHA256, want)
	}
	id := fmt.Sprintf("conc-upload-%d", i)
	var off int64
	for c := range 3 {
		n, err := s.Append(ctx, id, off, Pattern(seed+uint64(c), 100_000), nil)
		if err != nil {
			return err
		}
		off += n
	}
	pub, err := s.Publish(ctx, id, key+"-up")
	if err != nil {
		return err
	}
	if pub.Size != 300_000 {
		return fmt.Errorf("%s: published %d bytes", id, pub.Size)
	}
	r, err := s.Open(ctx, key)
	if err != nil {
		return err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != info.SHA256 {
		return fmt.Errorf("%s: read back sha %s, want %s", key, got, info.SHA256)
	}
	return nil
}
