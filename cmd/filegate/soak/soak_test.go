package soak

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/blob/s3blob"
	"github.com/filegate/filegate/model/blob/s3test"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

// maxRSSKiB bounds the peak resident set of each serve process.
const maxRSSKiB = 384 << 10

// TestSoak is the soak of issue #8: sixteen clients with their own users
// mix WebDAV (PUT, GET, PROPFIND, MOVE, DELETE), tus (resumable uploads in
// 256 KiB PATCHes) and the files API (upload, download with the user's
// credentials or a file token, metadata, signed links), plus an admin on
// the admin page's session, against two serve processes on one
// PostgreSQL database and one blob folder, while one of them is
// SIGKILLed and restarted on a schedule. Clients retry what a kill
// dropped on the other instance. Afterwards: no SHA-256 mismatch, no
// blob without a row nor a row without a blob, one audit row per audited
// request, bounded memory, and no secret in any log line or audit row.
func TestSoak(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "blobs")
	runSoak(t, planFor(), backend{name: "local blob folder", label: "soak", blobURL: dir, dir: dir,
		open: func(context.Context) (blob.Store, error) { return localblob.New(dir) }})
}

// TestSoakS3 is TestSoak with the blobs in an S3 bucket (versitygw):
// shorter, since the bucket adds a process to the machine's load.
func TestSoakS3(t *testing.T) {
	srv := s3test.Shared(t)
	url := srv.URL(srv.NewBucket(t), "soak")
	s3test.SetEnv(t)
	p := planFor()
	p.duration, p.killEach = p.duration/2, p.killEach/2
	runSoak(t, p, backend{name: "S3 bucket", label: "soak-s3", blobURL: url, env: s3test.Env(),
		secrets: []string{s3test.SecretKey},
		open: func(ctx context.Context) (blob.Store, error) {
			cfg, err := s3blob.ParseURL(url)
			if err != nil {
				return nil, err
			}
			cfg.PartialKey = tus.BlobKey // as serve opens it
			return s3blob.New(ctx, cfg)
		}})
}

// backend is where the soak's instances keep their blobs.
type backend struct {
	name, label string
	blobURL     string
	env         []string
	// secrets are the backend's credentials, for the secret scan.
	secrets []string
	// dir is the local blob folder, "" for S3: its writer leftovers and
	// partial uploads are counted too.
	dir  string
	open func(ctx context.Context) (blob.Store, error)
}

func runSoak(t *testing.T, p plan, be backend) {
	ctx := context.Background()
	sec := &secrets{}
	sec.add("blob store credential", be.secrets...)
	cl := &cluster{dbURL: dbtest.URL(t, dbtest.Postgres), blobURL: be.blobURL, env: be.env}
	adminPassword, accts := setup(t, ctx, cl.dbURL, p.clients, sec)
	cl.start(t, adminPassword)
	h := &harness{t: t, cl: cl, http: newHTTPClient(), sec: sec}

	var clients []*client
	for i, a := range accts {
		c := &client{h: h, id: i, acct: a, subject: "user:" + a.name, files: map[string]*file{},
			rnd: rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano()))), prefer: i % 2}
		if i%2 == 0 {
			c.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(a.name+":"+a.password))
		} else {
			c.auth = "Bearer " + a.apiKey
		}
		sec.addAuthorization(c.auth)
		clients = append(clients, c)
	}
	admin := &client{h: h, id: 99, subject: "user:admin", files: map[string]*file{},
		rnd: rand.New(rand.NewPCG(99, uint64(time.Now().UnixNano())))}

	start := time.Now()
	run, stop := context.WithTimeout(ctx, p.duration)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { cl.chaos(run, t, p) })
	failures := make([]int, len(clients))
	for i, c := range clients {
		wg.Go(func() {
			for run.Err() == nil && failures[i] < 10 {
				if err := c.step(); err != nil {
					failures[i]++
					t.Errorf("client %d: %v", c.id, err)
				}
			}
		})
	}
	wg.Go(func() {
		for run.Err() == nil {
			if err := admin.adminRound(adminPassword); err != nil {
				t.Errorf("admin: %v", err)
				return
			}
			select {
			case <-run.Done():
			case <-time.After(3 * time.Second):
			}
		}
	})
	wg.Wait()
	elapsed := time.Since(start)

	files := finalState(t, clients)
	cl.sampleRSS()
	for i, in := range cl.inst {
		if err := in.Stop(20 * time.Second); err != nil {
			t.Errorf("instance %d did not stop cleanly: %v", i, err)
		}
	}

	if dir := os.Getenv("FILEGATE_SOAK_LOGDIR"); dir != "" {
		for i, in := range cl.inst {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%c.log", be.label, 'A'+i)), []byte(in.Logs()), 0o600)
		}
	}
	db := openDB(t, ctx, cl.dbURL)
	store, err := be.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	blobs := checkBlobs(t, ctx, db, store, be.dir)
	sc := newScanner(sec)
	logLines := 0
	for i, in := range cl.inst {
		logLines += sc.scanLog("instance "+string(rune('A'+i)), in.Logs())
	}
	h.mu.Lock()
	attempts := h.attempts
	h.mu.Unlock()
	audit := checkAudit(t, ctx, db, attempts, sc.scan)

	n := &h.n
	t.Logf("RELIABILITY %s: %v with %d clients on 2 instances (PostgreSQL, %s); %d kills (SIGKILL, restart after %v); "+
		"restarts took %v", be.label, elapsed.Round(time.Second), len(clients), be.name, cl.kills.Load(), p.down, cl.restartTimes)
	t.Logf("RELIABILITY %s requests: %d logical operations, %d requests sent, %d answered, %d dropped by kills, %d retries, "+
		"%d answers 503, %d answers 423 (tus lock of a dead holder), %d other 5xx; %d tus uploads resumed after a drop, "+
		"%d of them complete by HEAD but never published; %d 403s to a file token minted moments before on the other instance; %d 401s to valid credentials; %d 499s to requests the client did not cancel; %d tus PATCHes interrupted with no other request on the upload; "+
		"%.1f MiB up, %.1f MiB down",
		be.label, n.ops.Load(), n.requests.Load(), n.answered.Load(), n.connErrors.Load(), n.retries.Load(), n.unavail.Load(),
		n.locked.Load(), n.status5xx.Load(), n.tusResumed.Load(), n.tusStuck.Load(), n.stale403.Load(), n.spurious401.Load(), n.spurious499.Load(), n.interrupted.Load(), float64(n.bytesUp.Load())/(1<<20), float64(n.bytesDown.Load())/(1<<20))
	t.Logf("RELIABILITY %s bytes: %d files checked at the end, %d sha256 mismatches; %d rows with content, %d blobs; "+
		"rows without blob %d, blobs whose sha256 differs from the row %d, files the integrity check found damaged reading every byte %d",
		be.label, files, n.mismatches.Load(), blobs.rows, blobs.blobs, blobs.rowsNoBlob, blobs.blobSumDiffers, blobs.damaged)
	t.Logf("RELIABILITY %s orphans: before the sweep %d committed blobs without a row and %s uncommitted writer files (left by kills); "+
		"SweepOrphans removed %d; after it %d blobs without a row; %s partial uploads of %d unfinished tus sessions (%d without a session row)",
		be.label, blobs.orphansBefore, na(blobs.tmpLeftovers), blobs.swept, blobs.orphansAfter, na(blobs.partials), blobs.openSessions, blobs.partialNoRow)
	t.Logf("RELIABILITY %s audit: %d rows; %d successful requests of audited kinds left %d rows: %.3f rows per request, "+
		"%.3f rows per authorization decision; %d requests with fewer or more rows than decisions; "+
		"%d rows disagreeing with their request; requests dropped by kills, by rows they left: %v; "+
		"%d rows from requests no client sent; chain verifies: %v",
		be.label, audit.rows, audit.ok2xx, audit.rows2xx, audit.perRequest(), audit.perDecision(), audit.unaudited,
		audit.wrongRows, audit.dropped, audit.foreignIDs, audit.chainOK)
	for _, k := range audit.oddKinds() {
		t.Logf("RELIABILITY %s audit: not one row per request: %s", be.label, k)
	}
	t.Logf("RELIABILITY %s memory: peak RSS (VmHWM) %.1f MiB over all instance processes (limit %d MiB); "+
		"RSS of A/B every 30 s, MiB: %s", be.label, float64(cl.peakRSS.Load())/1024, maxRSSKiB>>10, strings.Join(cl.rssTrace, " "))
	t.Logf("RELIABILITY %s secret scan: %d secrets (passwords, API keys, file tokens, link signatures, Authorization values, "+
		"session cookies, CSRF tokens) and %d patterns over %d log lines and %d audit rows: %d hits",
		be.label, len(sc.what), len(sc.patterns), logLines, audit.rows, len(sc.hits))

	for _, line := range h.failureLogs() {
		t.Logf("log of a failed request: %s", line)
	}
	if m := n.mismatches.Load(); m > 0 {
		t.Errorf("%d sha256 mismatches", m)
	}
	if blobs.rowsNoBlob > 0 || blobs.blobSumDiffers > 0 {
		t.Errorf("bytes lost: %d rows without blob, %d blobs with the wrong sha256", blobs.rowsNoBlob, blobs.blobSumDiffers)
	}
	if blobs.orphansAfter > 0 {
		t.Errorf("%d blobs without a row after the sweep", blobs.orphansAfter)
	}
	if blobs.partialNoRow > 0 {
		t.Errorf("%d partial uploads without a session row", blobs.partialNoRow)
	}
	if n.status5xx.Load() > 0 {
		t.Errorf("%d answers 5xx other than 503", n.status5xx.Load())
	}
	if cl.kills.Load() == 0 {
		t.Errorf("no instance was killed")
	}
	if peak := cl.peakRSS.Load(); peak == 0 || peak > maxRSSKiB {
		t.Errorf("peak RSS %d KiB, want (0, %d]", peak, maxRSSKiB)
	}
	for _, hit := range sc.hits {
		t.Errorf("secret scan: %s", hit)
	}
	if !strings.Contains(cl.inst[0].Logs(), "serving on") {
		t.Errorf("instance A's log is empty: the scan saw nothing")
	}
}

// na prints a count, or n/a for -1 (not counted on this backend).
func na(n int) string {
	if n < 0 {
		return "n/a"
	}
	return fmt.Sprint(n)
}
