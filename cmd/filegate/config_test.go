package main

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/filegate/filegate/model/blob/localblob"
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
