package main

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/model/blob/s3test"
)

// TestSignedLinkRedirect runs serve on S3 with --signed-link-redirect: a
// signed link's GET is a redirect to a pre-signed URL of the bucket,
// which serves the same bytes as a download (attachment, not HTML) with
// no credentials; HEAD and refused links are answered by filegate itself.
func TestSignedLinkRedirect(t *testing.T) {
	s3 := s3test.Shared(t)
	in := proctest.Start(t, proctest.Options{BlobURL: s3.URL(s3.NewBucket(t), "links"), Env: s3test.Env(),
		Args: []string{"--signed-link-redirect", "--log-level", "warn"}})
	c := newRR(t, "admin", adminPass, in.URL)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for _, f := range []struct {
		name, mimeType string
		body           []byte
	}{
		{"page.html", "text/html", []byte("<html><script>alert(document.cookie)</script></html>")},
		{"Befund Müller.bin", "application/octet-stream", randomBytes(9<<20+3, 5)}, // a multipart object
	} {
		t.Run(f.name, func(t *testing.T) {
			c.t = t
			q := url.Values{"name": {f.name}, "folder": {"/"}, "mimeType": {f.mimeType}}
			created := c.do("POST", "/api/v1/files?"+q.Encode(), map[string]string{"Content-Type": f.mimeType}, f.body)
			want(t, "create", created, 201)
			id := path.Base(created.header.Get("Location"))
			linked := c.do("POST", "/api/v1/files/"+id+"/links", map[string]string{"Content-Type": "application/json"},
				[]byte(`{"expiresIn": 600}`))
			want(t, "create link", linked, 201)
			var link struct{ URL string }
			if err := json.Unmarshal(linked.body, &link); err != nil || link.URL == "" {
				t.Fatalf("link answer %s: %v", linked.body, err)
			}

			resp, err := noFollow.Get(link.URL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, s3.Endpoint+"/") {
				t.Fatalf("GET link: %s, Location %q; want 302 to %s", resp.Status, loc, s3.Endpoint)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("redirect Cache-Control %q", resp.Header.Get("Cache-Control"))
			}

			got, err := http.Get(link.URL) // no credentials; follows the redirect
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(got.Body)
			got.Body.Close()
			if err != nil || got.StatusCode != 200 || sum(body) != sum(f.body) {
				t.Fatalf("GET link, following the redirect: %s, %d bytes (want %d): %v", got.Status, len(body), len(f.body), err)
			}
			if got.Request.URL.Host == strings.TrimPrefix(in.URL, "http://") {
				t.Fatal("the bytes came from filegate, not from the bucket")
			}
			disp, params, err := mime.ParseMediaType(got.Header.Get("Content-Disposition"))
			if err != nil || disp != "attachment" || params["filename"] != f.name {
				t.Fatalf("Content-Disposition %q: %v", got.Header.Get("Content-Disposition"), err)
			}
			if ct := got.Header.Get("Content-Type"); strings.Contains(ct, "html") {
				t.Fatalf("the bucket serves the link as %q", ct)
			}

			head, err := noFollow.Head(link.URL)
			if err != nil {
				t.Fatal(err)
			}
			head.Body.Close()
			if head.StatusCode != 200 || head.Header.Get("Location") != "" {
				t.Fatalf("HEAD link: %s, Location %q; want 200 from filegate", head.Status, head.Header.Get("Location"))
			}

			bad := strings.Replace(link.URL, "signature=", "signature=x", 1)
			refused, err := noFollow.Get(bad)
			if err != nil {
				t.Fatal(err)
			}
			refused.Body.Close()
			if refused.StatusCode != http.StatusForbidden || refused.Header.Get("Location") != "" {
				t.Fatalf("tampered link: %s, Location %q", refused.Status, refused.Header.Get("Location"))
			}
		})
	}
}
