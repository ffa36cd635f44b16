package main

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/model/dbtest"
)

// The backup of a running SQLite server, taken by the real binary, is a
// data folder another server serves as it is, with the same bytes; a
// second backup to the same folder copies only what changed; and
// `filegate check` finds the backup whole. On PostgreSQL the command
// refuses and names pg_dump.
func TestBackupOfARunningServer(t *testing.T) {
	bin := proctest.Binary(t)
	live := proctest.Start(t, proctest.Options{})
	dav := func(base, method, path string, body []byte) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+"/dav"+path, bytes.NewReader(body))
		if body == nil {
			req.Body = nil
		}
		req.SetBasicAuth("admin", adminPass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	cli := func(args ...string) (string, error) {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		return string(out), err
	}
	scan := randomBytes(5<<20+3, 9)
	for path, body := range map[string][]byte{"/ward/scan.dcm": scan, "/ward/report.pdf": []byte("%PDF report")} {
		if s, _ := dav(live.URL, "MKCOL", "/ward", nil); s != 201 && s != 405 {
			t.Fatalf("MKCOL: %d", s)
		}
		if s, b := dav(live.URL, "PUT", path, body); s != 201 {
			t.Fatalf("PUT %s: %d %s", path, s, b)
		}
	}
	dir := filepath.Join(t.TempDir(), "backup")
	out, err := cli("backup", dir, "--data", live.Opts.Data)
	if err != nil || !strings.Contains(out, "backed up 2 files") || !strings.Contains(out, "copied 2 blobs") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if s, _ := dav(live.URL, "PUT", "/ward/report.pdf", []byte("%PDF amended")); s != 204 {
		t.Fatalf("amend: %d", s)
	}
	out, err = cli("backup", dir, "--data", live.Opts.Data)
	if err != nil || !strings.Contains(out, "copied 1 blobs") || !strings.Contains(out, "1 were there already, removed 1") {
		t.Fatalf("second backup: %v\n%s", err, out)
	}
	if out, err := cli("check", "--data", dir); err != nil || !strings.Contains(out, "checked 2 files") {
		t.Fatalf("check of the backup: %v\n%s", err, out)
	}

	restored := proctest.Start(t, proctest.Options{Data: dir})
	if s, b := dav(restored.URL, "GET", "/ward/scan.dcm", nil); s != 200 || !bytes.Equal(b, scan) {
		t.Fatalf("scan.dcm from the restored server: %d, %d bytes", s, len(b))
	}
	if s, b := dav(restored.URL, "GET", "/ward/report.pdf", nil); s != 200 || string(b) != "%PDF amended" {
		t.Fatalf("report.pdf from the restored server: %d %q", s, b)
	}

	pg := dbtest.URL(t, dbtest.Postgres)
	if out, err := cli("backup", t.TempDir(), "--database-url", pg); err == nil || !strings.Contains(out, "pg_dump") {
		t.Fatalf("backup of PostgreSQL: %v\n%s", err, out)
	}
}
