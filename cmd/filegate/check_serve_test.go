package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

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
