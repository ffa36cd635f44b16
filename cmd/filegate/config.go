package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/uptrace/bun"

	filegate "github.com/filegate/filegate"
	"github.com/filegate/filegate/migrations"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/blob/s3blob"
	"github.com/filegate/filegate/policy"
	"github.com/filegate/filegate/tus"
)

// storeFlags are the flags every command that opens the store shares.
type storeFlags struct {
	data        string
	databaseURL string
	blobURL     string
	dbMaxConns  int
}

// newFlagSet makes a flag set whose flags default to FILEGATE_* variables:
// --database-url reads FILEGATE_DATABASE_URL.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func envName(flagName string) string {
	return "FILEGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func envString(name, def string) string {
	if v, ok := os.LookupEnv(envName(name)); ok {
		return v
	}
	return def
}

func (sf *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&sf.data, "data", envString("data", "./data"), "data folder (SQLite database, blobs) [FILEGATE_DATA]")
	fs.StringVar(&sf.databaseURL, "database-url", envString("database-url", ""),
		"postgres://… or sqlite:///path.db; default SQLite in the data folder [FILEGATE_DATABASE_URL]")
	fs.StringVar(&sf.blobURL, "blob-url", envString("blob-url", ""),
		"blob store: file:///path (add ?direct_io=true to write large blobs with O_DIRECT), a folder path, or s3://bucket/prefix?endpoint=…&region=…&path_style=true (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; sse=AES256 or sse=aws:kms&sse_kms_key_id=… for server-side encryption); default <data>/blobs [FILEGATE_BLOB_URL]")
	fs.IntVar(&sf.dbMaxConns, "db-max-conns", int(envInt64("db-max-conns", int64(model.DefaultMaxConns()))),
		"most PostgreSQL connections this process opens, at least 2 (one more listens for policy changes); instances × (this + 1) must stay below the server's max_connections [FILEGATE_DB_MAX_CONNS]")
}

// minDBConns is the smallest PostgreSQL pool filegate runs on.
const minDBConns = 2

// opened is everything a command may need, opened from the store flags.
type opened struct {
	db    *bun.DB
	repo  *model.Repo
	store *model.Store
	authz *policy.Authorizer
}

func (o *opened) Close() {
	if o.db != nil {
		o.db.Close()
	}
}

// open connects to the database, applies migrations, and opens the blob
// store and the authorizer.
func (sf *storeFlags) open(ctx context.Context, log *slog.Logger) (*opened, error) {
	if sf.dbMaxConns < minDBConns {
		// With one connection, migrating would wait forever for a
		// second while the first holds the migration lock.
		return nil, fmt.Errorf("--db-max-conns %d: at least %d are needed, as migrations hold one connection for their lock and work on another", sf.dbMaxConns, minDBConns)
	}
	db, err := model.OpenDB(ctx, model.DBOptions{URL: sf.databaseURL, DataDir: sf.data, MaxConns: sf.dbMaxConns})
	if err != nil {
		return nil, err
	}
	o := &opened{db: db}
	applied, err := migrations.Up(ctx, db)
	if err != nil {
		o.Close()
		return nil, err
	}
	if len(applied) > 0 {
		log.Info("applied migrations", "migrations", applied)
	}
	blobs, err := sf.openBlobs(ctx, log)
	if err != nil {
		o.Close()
		return nil, err
	}
	o.repo = model.NewRepo(db)
	o.store = model.NewStore(o.repo, blobs, log)
	o.authz, err = policy.New(ctx, db, filegate.CasbinModel, policy.Options{Logger: log})
	if err != nil {
		o.Close()
		return nil, fmt.Errorf("authorizer: %w", err)
	}
	return o, nil
}

func (sf *storeFlags) openBlobs(ctx context.Context, log *slog.Logger) (blob.Store, error) {
	u := sf.blobURL
	switch {
	case u == "":
		return localblob.New(filepath.Join(sf.data, "blobs"))
	case strings.HasPrefix(u, "file://"):
		return openLocalBlobs(strings.TrimPrefix(u, "file://"), log)
	case strings.HasPrefix(u, "s3://"):
		cfg, err := s3blob.ParseURL(u)
		if err != nil {
			return nil, err
		}
		// Uploads are assembled where tus will publish them, saving a
		// server-side copy of every finished upload.
		cfg.PartialKey = tus.BlobKey
		return s3blob.New(ctx, cfg)
	case strings.Contains(u, "://"):
		return nil, fmt.Errorf("unsupported blob URL scheme in %q", u)
	}
	return localblob.New(u)
}

// openLocalBlobs opens a local blob folder from the part of a file:// URL
// after the scheme: a path, then optionally ?direct_io=true|false. An
// unknown or malformed option is an error, so a typo is not silently
// ignored.
func openLocalBlobs(rest string, log *slog.Logger) (blob.Store, error) {
	path, query, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("blob URL options %q: %w", query, err)
	}
	var o localblob.Options
	for k, v := range q {
		switch k {
		case "direct_io":
			if o.DirectIO, err = strconv.ParseBool(v[len(v)-1]); err != nil {
				return nil, fmt.Errorf("blob URL option direct_io=%q: not true or false", v[len(v)-1])
			}
		default:
			return nil, fmt.Errorf("unknown blob URL option %q (known: direct_io)", k)
		}
	}
	s, err := localblob.Open(path, o)
	if err == nil && o.DirectIO && !s.DirectIO() {
		log.Warn("the blob folder's filesystem refuses O_DIRECT; large blobs are written through the page cache", "root", s.Root())
	}
	return s, err
}
