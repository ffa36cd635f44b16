package blobtest

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/filegate/filegate/model/blob"
)

func partialSpecs() []spec {
	return []spec{
		{"AppendSequencePublish", testAppendSequence},
		{"AppendWrongOffset", testWrongOffset},
		{"MissingUpload", testMissingUpload},
		{"AcceptRejectsChunk", testAcceptRejects},
		{"ReaderFailsMidway", testReaderFails},
		{"PartialSizeDuringAppend", testSizeDuringAppend},
		{"Discard", testDiscard},
		{"ZeroBytePublish", testZeroPublish},
		{"PublishInvalidKey", testPublishInvalidKey},
		{"LargeAppend", testLargeAppend},
	}
}

// appendOK appends data at off and checks the count, accept's argument
// and the new size.
func appendOK(t *testing.T, s blob.Store, id string, off int64, data []byte) int64 {
	t.Helper()
	accepted := int64(-1)
	n, err := s.Append(t.Context(), id, off, bytes.NewReader(data), func(n int64) error {
		accepted = n
		return nil
	})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Append(%q, %d, %d bytes) = %d, %v", id, off, len(data), n, err)
	}
	if accepted != n {
		t.Fatalf("accept saw %d, Append returned %d", accepted, n)
	}
	checkSize(t, s, id, off+n)
	return off + n
}

func checkSize(t *testing.T, s blob.Store, id string, want int64) {
	t.Helper()
	got, err := s.PartialSize(t.Context(), id)
	if err != nil || got != want {
		t.Fatalf("PartialSize(%q) = %d, %v; want %d", id, got, err, want)
	}
}

// publish publishes id as key and checks the result against want.
func publish(t *testing.T, s blob.Store, id, key string, want []byte) {
	t.Helper()
	info, err := s.Publish(t.Context(), id, key)
	if err != nil {
		t.Fatalf("Publish(%q, %q): %v", id, key, err)
	}
	checkInfo(t, info, int64(len(want)), SHA256(want))
	if got := readAll(t, s, key); !bytes.Equal(got, want) {
		t.Fatalf("published blob differs from the appended bytes (%d vs %d bytes)", len(got), len(want))
	}
	st, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	checkInfo(t, st, int64(len(want)), SHA256(want))
}

func testAppendSequence(t *testing.T, s blob.Store) {
	var all []byte
	var off int64
	for i, size := range []int{1000, 1<<20 + 1, 5, 2 << 20, 1} {
		chunk := PatternBytes(uint64(20+i), size)
		off = appendOK(t, s, "seq", off, chunk)
		all = append(all, chunk...)
	}
	checkAbsent(t, s, "seq/blob")
	publish(t, s, "seq", "seq/blob", all)
	_, err := s.PartialSize(t.Context(), "seq")
	wantErr(t, "PartialSize after Publish", err, blob.ErrNotFound)
	_, err = s.Publish(t.Context(), "seq", "seq/again")
	wantErr(t, "second Publish", err, blob.ErrNotFound)
	if got := walk(t, s); len(got) != 1 {
		t.Fatalf("Walk after publish lists %v, want only seq/blob", got)
	}
}

func testWrongOffset(t *testing.T, s blob.Store) {
	appendOK(t, s, "off", 0, []byte("0123456789"))
	for _, off := range []int64{0, 5, 9, 11, 1 << 40, -1} {
		called := false
		n, err := s.Append(t.Context(), "off", off, strings.NewReader("zz"), func(int64) error {
			called = true
			return nil
		})
		wantErr(t, "Append at wrong offset", err, blob.ErrOffset)
		if n != 0 || called {
			t.Fatalf("Append at %d: n=%d accept called=%v", off, n, called)
		}
		checkSize(t, s, "off", 10)
	}
	appendOK(t, s, "off", 10, []byte("ab"))
	publish(t, s, "off", "off", []byte("0123456789ab"))
}

func testMissingUpload(t *testing.T, s blob.Store) {
	_, err := s.PartialSize(t.Context(), "nope")
	wantErr(t, "PartialSize of missing", err, blob.ErrNotFound)
	// A missing upload at a non-zero offset is either answer: nothing
	// there (ErrNotFound) or size 0 is not the offset (ErrOffset).
	_, err = s.Append(t.Context(), "nope", 7, strings.NewReader("x"), nil)
	if !errors.Is(err, blob.ErrNotFound) && !errors.Is(err, blob.ErrOffset) {
		t.Fatalf("Append to missing at 7: err = %v, want ErrNotFound or ErrOffset", err)
	}
	_, err = s.PartialSize(t.Context(), "nope")
	wantErr(t, "PartialSize after refused Append", err, blob.ErrNotFound)
	_, err = s.Publish(t.Context(), "nope", "k")
	wantErr(t, "Publish of missing", err, blob.ErrNotFound)
	checkAbsent(t, s, "k")
	if err := s.Discard(t.Context(), "nope"); err != nil {
		t.Fatalf("Discard of missing: %v", err)
	}
}

func testAcceptRejects(t *testing.T, s blob.Store) {
	head := PatternBytes(30, 100)
	appendOK(t, s, "acc", 0, head)
	rejected := PatternBytes(31, 2<<20+9)
	errReject := errors.New("checksum mismatch")
	var saw int64
	n, err := s.Append(t.Context(), "acc", 100, bytes.NewReader(rejected), func(n int64) error {
		saw = n
		return errReject
	})
	wantErr(t, "rejected Append", err, errReject)
	if saw != int64(len(rejected)) {
		t.Fatalf("accept saw %d, chunk is %d", saw, len(rejected))
	}
	if n != 0 {
		t.Fatalf("rejected Append returned n=%d, want 0", n)
	}
	checkSize(t, s, "acc", 100)
	good := PatternBytes(32, 3000)
	appendOK(t, s, "acc", 100, good)
	publish(t, s, "acc", "acc", append(head, good...))
}

func testReaderFails(t *testing.T, s blob.Store) {
	head := PatternBytes(40, 1000)
	appendOK(t, s, "flaky", 0, head)
	const kept = 1_500_000
	body := PatternBytes(41, 4<<20)
	called := false
	n, err := s.Append(t.Context(), "flaky", 1000, FailAfter(bytes.NewReader(body), kept, ErrFlaky),
		func(int64) error { called = true; return nil })
	wantErr(t, "Append from failing reader", err, ErrFlaky)
	if n != kept {
		t.Fatalf("Append kept n=%d, want %d", n, kept)
	}
	if called {
		t.Fatal("accept was called for an incomplete chunk")
	}
	checkSize(t, s, "flaky", 1000+kept)
	// The client resumes from the reported offset.
	appendOK(t, s, "flaky", 1000+kept, body[kept:])
	publish(t, s, "flaky", "flaky", append(head, body...))
}

func testSizeDuringAppend(t *testing.T, s blob.Store) {
	appendOK(t, s, "busy", 0, []byte("durable"))
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(t.Context(), "busy", 7, pr, nil)
		done <- err
	}()
	chunk := PatternBytes(50, 2<<20)
	if _, err := pw.Write(chunk); err != nil { // returns once Append has read it
		t.Fatal(err)
	}
	checkSize(t, s, "busy", 7)
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("Append: %v", err)
	}
	checkSize(t, s, "busy", 7+int64(len(chunk)))
	publish(t, s, "busy", "busy", append([]byte("durable"), chunk...))
}

func testDiscard(t *testing.T, s blob.Store) {
	appendOK(t, s, "disc", 0, PatternBytes(60, 5000))
	if err := s.Discard(t.Context(), "disc"); err != nil {
		t.Fatal(err)
	}
	_, err := s.PartialSize(t.Context(), "disc")
	wantErr(t, "PartialSize after Discard", err, blob.ErrNotFound)
	_, err = s.Publish(t.Context(), "disc", "disc")
	wantErr(t, "Publish after Discard", err, blob.ErrNotFound)
	if err := s.Discard(t.Context(), "disc"); err != nil {
		t.Fatalf("second Discard: %v", err)
	}
	// The id starts afresh; nothing of the old bytes or hash survives.
	fresh := PatternBytes(61, 700)
	appendOK(t, s, "disc", 0, fresh)
	publish(t, s, "disc", "disc", fresh)
}

func testZeroPublish(t *testing.T, s blob.Store) {
	n, err := s.Append(t.Context(), "zero", 0, strings.NewReader(""), nil)
	if err != nil || n != 0 {
		t.Fatalf("empty Append = %d, %v", n, err)
	}
	checkSize(t, s, "zero", 0)
	publish(t, s, "zero", "zero", nil)
}

func testPublishInvalidKey(t *testing.T, s blob.Store) {
	appendOK(t, s, "pik", 0, []byte("abc"))
	_, err := s.Publish(t.Context(), "pik", "../evil")
	wantErr(t, "Publish to invalid key", err, blob.ErrInvalidKey)
	checkSize(t, s, "pik", 3)
	publish(t, s, "pik", "fine", []byte("abc"))
}

func testLargeAppend(t *testing.T, s blob.Store) {
	src := Pattern(70, largeSize)
	var off int64
	for _, size := range []int64{10<<20 + 3, 20 << 20, 1, largeSize - (30<<20 + 4)} {
		n, err := s.Append(t.Context(), "big", off, io.LimitReader(src, size), nil)
		if err != nil || n != size {
			t.Fatalf("Append at %d = %d, %v; want %d", off, n, err, size)
		}
		off += n
	}
	checkSize(t, s, "big", largeSize)
	info, err := s.Publish(t.Context(), "big", "big")
	if err != nil {
		t.Fatal(err)
	}
	checkInfo(t, info, largeSize, PatternSHA256(70, largeSize))
}
