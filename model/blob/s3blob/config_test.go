package s3blob

import (
	"bytes"
	"context"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/filegate/filegate/model/blob/blobtest"
)

func TestParseURL(t *testing.T) {
	cases := []struct {
		in      string
		want    Config
		wantErr string
	}{
		{in: "s3://bucket", want: Config{Bucket: "bucket"}},
		{in: "s3://bucket/a/b/?region=eu-west-1", want: Config{Bucket: "bucket", Prefix: "a/b", Region: "eu-west-1"}},
		{
			in:   "s3://files/pfx?endpoint=http://127.0.0.1:7070&region=us-east-1&path_style=true",
			want: Config{Bucket: "files", Prefix: "pfx", Endpoint: "http://127.0.0.1:7070", Region: "us-east-1", PathStyle: true},
		},
		{in: "s3://b?endpoint=https%3A%2F%2Fs3.example.org&path_style=0", want: Config{Bucket: "b", Endpoint: "https://s3.example.org"}},
		{in: "file:///x", wantErr: "scheme"},
		{in: "s3:///prefix", wantErr: "no bucket"},
		{in: "s3://b?endpoint=ftp://x", wantErr: "endpoint"},
		{in: "s3://b?endpoint=127.0.0.1:7070", wantErr: "endpoint"},
		{in: "s3://b?path_style=maybe", wantErr: "path_style"},
		{in: "s3://b?secret=x", wantErr: "unknown parameter"},
		{in: "s3://key:secret@b", wantErr: "credentials"},
		{in: "s3://b?sse=AES256", want: Config{Bucket: "b", SSE: "AES256"}},
		{in: "s3://b?sse=aws:kms&sse_kms_key_id=alias/filegate", want: Config{Bucket: "b", SSE: "aws:kms", SSEKMSKeyID: "alias/filegate"}},
		{in: "s3://b?sse=aes256", wantErr: "neither AES256 nor aws:kms"},
		{in: "s3://b?sse=AES256&sse_kms_key_id=k", wantErr: "needs sse=aws:kms"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseURL(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one about %q", err, c.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("ParseURL = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// The harness's URL round-trips through ParseURL into a working store.
func TestParseURLOpensStore(t *testing.T) {
	srv, cfg := testConfig(t)
	parsed, err := ParseURL(srv.URL(cfg.Bucket, cfg.Prefix))
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, parsed)
	put(t, s, "via/url", strings.NewReader("x"))
	if s.base != cfg.Prefix+"/" {
		t.Fatalf("prefix %q, want %q", s.base, cfg.Prefix+"/")
	}
}

// AWS_CA_BUNDLE only matters for https: set to a real bundle, unset,
// empty or naming a missing file, the store works against an http
// endpoint; a missing bundle with an https endpoint is an error.
func TestCABundle(t *testing.T) {
	bundle := os.Getenv("AWS_CA_BUNDLE")
	if bundle == "" {
		bundle = "/etc/ssl/certs/ca-certificates.crt"
	}
	missing := filepath.Join(t.TempDir(), "no-such-bundle.pem")
	cases := []struct {
		name  string
		value *string // nil: unset
	}{
		{"set", &bundle},
		{"empty", aws.String("")},
		{"unset", nil},
		{"missing file", &missing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, cfg := testConfig(t)
			if c.value == nil {
				t.Setenv("AWS_CA_BUNDLE", "")
				os.Unsetenv("AWS_CA_BUNDLE")
			} else {
				if *c.value == bundle {
					if _, err := os.Stat(bundle); err != nil {
						t.Skipf("no CA bundle at %s", bundle)
					}
				}
				t.Setenv("AWS_CA_BUNDLE", *c.value)
			}
			s := open(t, cfg)
			put(t, s, "ca", blobtest.Pattern(77, 1000))
		})
	}
	t.Run("missing file with https", func(t *testing.T) {
		_, cfg := testConfig(t)
		t.Setenv("AWS_CA_BUNDLE", missing)
		cfg.Endpoint = "https://127.0.0.1:1"
		if _, err := New(t.Context(), cfg); err == nil {
			t.Fatal("New succeeded with an unreadable CA bundle for an https endpoint")
		}
	})
}

func TestPresignGetForcesAttachment(t *testing.T) {
	s := newStore(t)
	data := []byte("<html><script>alert(1)</script></html>")
	put(t, s, "page", bytes.NewReader(data))
	for _, filename := range []string{"report.html", `Befund "Müller" ö.html`} {
		u, err := s.PresignGet(t.Context(), "page", filename, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(u) // no credentials
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Fatalf("GET presigned = %d %q", resp.StatusCode, body)
		}
		disp, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
		if err != nil || disp != "attachment" || params["filename"] != filename {
			t.Fatalf("Content-Disposition %q (%v): %v", resp.Header.Get("Content-Disposition"), params, err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
	}
	// A tampered URL is refused.
	u, _ := s.PresignGet(t.Context(), "page", "x", time.Minute)
	resp, err := http.Get(strings.Replace(u, "attachment", "inline", 1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("tampered presigned URL answered %d", resp.StatusCode)
	}
}

// Copy above the CopyObject limit goes through UploadPartCopy.
func TestMultipartCopy(t *testing.T) {
	s := newStore(t)
	s.copyLimit, s.copyPart = 6<<20, minPart
	const size = 12<<20 + 9
	src := put(t, s, "big", blobtest.Pattern(11, size))
	info, err := s.Copy(t.Context(), "big", "big-copy")
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size || info.SHA256 != src.SHA256 {
		t.Fatalf("Copy = %+v, want %+v", info, src)
	}
	h, err := s.c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.objectName("big-copy"))})
	if err != nil {
		t.Fatal(err)
	}
	if metaSum(h.Metadata) != src.SHA256 {
		t.Fatalf("copy metadata %v lacks the SHA-256", h.Metadata)
	}
	if !strings.Contains(aws.ToString(h.ETag), "-3") {
		t.Fatalf("copy ETag %s is not of a 3-part upload", aws.ToString(h.ETag))
	}
	r, err := s.Open(t.Context(), "big-copy")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	hs := blobtest.PatternSHA256(11, size)
	got := sha256Of(t, r)
	if got != hs {
		t.Fatalf("copied bytes hash %s, want %s", got, hs)
	}
}

// A multipart blob carries its SHA-256 as a tag; when the tag is lost
// (a crash between completing and tagging) Stat rehashes and re-tags.
func TestSHA256TagFallback(t *testing.T) {
	s := newStore(t)
	const size = 9 << 20
	put(t, s, "tagged", blobtest.Pattern(12, size))
	want := blobtest.PatternSHA256(12, size)
	object := s.objectName("tagged")
	if sum, err := s.tagSum(t.Context(), object); err != nil || sum != want {
		t.Fatalf("tag = %q, %v; want %s", sum, err, want)
	}
	if _, err := s.c.DeleteObjectTagging(t.Context(), &s3.DeleteObjectTaggingInput{Bucket: &s.bucket, Key: &object}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(t.Context(), "tagged")
	if err != nil || info.SHA256 != want {
		t.Fatalf("Stat after losing the tag = %+v, %v", info, err)
	}
	if sum, err := s.tagSum(context.Background(), object); err != nil || sum != want {
		t.Fatalf("Stat did not re-tag: %q, %v", sum, err)
	}
}
