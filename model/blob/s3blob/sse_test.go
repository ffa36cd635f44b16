package s3blob

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/filegate/filegate/model/blob/blobtest"
)

// TestEveryObjectIsEncrypted writes through every path that creates an
// object (a small and a multipart write, a server-side copy, a resumable
// upload's state, stages and parts, its publication) with SSE configured,
// and checks at a proxy in front of the server that each request creating
// an object asked for the encryption and the KMS key, and that no part
// upload carried the headers, which S3 refuses there.
func TestEveryObjectIsEncrypted(t *testing.T) {
	srv, cfg := testConfig(t)
	var mu sync.Mutex
	var creating, parts []string
	cfg.Endpoint = proxyWith(t, srv.Endpoint, func(_ http.ResponseWriter, r *http.Request) bool {
		q := r.URL.Query()
		sse := r.Header.Get("X-Amz-Server-Side-Encryption") + " " + r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id")
		what := r.Method + " " + r.URL.Path + " " + sse
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPut && q.Has("partNumber"):
			parts = append(parts, what)
		case r.Method == http.MethodPut && !q.Has("tagging"), r.Method == http.MethodPost && q.Has("uploads"):
			creating = append(creating, what)
		}
		return false
	})
	cfg.SSE, cfg.SSEKMSKeyID = "aws:kms", "alias/filegate-test"
	s := open(t, cfg)

	small := blobtest.PatternBytes(3, 1000)
	large := blobtest.PatternBytes(4, 9<<20+5)
	put(t, s, "sse-small", bytes.NewReader(small))
	put(t, s, "sse-large", bytes.NewReader(large))
	if _, err := s.Copy(t.Context(), "sse-small", "sse-copy"); err != nil {
		t.Fatal(err)
	}
	s.copyLimit, s.copyPart = 1<<20, 5<<20 // a multipart server-side copy
	if _, err := s.Copy(t.Context(), "sse-large", "sse-large-copy"); err != nil {
		t.Fatal(err)
	}
	off := mustAppend(t, s, "sse-up", 0, large[:1<<20])
	off = mustAppend(t, s, "sse-up", off, large[1<<20:7<<20])
	mustAppend(t, s, "sse-up", off, large[7<<20:])
	checkPublished(t, s, "sse-up", "sse-up-done", large)
	// An upload smaller than a part is published with one PutObject.
	mustAppend(t, s, "sse-tiny", mustAppend(t, s, "sse-tiny", 0, small[:400]), small[400:])
	checkPublished(t, s, "sse-tiny", "sse-tiny-done", small)

	mu.Lock()
	defer mu.Unlock()
	if len(creating) < 6 {
		t.Fatalf("only %d object-creating requests seen: %q", len(creating), creating)
	}
	for _, c := range creating {
		if !strings.HasSuffix(c, " aws:kms alias/filegate-test") {
			t.Errorf("created without the encryption asked for: %s", c)
		}
	}
	if len(parts) == 0 {
		t.Fatal("no part uploads seen")
	}
	for _, p := range parts {
		if strings.TrimSpace(strings.SplitN(p, " ", 3)[2]) != "" {
			t.Errorf("a part upload carried encryption headers: %s", p)
		}
	}
}
