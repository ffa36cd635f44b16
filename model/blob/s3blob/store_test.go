package s3blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/blobtest"
	"github.com/filegate/filegate/model/blob/s3test"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

var (
	bucketOnce sync.Once
	bucketName string
	prefixes   atomic.Int64
)

// testConfig is a fresh prefix in a bucket of the shared server, with a
// small retry budget so failures show quickly.
func testConfig(t *testing.T) (*s3test.Server, Config) {
	t.Helper()
	srv := s3test.Shared(t)
	bucketOnce.Do(func() { bucketName = srv.NewBucket(t) })
	s3test.SetEnv(t)
	return srv, Config{
		Bucket:      bucketName,
		Prefix:      fmt.Sprintf("t%d/store", prefixes.Add(1)),
		Endpoint:    srv.Endpoint,
		Region:      s3test.Region,
		PathStyle:   true,
		MaxAttempts: 3,
	}
}

func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func newStore(t *testing.T) *Store {
	t.Helper()
	_, cfg := testConfig(t)
	return open(t, cfg)
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t) })
}

// The suite again under settings that take other paths: minimum parts
// (blobs cross many parts and stage merges) and uploads assembled in
// place (Config.PartialKey; Publish under other keys copies).
func TestConformanceVariants(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	variants := []struct {
		name string
		set  func(*Config)
	}{
		{"MinimumParts", func(c *Config) { c.PartSize, c.Concurrency = minPart, 3 }},
		{"PartialKey", func(c *Config) { c.PartSize, c.PartialKey = minPart, upKey }},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			blobtest.Run(t, func(t *testing.T) blob.Store {
				_, cfg := testConfig(t)
				v.set(&cfg)
				return open(t, cfg)
			})
		})
	}
}

func sha256Of(t *testing.T, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// put commits the bytes of r under key.
func put(t *testing.T, s *Store, key string, r io.Reader) blob.Info {
	t.Helper()
	w, err := s.Create(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := io.Copy(w, r); err != nil {
		t.Fatal(err)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit(%q): %v", key, err)
	}
	return info
}
