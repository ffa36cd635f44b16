package tus_test

import (
	"bytes"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

// Consecutive requests on one upload may carry its row from one to the
// next (and remember its owner and length) instead of reading them
// again; what one request changed must be what the next one sees.
func TestConsecutiveRequestsSeeEachOthersChanges(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		body := data(3000, 21)
		resp := e.req("alice", "POST", e.url(), map[string]string{"Upload-Defer-Length": "1",
			"Upload-Metadata": meta("filename", "handoff")}, nil)
		wantStatus(t, "create", resp, 201)
		loc := resp.Header.Get("Location")
		wantStatus(t, "first", e.patch("alice", loc, 0, body[:1000], nil), 204)
		// Declares the length without finishing: the next PATCH must
		// know the length, or it would never finish the upload.
		wantStatus(t, "declare", e.patch("alice", loc, 1000, body[1000:2000],
			map[string]string{"Upload-Length": "3000"}), 204)
		wantStatus(t, "declared twice", e.patch("alice", loc, 2000, body[2000:2500],
			map[string]string{"Upload-Length": "3000"}), 400)
		if off := e.offset("alice", loc); off != 2000 {
			t.Fatalf("offset after a refused PATCH: %d", off)
		}
		wantStatus(t, "stranger", e.patch("bob", loc, 2000, body[2000:], nil), 404)
		wantStatus(t, "last", e.patch("alice", loc, 2000, body[2000:], nil), 204)
		if _, got := e.file("/handoff"); !bytes.Equal(got, body) {
			t.Fatal("content differs")
		}
		// Finished: a further PATCH changes nothing.
		wantStatus(t, "after the end", e.patch("alice", loc, 3000, nil, nil), 204)

		// A terminated upload is gone for the next request, however
		// recently its owner was seen.
		loc2 := e.create("alice", "/", "gone", 100)
		wantStatus(t, "part", e.patch("alice", loc2, 0, body[:40], nil), 204)
		wantStatus(t, "terminate", e.req("alice", "DELETE", loc2, nil, nil), 204)
		wantStatus(t, "after terminate", e.patch("alice", loc2, 40, body[40:100], nil), 404)
		e.absent("/gone")
	})
}

// A PATCH whose caller lost write access keeps none of its chunk, even
// though the decision now runs while the body arrives, and a refused
// last chunk does not finish the upload.
func TestRefusedLastChunkDoesNotFinish(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		body := data(2<<20, 22)
		loc := e.create("alice", "/", "refused", int64(len(body)))
		wantStatus(t, "first", e.patch("alice", loc, 0, body[:1<<20], nil), 204)
		e.authz.revoke("user:alice")
		wantStatus(t, "last after revoke", e.patch("alice", loc, 1<<20, body[1<<20:], nil), 403)
		e.absent("/refused")
		if got := e.offset("alice", loc); got != 1<<20 {
			t.Fatalf("offset %d after a refused chunk, want %d", got, 1<<20)
		}
	})
}
