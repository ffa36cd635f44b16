package gateway_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/uptrace/bun"

	filegate "github.com/filegate/filegate"
	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/policy"
)

// testServer is a gateway wired from real parts, as cmd/filegate wires
// it: a migrated database, a local blob folder and the Casbin authorizer.
// Each test mounts the doors it exercises.
type testServer struct {
	srv   *gateway.Server
	repo  *model.Repo
	store *model.Store
	authz *policy.Authorizer
}

// newTestServer builds a testServer on db with blobs in blobDir (a fresh
// t.TempDir() when empty). A nil log discards.
func newTestServer(t testing.TB, db *bun.DB, blobDir string, cfg gateway.Config, log *slog.Logger) testServer {
	t.Helper()
	if blobDir == "" {
		blobDir = t.TempDir()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	blobs, err := localblob.New(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	authz, err := policy.New(context.Background(), db, filegate.CasbinModel, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	repo := model.NewRepo(db)
	store := model.NewStore(repo, blobs, log)
	srv, err := gateway.New(cfg, gateway.Deps{Store: store, Authz: authz, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return testServer{srv: srv, repo: repo, store: store, authz: authz}
}
