package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/dbtest"
)

// TestLocalBlobURLOptions checks how a file:// blob URL's options open the
// local store: O_DIRECT stays off unless asked for, and an unknown or
// malformed option refuses to start rather than being ignored.
func TestLocalBlobURLOptions(t *testing.T) {
	dir := t.TempDir()
	probe, err := localblob.Open(filepath.Join(dir, "probe"), localblob.Options{DirectIO: true})
	if err != nil {
		t.Fatal(err)
	}
	allowed := probe.DirectIO() // what this filesystem permits
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		query   string
		direct  bool
		wantErr bool
	}{
		{query: "", direct: false},
		{query: "?direct_io=false", direct: false},
		{query: "?direct_io=true", direct: allowed},
		{query: "?direct_io=1", direct: allowed},
		{query: "?direct_io=maybe", wantErr: true},
		{query: "?directio=true", wantErr: true},
		{query: "?direct_io=%zz", wantErr: true},
	}
	for i, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			root := filepath.Join(dir, "store", string(rune('a'+i)))
			s, err := openLocalBlobs(root+c.query, log)
			if c.wantErr {
				if err == nil {
					t.Fatalf("opened %q; want an error", c.query)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ls := s.(*localblob.Store)
			if ls.Root() != root {
				t.Errorf("root %q, want %q (the options must not be part of the path)", ls.Root(), root)
			}
			if ls.DirectIO() != c.direct {
				t.Errorf("DirectIO() = %v, want %v", ls.DirectIO(), c.direct)
			}
		})
	}
}

// TestPoolTooSmallToMigrate checks that a PostgreSQL pool too small to
// migrate is refused with a reason at once, and that the smallest allowed
// one migrates: with one connection, startup used to wait forever.
func TestPoolTooSmallToMigrate(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	url := dbtest.URL(t, dbtest.Postgres)
	for _, c := range []struct {
		conns   int
		wantErr bool
	}{{0, true}, {1, true}, {minDBConns, false}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		sf := &storeFlags{databaseURL: url, data: t.TempDir(), dbMaxConns: c.conns}
		o, err := sf.open(ctx, log)
		cancel()
		if c.wantErr {
			if err == nil || !strings.Contains(err.Error(), "--db-max-conns") {
				t.Errorf("--db-max-conns %d: err %v, want one naming the flag", c.conns, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("--db-max-conns %d: %v", c.conns, err)
		}
		o.Close()
	}
}
