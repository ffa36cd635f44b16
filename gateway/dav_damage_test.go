package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model/blob/blobtest"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// A WebDAV GET of a file whose stored bytes are gone or shorter than
// recorded never looks like a whole download: on the local folder it is
// refused with a 500 before any byte goes out; on S3, which reads with
// one GET and no HEAD first, the answer ends short of its Content-Length
// and the client's read fails. A HEAD on S3 needs no request to the
// store and answers from the record.
func TestDAVNeverServesDamagedBytesAsWhole(t *testing.T) {
	stores := []struct {
		name   string
		env    func(t *testing.T) *davEnv
		onOpen bool // damage is found before the answer starts
		// missing is how many requests find gone.bin's blob missing: a
		// HEAD opens the local file too, and asks S3 nothing.
		missing int
	}{
		{"local", func(t *testing.T) *davEnv { return newDAVEnv(t, dbtest.Open(t, dbtest.SQLite), gateway.Config{}) }, true, 2},
		{"s3", func(t *testing.T) *davEnv { return newS3DAVEnv(t, dbtest.Open(t, dbtest.SQLite)) }, false, 1},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			env := st.env(t)
			env.user("reader", "reader-password")
			env.apply(policy.Grant(policy.User("reader"), policy.LevelRead, env.root.ID))
			content := strings.Repeat("ECG lead II ", 30000) // 360,000 bytes
			gone := env.file(env.root, "gone.bin", content)
			short := env.file(env.root, "short.bin", content)
			env.file(env.root, "whole.bin", content)
			ctx := context.Background()
			if err := env.store.Blobs.Delete(ctx, gone.BlobKey); err != nil {
				t.Fatal(err)
			}
			blobtest.Overwrite(t, env.store.Blobs, short.BlobKey, []byte(content[:len(content)-1000]))

			var lastBody string
			get := func(method, name string) (int, int64, int, error) {
				t.Helper()
				req, _ := http.NewRequest(method, env.url("/"+name), nil)
				req.SetBasicAuth("reader", "reader-password")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				lastBody = string(body)
				return resp.StatusCode, resp.ContentLength, len(body), err
			}
			for _, name := range []string{"gone.bin", "short.bin"} {
				code, length, n, err := get(http.MethodGet, name)
				switch {
				case st.onOpen && (code != http.StatusInternalServerError || !strings.Contains(lastBody, "damaged")):
					t.Errorf("GET %s: %d %q, want a 500 that says the bytes are damaged, before any byte", name, code, lastBody)
				case !st.onOpen && (code != http.StatusOK || err == nil || int64(n) >= length):
					t.Errorf("GET %s: %d, %d of %d bytes, read error %v; want a 200 that ends short", name, code, n, length, err)
				}
			}
			if code, length, _, _ := get(http.MethodHead, "gone.bin"); !st.onOpen && (code != http.StatusOK || length != int64(len(content))) {
				t.Errorf("HEAD gone.bin on S3: %d, length %d; want 200 with the recorded length", code, length)
			}
			if code, length, n, err := get(http.MethodGet, "whole.bin"); code != http.StatusOK || err != nil || n != len(content) || length != int64(n) {
				t.Errorf("GET whole.bin: %d, %d of %d bytes, %v", code, n, length, err)
			}
			// Each request that found damage counts once, for alerting.
			resp, err := http.Get(env.ts.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			scrape, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, want := range []string{fmt.Sprintf(`filegate_damaged_downloads_total{kind="missing"} %d`, st.missing), `filegate_damaged_downloads_total{kind="size"} 1`, `filegate_damaged_downloads_total{kind="sha256"} 0`} {
				if !strings.Contains(string(scrape), want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
		})
	}
}
