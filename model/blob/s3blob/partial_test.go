package s3blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/blobtest"
)

// objectsUnder lists the object names under the store's prefix + dir.
func objectsUnder(t *testing.T, s *Store, dir string) []string {
	t.Helper()
	prefix := s.base + dir
	out, err := s.c.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range out.Contents {
		names = append(names, strings.TrimPrefix(aws.ToString(o.Key), prefix))
	}
	return names
}

func uploadsUnder(t *testing.T, s *Store) []types.MultipartUpload {
	t.Helper()
	out, err := s.c.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: aws.String(s.base)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Uploads
}

func mustAppend(t *testing.T, s *Store, id string, off int64, data []byte) int64 {
	t.Helper()
	n, err := s.Append(t.Context(), id, off, bytes.NewReader(data), nil)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Append(%q, %d, %d bytes) = %d, %v", id, off, len(data), n, err)
	}
	return off + n
}

func checkPublished(t *testing.T, s *Store, id, key string, want []byte) {
	t.Helper()
	info, err := s.Publish(t.Context(), id, key)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if info.Size != int64(len(want)) || info.SHA256 != blobtest.SHA256(want) {
		t.Fatalf("Publish = {%d %s}, want {%d %s}", info.Size, info.SHA256, len(want), blobtest.SHA256(want))
	}
	r, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("published bytes differ (%d vs %d bytes, err %v)", len(got), len(want), err)
	}
	if left := objectsUnder(t, s, "partial/"); len(left) != 0 {
		t.Fatalf("Publish left %v under partial/", left)
	}
	if ups := uploadsUnder(t, s); len(ups) != 0 {
		t.Fatalf("Publish left %d multipart uploads", len(ups))
	}
}

// Small chunks are staged as objects and merged into one part when they
// fill it; the merged stages are deleted.
func TestStagesMergeIntoParts(t *testing.T) {
	_, cfg := testConfig(t)
	s := open(t, cfg)
	var all []byte
	var off int64
	sizes := []int{3 << 20, 1 << 20, 2 << 20, 100, 5<<20 + 1, 10}
	stagesAfter := []int{1, 2, 0, 1, 0, 1}
	for i, size := range sizes {
		chunk := blobtest.PatternBytes(uint64(200+i), size)
		off = mustAppend(t, s, "merge", off, chunk)
		all = append(all, chunk...)
		st, err := s.loadState(t.Context(), "merge")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Stages) != stagesAfter[i] {
			t.Fatalf("after chunk %d: %d stages, want %d (%+v)", i, len(st.Stages), stagesAfter[i], st)
		}
		if st.Size != off || st.staged()+sumParts(st) != off {
			t.Fatalf("after chunk %d: state size %d, parts+stages %d, want %d", i, st.Size, st.staged()+sumParts(st), off)
		}
		var stageObjs int
		for _, n := range objectsUnder(t, s, "partial/merge/") {
			if strings.HasPrefix(n, "stage-") {
				stageObjs++
			}
		}
		if stageObjs != len(st.Stages) {
			t.Fatalf("after chunk %d: %d stage objects for %d stages", i, stageObjs, len(st.Stages))
		}
	}
	checkPublished(t, s, "merge", "merged", all)
}

func sumParts(st *pstate) int64 {
	var n int64
	for _, p := range st.partSizes() {
		n += p
	}
	return n
}

// A crash is a Store dropped without any cleanup; a new Store, as on
// another instance, resumes from what S3 holds.
func TestCrashKeepsAcknowledgedBytes(t *testing.T) {
	_, cfg := testConfig(t)
	var all []byte
	var off int64
	chunk := func(seed uint64, size int) []byte {
		b := blobtest.PatternBytes(seed, size)
		all = append(all, b...)
		return b
	}
	// Instance 1: a staged chunk and a chunk that fills parts.
	s1 := open(t, cfg)
	off = mustAppend(t, s1, "crash", off, chunk(1, 700_000))
	off = mustAppend(t, s1, "crash", off, chunk(2, 9<<20))

	// Instance 1 again: a chunk whose parts and tail reach S3 but whose
	// state never does (accept fails, as a crash before the state write
	// would leave it): the orphans must not leak into the upload.
	rejected := blobtest.PatternBytes(3, 13<<20+5)
	_, err := s1.Append(t.Context(), "crash", off, bytes.NewReader(rejected), func(int64) error {
		return errors.New("crash")
	})
	if err == nil {
		t.Fatal("rejected chunk was kept")
	}
	// A stage object a crashed Append left at the next offset.
	garbage := s1.stageName("crash", off)
	if _, err := s1.c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &s1.bucket, Key: &garbage,
		Body: strings.NewReader("not acknowledged")}); err != nil {
		t.Fatal(err)
	}

	// Instance 2 resumes.
	s2 := open(t, cfg)
	if n, err := s2.PartialSize(t.Context(), "crash"); err != nil || n != off {
		t.Fatalf("PartialSize on a new instance = %d, %v; want %d", n, err, off)
	}
	off = mustAppend(t, s2, "crash", off, chunk(4, 1234))
	off = mustAppend(t, s2, "crash", off, chunk(5, 6<<20))

	// Instance 3 crashes while publishing, right after the multipart
	// upload is completed and before the state says so.
	s3i := open(t, cfg)
	st, err := s3i.loadState(t.Context(), "crash")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Stages) > 0 {
		t.Fatalf("test wants a state without stages, got %+v", st.Stages)
	}
	data := s3i.dataName("crash")
	parts, err := s3i.listParts(t.Context(), data, st.UploadID, st.numParts())
	if err != nil {
		t.Fatal(err)
	}
	done := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		done[i] = types.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag, ChecksumCRC32: p.ChecksumCRC32}
	}
	if _, err := s3i.c.CompleteMultipartUpload(t.Context(), &s3.CompleteMultipartUploadInput{Bucket: &s3i.bucket,
		Key: &data, UploadId: &st.UploadID, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		t.Fatal(err)
	}

	// Instance 4 publishes.
	s4 := open(t, cfg)
	if n, err := s4.PartialSize(t.Context(), "crash"); err != nil || n != off || off != int64(len(all)) {
		t.Fatalf("PartialSize = %d, %v; want %d", n, err, off)
	}
	checkPublished(t, s4, "crash", "crashed", all)
}

// A second writer on the same upload (another process) loses with
// ErrOffset instead of overwriting the first one's state.
func TestStaleStateLosesRace(t *testing.T) {
	_, cfg := testConfig(t)
	s1, s2 := open(t, cfg), open(t, cfg)
	off := mustAppend(t, s1, "race", 0, []byte("first"))
	st, err := s2.loadState(t.Context(), "race")
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s1, "race", off, []byte("second"))
	// s2 writes a state based on what it read before s1's second chunk.
	st.Size++
	err = s2.saveState(t.Context(), "race", st, nil)
	if !errors.Is(err, blob.ErrOffset) {
		t.Fatalf("stale state write: err = %v, want ErrOffset", err)
	}
	checkPublished(t, s1, "race", "race", []byte("firstsecond"))
}

// Sweep aborts uploads of crashed writers and of crashed first Appends,
// removes unreferenced stage objects, and spares live uploads.
func TestSweepRemovesCrashLeftovers(t *testing.T) {
	_, cfg := testConfig(t)
	cfg.PartSize = minPart
	crashed := open(t, cfg)
	w, err := crashed.Create(t.Context(), "never-committed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, blobtest.Pattern(9, 12<<20)); err != nil {
		t.Fatal(err)
	}
	// A live partial upload with a part and a stage.
	live := blobtest.PatternBytes(10, 6<<20+77)
	mustAppend(t, crashed, "alive", 0, live)
	// An upload under partial/ that no state names, and an orphan stage.
	orphan := crashed.dataName("ghost")
	if _, err := crashed.c.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: &crashed.bucket, Key: &orphan}); err != nil {
		t.Fatal(err)
	}
	stray := crashed.stageName("ghost", 0)
	if _, err := crashed.c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &crashed.bucket, Key: &stray,
		Body: strings.NewReader("stray")}); err != nil {
		t.Fatal(err)
	}

	s := open(t, cfg) // another process: the writer is not live here
	if n, err := s.Sweep(t.Context(), time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Sweep(an hour ago) = %d, %v; want 0", n, err)
	}
	n, err := s.Sweep(t.Context(), time.Now().Add(time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("Sweep = %d, %v; want 3 (writer upload, ghost upload, stray stage)", n, err)
	}
	if ups := uploadsUnder(t, s); len(ups) != 1 || aws.ToString(ups[0].Key) != s.dataName("alive") {
		t.Fatalf("uploads left: %v", ups)
	}
	if n, err := crashed.Sweep(t.Context(), time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("second Sweep = %d, %v; want 0", n, err)
	}
	checkPublished(t, s, "alive", "alive", live)
	// The crashed process's writer cannot commit any more.
	if _, err := w.Commit(context.Background()); err == nil {
		t.Fatal("Commit of a swept upload succeeded")
	}
}

func upKey(id string) string { return "up-" + id }

// Publishing under the expected key completes in place: no copy, and an
// idle upload there is a live partial upload that Sweep spares.
func TestPartialKeyPublishesInPlace(t *testing.T) {
	_, cfg := testConfig(t)
	cfg.PartialKey = upKey
	s := open(t, cfg)
	data := blobtest.PatternBytes(21, 17<<20+5)
	off := mustAppend(t, s, "inplace", 0, data[:9<<20])
	if ups := uploadsUnder(t, s); len(ups) != 1 || aws.ToString(ups[0].Key) != s.objectName("up-inplace") {
		t.Fatalf("uploads = %v, want one on objects/up-inplace", ups)
	}
	other := open(t, cfg)
	if n, err := other.Sweep(t.Context(), time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("Sweep = %d, %v; want the idle partial upload spared", n, err)
	}
	mustAppend(t, other, "inplace", off, data[9<<20:])
	checkPublished(t, other, "inplace", "up-inplace", data)
	h, err := s.c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.objectName("up-inplace"))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(aws.ToString(h.ETag), "-") {
		t.Fatalf("ETag %s is not a multipart ETag: the blob was copied", aws.ToString(h.ETag))
	}

	// Discard of an upload assembled in place but never published
	// removes the object too.
	mustAppend(t, s, "dropped", 0, data)
	st, err := s.loadState(t.Context(), "dropped")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.assemble(t.Context(), "dropped", st); err != nil {
		t.Fatal(err)
	}
	if err := s.Discard(t.Context(), "dropped"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), "up-dropped"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat after Discard of an assembled upload: %v", err)
	}
	if ups := uploadsUnder(t, s); len(ups) != 0 {
		t.Fatalf("uploads left: %v", ups)
	}
}

// cancelAfter yields n bytes of r, then cancels the request's context and
// fails, like a client that goes away mid-PATCH.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
		return 0, context.Canceled
	}
	k, err := c.r.Read(p[:min(int64(len(p)), c.n)])
	c.n -= int64(k)
	return k, err
}

// Bytes read before the request's context ends are still made durable,
// parts and tail alike.
func TestCancelledRequestKeepsReadBytes(t *testing.T) {
	s := newStore(t)
	data := blobtest.PatternBytes(31, 11<<20)
	const kept = 9<<20 + 123
	ctx, cancel := context.WithCancel(t.Context())
	n, err := s.Append(ctx, "gone", 0, &cancelAfter{r: bytes.NewReader(data), n: kept, cancel: cancel}, nil)
	if !errors.Is(err, context.Canceled) || n != kept {
		t.Fatalf("Append = %d, %v; want %d, context.Canceled", n, err, kept)
	}
	if size, err := s.PartialSize(t.Context(), "gone"); err != nil || size != kept {
		t.Fatalf("PartialSize = %d, %v; want %d", size, err, kept)
	}
	mustAppend(t, s, "gone", kept, data[kept:])
	checkPublished(t, s, "gone", "gone", data)
}
