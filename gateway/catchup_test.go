package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model/dbtest"
)

// A token minted, or a grant made, on one instance works on another at
// once, even before that instance's watcher has heard of the change: a
// denial first checks whether the shared policy moved on. Instance B here
// runs no watcher at all, so only that check can let the requests in.
func TestGrantOnOneInstanceWorksOnAnotherAtOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		a := newAPIEnv(t, db)
		b := newTestServer(t, db, a.blobDir, gateway.Config{}, nil)
		if err := b.srv.MountAPI(gateway.APIConfig{}); err != nil {
			t.Fatal(err)
		}
		b.srv.Handle(gateway.DAVPrefix+"/", b.srv.DAVHandler())
		tsB := httptest.NewServer(b.srv.Handler())
		t.Cleanup(tsB.Close)
		onB := func(au auth, path string) (int, string) {
			req, _ := http.NewRequest(http.MethodGet, tsB.URL+path, nil)
			au(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var sb strings.Builder
			buf := make([]byte, 512)
			n, _ := resp.Body.Read(buf)
			sb.Write(buf[:n])
			return resp.StatusCode, sb.String()
		}

		m, full := a.upload(as("admin"), "scan.txt", "alice's scan", "folder", "/")
		if got, _ := onB(as("bob"), "/api/v1/files/"+m.ID+"/content"); got != http.StatusNotFound && got != http.StatusForbidden {
			t.Fatalf("bob before any grant: %d", got)
		}
		_, tok := a.mintToken(bearer(full), m.ID, "read")
		if got, body := onB(bearer(tok), "/api/v1/files/"+m.ID+"/content"); got != 200 || body != "alice's scan" {
			t.Fatalf("token minted on A, used on B: %d %q", got, body)
		}
		r := a.doJSON(bearer(full), http.MethodPost, "/api/v1/files/"+m.ID+"/grants", map[string]any{"user": "bob", "level": "read"})
		if r.status >= 300 {
			t.Fatalf("grant: %v", r)
		}
		if got, body := onB(as("bob"), "/dav/scan.txt"); got != 200 || body != "alice's scan" {
			t.Fatalf("grant made on A, WebDAV GET on B: %d %q", got, body)
		}
		// Someone who was never granted anything stays out.
		if got, _ := onB(as("dave"), "/api/v1/files/"+m.ID+"/content"); got == 200 {
			t.Fatal("dave got in")
		}
	})
}
