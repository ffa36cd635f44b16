package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/filegate/filegate/model/dbtest"
)

// `filegate check` reads back every file, names each one whose bytes no
// longer match what was recorded, and exits non-zero when it found any;
// --quick compares sizes only, --json prints one object per problem and a
// summary. Store tests (model) cover S3 and every kind of damage.
func TestCheckCommand(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			data := t.TempDir()
			t.Setenv("FILEGATE_DATA", data)
			t.Setenv("FILEGATE_DATABASE_URL", dbURL(t, kind))
			check := func(args ...string) (string, error) {
				t.Helper()
				var out, errb bytes.Buffer
				err := run(ctx, append([]string{"check"}, args...), strings.NewReader(""), &out, &errb)
				return out.String(), err
			}
			if err := run(ctx, []string{"user", "add", "alice", "--password-stdin"}, strings.NewReader("alice-password\n"), io.Discard, io.Discard); err != nil {
				t.Fatal(err)
			}
			putAs(t, data, "alice", "a.bin", 3000)
			putAs(t, data, "alice", "b.bin", 5000)

			out, err := check()
			if err != nil || !strings.Contains(out, "checked 2 files, read 7.8 KiB") || !strings.HasSuffix(out, ": 0 damaged or missing\n") {
				t.Fatalf("healthy: %q, %v", out, err)
			}

			// Flip one byte of b.bin's blob on disk.
			var blobFile string
			filepath.WalkDir(filepath.Join(data, "blobs", "objects"), func(p string, d fs.DirEntry, err error) error {
				if info, ierr := d.Info(); ierr == nil && !d.IsDir() && info.Size() == 5000 {
					blobFile = p
				}
				return err
			})
			b, err := os.ReadFile(blobFile)
			if err != nil {
				t.Fatal(err)
			}
			b[4321] ^= 0x20
			if err := os.WriteFile(blobFile, b, 0o600); err != nil {
				t.Fatal(err)
			}
			recorded := sha256.Sum256([]byte(strings.Repeat("x", 5000)))
			stored := sha256.Sum256(b)
			out, err = check("--workers", "1")
			want := "/b.bin: ALTERED, recorded SHA-256 " + hex.EncodeToString(recorded[:]) + ", stored bytes hash to " + hex.EncodeToString(stored[:])
			if !errors.Is(err, errDamaged(1)) || !strings.HasPrefix(out, want) || !strings.Contains(out, ": 1 damaged or missing") {
				t.Fatalf("damaged: %q, %v\nwant it to start with %q", out, err, want)
			}

			out, err = check("--json", "--max-rate", "100MB")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			var p checkProblemJSON
			var sum struct{ Summary checkSummaryJSON }
			if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &p) != nil || json.Unmarshal([]byte(lines[1]), &sum) != nil ||
				p.Kind != "sha256" || p.Path != "/b.bin" || p.Stored != hex.EncodeToString(stored[:]) ||
				sum.Summary.Files != 2 || sum.Summary.Problems != 1 || sum.Summary.Bytes != 8000 || !sum.Summary.Complete || err == nil {
				t.Fatalf("json: %q, %v", out, err)
			}

			// Same size: the quick check cannot see it.
			if out, err := check("--quick"); err != nil || !strings.Contains(out, "checked 2 files (sizes only): 0 damaged") {
				t.Fatalf("quick: %q, %v", out, err)
			}
			if err := os.Truncate(blobFile, 10); err != nil {
				t.Fatal(err)
			}
			if out, err := check("--quick"); !errors.Is(err, errDamaged(1)) || !strings.Contains(out, "/b.bin: SIZE, recorded 5000 bytes, stored 10 ") {
				t.Fatalf("quick after truncation: %q, %v", out, err)
			}

			for args, wantErr := range map[string]string{
				"--max-rate lots": "not a size",
				"extra":           "takes no arguments",
				"--under /nope":   "not found",
				"--workers -2":    "cannot be negative",
			} {
				if _, err := check(strings.Fields(args)...); err == nil || !strings.Contains(err.Error(), wantErr) {
					t.Errorf("check %s: %v, want an error saying %q", args, err, wantErr)
				}
			}
		})
	}
}
