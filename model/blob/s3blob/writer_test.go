package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/filegate/filegate/model/blob"
)

// choppy hands out its bytes in reads of irregular sizes, as a request
// body does, and hides bytes.Reader's WriteTo so that io.Copy would use
// the writer's ReadFrom; after failAt bytes (if > 0) it fails.
type choppy struct {
	r      *bytes.Reader
	rng    *rand.Rand
	read   int
	failAt int
}

var errSource = errors.New("source broke")

func (c *choppy) Read(p []byte) (int, error) {
	if c.failAt > 0 && c.read >= c.failAt {
		return 0, errSource
	}
	n := min(len(p), 1+c.rng.IntN(300<<10))
	if c.failAt > 0 {
		n = min(n, c.failAt-c.read)
	}
	k, err := c.r.Read(p[:n])
	c.read += k
	return k, err
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// ReadFrom reads straight into part buffers, hashing in another
// goroutine: whatever the sizes of the source's reads and wherever the
// part boundaries fall, the blob holds exactly the bytes and the SHA-256
// the writer reports.
func TestReadFromStreamsParts(t *testing.T) {
	_, cfg := testConfig(t)
	cfg.PartSize = minPart
	s := open(t, cfg)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"just under a part", minPart - 1},
		{"exactly one part", minPart},
		{"three parts", 2*minPart + 12345},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(tc.size, uint64(tc.size))
			want := sha256.Sum256(data)
			w, err := s.Create(ctx, "rf/"+strings.ReplaceAll(tc.name, " ", "-"))
			if err != nil {
				t.Fatal(err)
			}
			n, err := w.(io.ReaderFrom).ReadFrom(&choppy{r: bytes.NewReader(data), rng: rand.New(rand.NewPCG(7, 7))})
			if err != nil || n != int64(tc.size) {
				t.Fatalf("ReadFrom = %d, %v; want %d, nil", n, err, tc.size)
			}
			info, err := w.Commit(ctx)
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if info.Size != int64(tc.size) || info.SHA256 != hex.EncodeToString(want[:]) {
				t.Fatalf("Commit = %d bytes, sha256 %s; want %d, %x", info.Size, info.SHA256, tc.size, want)
			}
			st, err := s.Stat(ctx, "rf/"+strings.ReplaceAll(tc.name, " ", "-"))
			if err != nil || st.SHA256 != info.SHA256 || st.Size != info.Size {
				t.Fatalf("Stat = %+v, %v; want %+v", st, err, info)
			}
			rd, err := s.Open(ctx, "rf/"+strings.ReplaceAll(tc.name, " ", "-"))
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			var got bytes.Buffer
			if _, err := io.Copy(&got, rd); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("read back %d bytes that differ from the %d written", got.Len(), len(data))
			}
		})
	}
}

// A source that breaks after some parts went out returns the error with
// the count read; Abort then leaves neither a blob nor a multipart upload.
func TestReadFromBrokenSourceLeavesNothing(t *testing.T) {
	_, cfg := testConfig(t)
	cfg.PartSize = minPart
	s := open(t, cfg)
	ctx := context.Background()
	data := randomBytes(3*minPart, 3)
	w, err := s.Create(ctx, "broken")
	if err != nil {
		t.Fatal(err)
	}
	failAt := 2*minPart + 999
	n, err := w.(io.ReaderFrom).ReadFrom(&choppy{r: bytes.NewReader(data), rng: rand.New(rand.NewPCG(9, 9)), failAt: failAt})
	if !errors.Is(err, errSource) || n != int64(failAt) {
		t.Fatalf("ReadFrom = %d, %v; want %d, %v", n, err, failAt, errSource)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if _, err := s.Stat(ctx, "broken"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat after Abort: %v, want ErrNotFound", err)
	}
	prefix := s.objectName("broken")
	out, err := s.c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left after Abort", len(out.Uploads))
	}
}
