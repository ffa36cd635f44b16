package model_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/blobtest"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/blob/s3blob"
	"github.com/filegate/filegate/model/blob/s3test"
	"github.com/filegate/filegate/model/dbtest"
)

// eachStore runs fn over every database and every blob store (the local
// folder and S3 on versitygw), each pair with a fresh database.
func eachStore(t *testing.T, fn func(t *testing.T, s *model.Store)) {
	dbtest.Each(t, func(t *testing.T, first *bun.DB) {
		kind := dbtest.SQLite
		if model.IsPostgres(first) {
			kind = dbtest.Postgres
		}
		t.Run("local", func(t *testing.T) {
			db := first
			blobs, err := localblob.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			fn(t, model.NewStore(model.NewRepo(db), blobs, nil))
		})
		t.Run("s3", func(t *testing.T) {
			db := dbtest.Open(t, kind)
			srv := s3test.Shared(t)
			s3test.SetEnv(t)
			cfg, err := s3blob.ParseURL(srv.URL(srv.NewBucket(t), "fg"))
			if err != nil {
				t.Fatal(err)
			}
			blobs, err := s3blob.New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			fn(t, model.NewStore(model.NewRepo(db), blobs, nil))
		})
	})
}

// putFile writes body at a path whose folders put makes as needed.
func putFile(t *testing.T, s *model.Store, path string, body []byte) *model.Node {
	t.Helper()
	ctx := context.Background()
	parent, err := s.Repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for _, dir := range segs[:len(segs)-1] {
		next, err := s.Repo.LiveByPath(ctx, model.JoinPath(parent.Path, dir))
		if errors.Is(err, model.ErrNotFound) {
			next, err = s.Repo.CreateFolder(ctx, parent, dir, "u1")
		}
		if err != nil {
			t.Fatal(err)
		}
		parent = next
	}
	n, _, err := s.Put(ctx, model.PutRequest{Parent: parent, Name: segs[len(segs)-1], Body: bytes.NewReader(body), Actor: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// overwriteBlob puts other bytes under a file's blob key, the way a disk
// fault or a hand on the storage would.
func overwriteBlob(t *testing.T, s *model.Store, key string, body []byte) {
	t.Helper()
	blobtest.Overwrite(t, s.Blobs, key, body)
}

// check runs a Check and returns its report and problems sorted by path.
func check(t *testing.T, s *model.Store, o model.CheckOptions) (model.CheckReport, []model.CheckProblem) {
	t.Helper()
	var probs []model.CheckProblem
	rep, err := s.Check(context.Background(), o, func(p model.CheckProblem) { probs = append(probs, p) })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Problems != int64(len(probs)) {
		t.Fatalf("report counts %d problems, callback saw %d", rep.Problems, len(probs))
	}
	sort.Slice(probs, func(i, j int) bool { return probs[i].Path < probs[j].Path })
	return rep, probs
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// Check reads back every file's bytes, archived ones included, and names
// each one whose blob is missing, has another size, or hashes to another
// SHA-256 than recorded; quick mode finds the first two without reading;
// Under limits it to a subtree.
func TestCheckFindsDamagedFiles(t *testing.T) {
	eachStore(t, func(t *testing.T, s *model.Store) {
		ctx := context.Background()
		big := pattern(3<<20+17, 1) // several 1 MiB reads
		files := map[string][]byte{
			"/a/one.txt":             []byte("first file\n"),
			"/a/two.bin":             big,
			"/b/three.txt":           pattern(4096, 3),
			"/b/empty":               {},
			"/b/c/four.dcm":          pattern(70000, 4),
			"/old/gone.pdf":          pattern(1000, 5),
			"/a%_/five.json":         []byte(`{"x":1}`),
			"/Kardiologie-Ü/ecg.xml": []byte("<ecg/>"),
		}
		nodes := map[string]*model.Node{}
		var total int64
		for p, b := range files {
			nodes[p] = putFile(t, s, p, b)
			total += int64(len(b))
		}
		if _, err := s.Repo.Archive(ctx, nodes["/old/gone.pdf"].ID); err != nil {
			t.Fatal(err)
		}

		rep, probs := check(t, s, model.CheckOptions{})
		if rep.Files != int64(len(files)) || rep.Bytes != total || len(probs) != 0 || rep.Changed != 0 {
			t.Fatalf("healthy store: %+v, problems %+v; want %d files, %d bytes, none", rep, probs, len(files), total)
		}

		// Damage four files: one blob gone, one altered in place, one cut
		// short, and the archived one altered.
		if err := s.Blobs.Delete(ctx, nodes["/a/one.txt"].BlobKey); err != nil {
			t.Fatal(err)
		}
		altered := bytes.Clone(big)
		altered[2<<20] ^= 1
		overwriteBlob(t, s, nodes["/a/two.bin"].BlobKey, altered)
		overwriteBlob(t, s, nodes["/b/c/four.dcm"].BlobKey, pattern(69999, 4))
		overwriteBlob(t, s, nodes["/old/gone.pdf"].BlobKey, pattern(1000, 6))

		rep, probs = check(t, s, model.CheckOptions{Workers: 3})
		got := make([]string, len(probs))
		for i, p := range probs {
			got[i] = fmt.Sprintf("%s %s want=%s got=%s archived=%v key=%v", p.Path, p.Kind, p.Want, p.Got, p.Archived, p.BlobKey == nodes[p.Path].BlobKey)
		}
		want := []string{
			"/a/one.txt missing want= got= archived=false key=true",
			"/a/two.bin sha256 want=" + sha(big) + " got=" + sha(altered) + " archived=false key=true",
			"/b/c/four.dcm size want=70000 got=69999 archived=false key=true",
			"/old/gone.pdf sha256 want=" + sha(pattern(1000, 5)) + " got=" + sha(pattern(1000, 6)) + " archived=true key=true",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if rep.Files != int64(len(files)) || rep.Problems != 4 {
			t.Fatalf("report %+v", rep)
		}

		t.Run("quick mode sees what a Stat can", func(t *testing.T) {
			rep, probs := check(t, s, model.CheckOptions{Quick: true})
			var kinds []string
			for _, p := range probs {
				kinds = append(kinds, p.Path+" "+string(p.Kind))
			}
			if want := "/a/one.txt missing, /b/c/four.dcm size"; strings.Join(kinds, ", ") != want {
				t.Fatalf("quick problems %q, want %q", strings.Join(kinds, ", "), want)
			}
			if rep.Bytes != 0 || rep.Files != int64(len(files)) {
				t.Fatalf("quick report %+v: nothing should be read", rep)
			}
		})

		t.Run("under a folder", func(t *testing.T) {
			rep, probs := check(t, s, model.CheckOptions{Under: "/b/"})
			if len(probs) != 1 || probs[0].Path != "/b/c/four.dcm" || rep.Files != 3 {
				t.Fatalf("under /b: %+v, %+v", rep, probs)
			}
			// "/a" must not take in "/a%_": the prefix is a path, not a pattern.
			rep, _ = check(t, s, model.CheckOptions{Under: "/a"})
			if rep.Files != 2 {
				t.Fatalf("under /a: %d files, want 2", rep.Files)
			}
			// Characters, not bytes: a folder name past ASCII.
			if rep, _ = check(t, s, model.CheckOptions{Under: "/Kardiologie-Ü"}); rep.Files != 1 {
				t.Fatalf("under /Kardiologie-Ü: %d files, want 1", rep.Files)
			}
			for _, bad := range []string{"/nope", "/a/two.bin", "/a/../b"} {
				_, err := s.Check(ctx, model.CheckOptions{Under: bad}, nil)
				if !errors.Is(err, model.ErrNotFound) && !errors.Is(err, model.ErrInvalid) {
					t.Fatalf("under %s: %v, want ErrNotFound or ErrInvalid", bad, err)
				}
			}
		})

		t.Run("bad options", func(t *testing.T) {
			for _, o := range []model.CheckOptions{{Workers: -1}, {MaxRate: -5}} {
				if _, err := s.Check(ctx, o, nil); !errors.Is(err, model.ErrInvalid) {
					t.Fatalf("%+v: %v, want ErrInvalid", o, err)
				}
			}
		})
	})
}

// replacingStore is a real blob store whose Open of one key first lets a
// writer replace the file that key belongs to: the check then reads a
// blob the writer has just deleted.
type replacingStore struct {
	blob.Store
	key     string
	replace func()
}

func (r *replacingStore) Open(ctx context.Context, key string) (blob.Reader, error) {
	if key == r.key {
		r.replace()
	}
	return r.Store.Open(ctx, key)
}

// A file replaced while the check reads it is counted as changed, not
// reported as missing: its old blob was deleted for good reason.
func TestCheckSkipsFilesReplacedMeanwhile(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		blobs, err := localblob.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		s := model.NewStore(model.NewRepo(db), blobs, nil)
		n := putFile(t, s, "/f.txt", []byte("old"))
		putFile(t, s, "/g.txt", []byte("other"))
		rs := &replacingStore{Store: blobs, key: n.BlobKey}
		rs.replace = func() { putFile(t, s, "/f.txt", []byte("new content")) }
		checking := model.NewStore(s.Repo, rs, nil)
		rep, probs := check(t, checking, model.CheckOptions{Workers: 1})
		if len(probs) != 0 || rep.Changed != 1 || rep.Files != 1 {
			t.Fatalf("report %+v, problems %+v; want 1 changed, 1 checked, none", rep, probs)
		}
	})
}

// MaxRate holds the reads under the cap: 512 KiB at 1 MiB/s cannot be
// read in under half a second, however fast the disk.
func TestCheckKeepsUnderItsRate(t *testing.T) {
	blobs, err := localblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := model.NewStore(model.NewRepo(dbtest.Open(t, dbtest.SQLite)), blobs, nil)
	putFile(t, s, "/x.bin", pattern(256<<10, 1))
	putFile(t, s, "/y.bin", pattern(256<<10, 2))
	start := time.Now()
	rep, probs := check(t, s, model.CheckOptions{MaxRate: 1 << 20, Workers: 2})
	if el := time.Since(start); el < 480*time.Millisecond {
		t.Fatalf("read %d bytes in %v, faster than 1 MiB/s", rep.Bytes, el)
	}
	if rep.Bytes != 512<<10 || len(probs) != 0 {
		t.Fatalf("report %+v, problems %+v", rep, probs)
	}
}

// A cancelled check stops and says so.
func TestCheckStopsWithItsContext(t *testing.T) {
	blobs, err := localblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := model.NewStore(model.NewRepo(dbtest.Open(t, dbtest.SQLite)), blobs, nil)
	putFile(t, s, "/x.bin", pattern(1<<20, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Check(ctx, model.CheckOptions{}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled check: %v", err)
	}
}

// With VerifyReads, a whole-file read whose bytes no longer hash to the
// recorded SHA-256 fails with ErrCorrupt and never hands over its last
// bytes; intact files and ranges read as ever.
func TestVerifiedReadsWithholdDamagedEnds(t *testing.T) {
	s := localStore(t, dbtest.Open(t, dbtest.SQLite))
	s.VerifyReads = true
	ctx := context.Background()
	body := pattern(3<<20+100, 4)
	bad := putFile(t, s, "/bad.bin", body)
	good := putFile(t, s, "/good.bin", body)
	altered := bytes.Clone(body)
	altered[1<<20] ^= 1
	overwriteBlob(t, s, bad.BlobKey, altered)

	readAll := func(n *model.Node, seekFirst bool) ([]byte, error) {
		t.Helper()
		r, err := s.Open(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if seekFirst { // as http.ServeContent learns the size
			if _, err := r.Seek(0, io.SeekEnd); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
		}
		// 1 MiB reads, as a download's copy makes.
		return io.ReadAll(io.LimitReader(struct{ io.Reader }{r}, n.Size))
	}
	for _, seek := range []bool{false, true} {
		got, err := readAll(good, seek)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("intact file (seek %v): %d bytes, %v", seek, len(got), err)
		}
		got, err = readAll(bad, seek)
		if !errors.Is(err, model.ErrCorrupt) || int64(len(got)) >= bad.Size {
			t.Fatalf("damaged file (seek %v): %d of %d bytes, %v; want it cut short with ErrCorrupt", seek, len(got), bad.Size, err)
		}
	}
	if got := s.DownloadDamage(); got != (model.DownloadDamage{SHA256: 2}) {
		t.Errorf("DownloadDamage = %+v, want the two altered downloads", got)
	}
	// A range is not checked: it reads what is stored.
	r, err := s.Open(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Seek(1<<20, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, altered[1<<20:]) {
		t.Fatalf("range: %d bytes, %v", len(got), err)
	}
}

// A download of a file whose stored bytes are gone or of another length
// fails with ErrCorrupt, at the open on the local folder or at the first
// read on S3 (which opens without asking), and is logged; it never yields
// bytes as if they were the whole file. A file replaced after its row was
// read lost a race, not its bytes: ErrNotFound, and nothing logged. An
// intact file reads whole after them.
func TestDownloadsOfDamagedBlobsFail(t *testing.T) {
	eachStore(t, func(t *testing.T, s *model.Store) {
		var logged bytes.Buffer
		s = model.NewStore(s.Repo, s.Blobs, slog.New(slog.NewTextHandler(&logged, nil)))
		body := pattern(2<<20+33, 7)
		gone := putFile(t, s, "/gone.bin", body)
		short := putFile(t, s, "/short.bin", body)
		long := putFile(t, s, "/long.bin", body)
		stale := putFile(t, s, "/replaced.bin", body)
		whole := putFile(t, s, "/whole.bin", body)
		if err := s.Blobs.Delete(context.Background(), gone.BlobKey); err != nil {
			t.Fatal(err)
		}
		overwriteBlob(t, s, short.BlobKey, body[:len(body)-1])
		overwriteBlob(t, s, long.BlobKey, append(bytes.Clone(body), 'x'))
		putFile(t, s, "/replaced.bin", body[:100]) // deletes the blob stale names

		readAll := func(n *model.Node) error {
			r, err := s.Open(context.Background(), n)
			if err != nil {
				return err
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err == nil {
				t.Errorf("%s: read %d bytes without an error", n.Path, len(got))
			}
			return err
		}
		for _, n := range []*model.Node{gone, short, long} {
			if err := readAll(n); !errors.Is(err, model.ErrCorrupt) {
				t.Errorf("%s: %v, want ErrCorrupt", n.Path, err)
			}
			if !strings.Contains(logged.String(), n.Path) {
				t.Errorf("%s: nothing logged for it:\n%s", n.Path, logged.String())
			}
		}
		if err := readAll(stale); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("file replaced since its row was read: %v, want ErrNotFound", err)
		}
		if strings.Contains(logged.String(), "/replaced.bin") {
			t.Errorf("a replaced file was logged as damaged:\n%s", logged.String())
		}
		if got, want := s.DownloadDamage(), (model.DownloadDamage{Missing: 1, Size: 2}); got != want {
			t.Errorf("DownloadDamage = %+v, want %+v", got, want)
		}
		r, err := s.Open(context.Background(), whole)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("intact file: %d bytes, %v", len(got), err)
		}
	})
}
