package s3blob

import (
	"context"
	"fmt"
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

// Small parts make the conformance suite's blobs cross many parts and
// stage merges.
func TestConformanceMinimumParts(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	blobtest.Run(t, func(t *testing.T) blob.Store {
		_, cfg := testConfig(t)
		cfg.PartSize = minPart
		cfg.Concurrency = 3
		return open(t, cfg)
	})
}
