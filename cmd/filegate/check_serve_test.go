package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/s3test"
)

// Two real instances on one PostgreSQL database and one S3 bucket run the
// scheduled integrity check in turns, never at once; after an object is
// altered behind filegate's back, a run names the file, through either
// instance's API and in the log.
func TestScheduledCheckAcrossInstances(t *testing.T) {
	cl := startCluster(t, 2, 2*time.Second, "--check-interval", "2s")
	c := newRR(t, "admin", adminPass, cl.bases()...)
	want(t, "MKCOL", c.do("MKCOL", "/dav/chk", nil, nil), 201)
	want(t, "PUT a", c.do("PUT", "/dav/chk/a.bin", nil, randomBytes(5000, 1)), 201)
	want(t, "PUT b", c.do("PUT", "/dav/chk/b.bin", nil, randomBytes(7777, 2)), 201)

	// Cut b.bin's object short, as a faulty store or a hand on the
	// bucket would (s3blob keeps a blob at <prefix>/objects/<key>).
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: cl.dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var key string
	if err := db.NewSelect().Table("nodes").Column("blob_key").Where("path = ?", "/chk/b.bin").Scan(ctx, &key); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cl.blobURL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s3test.Shared(t).Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(u.Host),
		Key: aws.String(strings.TrimPrefix(u.Path, "/") + "/objects/" + key), Body: bytes.NewReader([]byte("truncated!"))})
	if err != nil {
		t.Fatal(err)
	}

	type run struct {
		ID, State, Instance string
		Problems            int64
		StartedAt           time.Time  `json:"started_at"`
		FinishedAt          *time.Time `json:"finished_at"`
	}
	var runs []run
	var found *run
	deadline := time.Now().Add(60 * time.Second)
	for found == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no run found the damage within 60 s: %+v\n%s\n%s", runs, cl.nodes[0].Logs(), cl.nodes[1].Logs())
		}
		time.Sleep(500 * time.Millisecond)
		r := c.do("GET", "/api/v1/integrity-checks?limit=1000", nil, nil)
		want(t, "list runs", r, 200)
		var list struct{ Checks []run }
		if err := json.Unmarshal(r.body, &list); err != nil {
			t.Fatal(err)
		}
		runs = list.Checks
		for i := range runs {
			if runs[i].State == model.IntegrityDone && runs[i].Problems > 0 {
				hit := runs[i] // runs is sorted below
				found = &hit
				break
			}
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].StartedAt.Before(runs[j].StartedAt) })
	for i := 1; i < len(runs); i++ {
		if prev := runs[i-1]; prev.FinishedAt == nil || prev.FinishedAt.After(runs[i].StartedAt) {
			t.Fatalf("runs overlapped: %+v then %+v", prev, runs[i])
		}
	}
	r := c.do("GET", "/api/v1/integrity-checks/"+found.ID, nil, nil)
	want(t, "run detail", r, 200)
	var detail struct {
		DamagedFiles []struct{ Path, Kind, Recorded, Stored string } `json:"damaged_files"`
	}
	if err := json.Unmarshal(r.body, &detail); err != nil {
		t.Fatal(err)
	}
	if len(detail.DamagedFiles) != 1 || detail.DamagedFiles[0].Path != "/chk/b.bin" || detail.DamagedFiles[0].Kind != "size" ||
		detail.DamagedFiles[0].Recorded != "7777" || detail.DamagedFiles[0].Stored != "10" {
		t.Fatalf("run %s found %s", found.ID, r.body)
	}
	logs := cl.nodes[0].Logs() + cl.nodes[1].Logs()
	if !strings.Contains(logs, "do not match its record") || !strings.Contains(logs, "/chk/b.bin") {
		t.Fatalf("the damage is not in the logs:\n%s", logs)
	}
}

// With --verify-downloads, a WebDAV or API download of a file whose
// stored bytes were altered ends short, which the client sees as an
// error, and the server logs it; an intact file and a range of the
// altered one download as ever.
func TestVerifiedDownloadsAreCutShort(t *testing.T) {
	in := proctest.Start(t, proctest.Options{Args: []string{"--verify-downloads"}})
	get := func(path string, hdr ...string) (int, []byte, error) {
		t.Helper()
		req, _ := http.NewRequest("GET", in.URL+path, nil)
		req.SetBasicAuth("admin", adminPass)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	put := func(path string, body []byte) {
		t.Helper()
		req, _ := http.NewRequest("PUT", in.URL+path, bytes.NewReader(body))
		req.SetBasicAuth("admin", adminPass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("PUT %s: %d", path, resp.StatusCode)
		}
	}
	scan := randomBytes(6<<20+7, 3) // more than one 4 MiB write
	note := []byte("small clinical note")
	put("/dav/scan.dcm", scan)
	put("/dav/note.txt", note)
	put("/dav/intact.dcm", randomBytes(6<<20+7, 4))
	// Flip one byte of each of the first two blobs, keeping their sizes.
	for _, size := range []int{len(scan), len(note)} {
		var file string
		filepath.WalkDir(filepath.Join(in.Opts.Data, "blobs", "objects"), func(p string, d fs.DirEntry, err error) error {
			if info, ierr := d.Info(); ierr == nil && !d.IsDir() && info.Size() == int64(size) && file == "" {
				b, _ := os.ReadFile(p)
				if bytes.Equal(b, scan) || bytes.Equal(b, note) {
					file = p
				}
			}
			return err
		})
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x01
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		path string
		size int
	}{{"/dav/scan.dcm", len(scan)}, {"/dav/note.txt", len(note)}} {
		status, b, err := get(c.path)
		if status != 200 || err == nil || len(b) >= c.size {
			t.Fatalf("GET %s of altered bytes: %d, %d of %d bytes, read error %v; want the body cut short", c.path, status, len(b), c.size, err)
		}
	}
	if status, b, err := get("/dav/intact.dcm"); status != 200 || err != nil || len(b) != 6<<20+7 {
		t.Fatalf("intact file: %d, %d bytes, %v", status, len(b), err)
	}
	if status, b, err := get("/dav/scan.dcm", "Range", "bytes=0-99"); status != 206 || err != nil || !bytes.Equal(b, scan[:100]) {
		t.Fatalf("range of the altered file: %d, %d bytes, %v", status, len(b), err)
	}
	if logs := in.Logs(); !strings.Contains(logs, "do not match the file's record") || !strings.Contains(logs, "/scan.dcm") {
		t.Fatalf("the cut download is not logged:\n%s", logs)
	}
}
