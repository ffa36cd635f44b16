package model_test

import (
	"context"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/migrations"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// TestHotLookupsAgreeWithBun checks the lookups every request makes, which
// run as prepared statements on PostgreSQL and as Bun queries on SQLite,
// against what Bun itself reads: the same user, the same errors, and file
// writes that find their folder and the file they replace.
func TestHotLookupsAgreeWithBun(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := model.NewRepo(db)
		made, err := r.CreateUser(ctx, "nurse.jo", "long enough password")
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.UserByName(ctx, "nurse.jo")
		if err != nil {
			t.Fatal(err)
		}
		var want model.User
		if err := db.NewSelect().Model(&want).Where("id = ?", made.ID).Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if *got != want {
			t.Fatalf("UserByName = %+v, Bun reads %+v", *got, want)
		}
		if _, err := r.UserByName(ctx, "nobody"); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("unknown user: %v, want ErrNotFound", err)
		}
		if !r.HotPrepared() {
			t.Fatalf("hot lookups not prepared on %s", db.Dialect().Name())
		}

		root, err := r.LiveByPath(ctx, "/")
		if err != nil {
			t.Fatal(err)
		}
		ward, err := r.CreateFolder(ctx, root, "ward", "")
		if err != nil {
			t.Fatal(err)
		}
		c := model.Content{BlobKey: "k1", Size: 1, SHA256: strings.Repeat("a", 64)}
		first, created, _, err := r.PutFile(ctx, ward, "chart.txt", c, model.FileMeta{}, made.ID, model.Cond{})
		if err != nil || !created {
			t.Fatalf("first write: created %v, %v", created, err)
		}
		c2 := model.Content{BlobKey: "k2", Size: 2, SHA256: strings.Repeat("b", 64)}
		second, created, old, err := r.PutFile(ctx, ward, "chart.txt", c2, model.FileMeta{}, made.ID, model.Cond{})
		if err != nil || created || old != "k1" || second.ID != first.ID {
			t.Fatalf("second write: created %v old %q same id %v, %v", created, old, second.ID == first.ID, err)
		}
		if _, _, _, err := r.PutFile(ctx, root, "ward", c, model.FileMeta{}, made.ID, model.Cond{}); !errors.Is(err, model.ErrConflict) {
			t.Fatalf("write over a folder: %v, want ErrConflict", err)
		}
		for _, p := range []string{"/", "/ward", "/ward/chart.txt"} {
			got, err := r.LiveByPath(ctx, p)
			if err != nil {
				t.Fatalf("LiveByPath(%q): %v", p, err)
			}
			var want model.Node
			if err := db.NewSelect().Model(&want).Where("path = ? AND archived_at IS NULL", p).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(utc(*got), utc(want)) {
				t.Fatalf("LiveByPath(%q) = %+v, Bun reads %+v", p, *got, want)
			}
		}
		if _, err := r.LiveByPath(ctx, "/ward/missing"); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("LiveByPath of a missing path: %v, want ErrNotFound", err)
		}
		if _, err := r.Archive(ctx, ward.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := r.PutFile(ctx, ward, "late.txt", c, model.FileMeta{}, made.ID, model.Cond{}); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("write into an archived folder: %v, want ErrNotFound", err)
		}
		if _, err := r.LiveByPath(ctx, "/ward/chart.txt"); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("LiveByPath below an archived folder: %v, want ErrNotFound", err)
		}
	})
}

// TestPreparedStatementsKeepOnePlan checks that on PostgreSQL the prepared
// lookups are planned once per connection rather than on each call, and
// that a database URL choosing the plan cache mode itself is obeyed.
func TestPreparedStatementsKeepOnePlan(t *testing.T) {
	ctx := context.Background()
	url := dbtest.URL(t, dbtest.Postgres)
	db, err := model.OpenDB(ctx, model.DBOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	// Statements are per connection; run the lookup on one.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PREPARE live(text[]) AS SELECT id FROM nodes WHERE path = ANY($1::text[]) AND archived_at IS NULL"); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		if _, err := conn.ExecContext(ctx, `EXECUTE live('{"/"}')`); err != nil {
			t.Fatal(err)
		}
	}
	var custom, generic int
	if err := conn.QueryRowContext(ctx, "SELECT custom_plans, generic_plans FROM pg_prepared_statements WHERE name = 'live'").Scan(&custom, &generic); err != nil {
		t.Fatal(err)
	}
	if custom != 0 || generic != 8 {
		t.Fatalf("8 runs of a prepared lookup made %d custom and %d generic plans, want 0 and 8", custom, generic)
	}

	own, err := model.OpenDB(ctx, model.DBOptions{URL: url + "&plan_cache_mode=force_custom_plan"})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	var mode string
	if err := own.QueryRowContext(ctx, "SHOW plan_cache_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "force_custom_plan" {
		t.Fatalf("plan_cache_mode = %q with the URL asking for force_custom_plan", mode)
	}
}

// TestPreparedInsertWritesWhatBunWrites checks on SQLite, which compares
// times as text, that a file inserted by the prepared statement stores its
// times, flags and tags exactly as a row Bun inserts them would: the same
// time format, integer booleans, JSON tags.
func TestPreparedInsertWritesWhatBunWrites(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, dbtest.SQLite)
	r := model.NewRepo(db)
	root, err := r.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	folder, err := r.CreateFolder(ctx, root, "ward", "") // Bun's insert
	if err != nil {
		t.Fatal(err)
	}
	mod := time.Date(2026, 3, 4, 5, 6, 7, 891011000, time.FixedZone("CET", 3600))
	c := model.Content{BlobKey: "k", Size: 9, SHA256: strings.Repeat("d", 64)}
	f, created, _, err := r.PutFile(ctx, folder, "x.dcm", c, model.FileMeta{PHI: true, Tags: []string{"ct"}, ModTime: mod}, "u1", model.Cond{})
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	type raw struct {
		Created, Mod, Tags, PHIType, DirType string
		PHI                                  int
	}
	read := func(id string) raw {
		t.Helper()
		var x raw
		// || '' reads the stored text, which the driver would otherwise
		// turn into a time.Time for a column declared as one.
		if err := db.QueryRowContext(ctx, `SELECT created_at || '', mod_time || '', tags, typeof(phi), typeof(is_dir), phi FROM nodes WHERE id = ?`, id).
			Scan(&x.Created, &x.Mod, &x.Tags, &x.PHIType, &x.DirType, &x.PHI); err != nil {
			t.Fatal(err)
		}
		return x
	}
	bunRow, prepared := read(folder.ID), read(f.ID)
	format := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00:00$`)
	for _, v := range []string{bunRow.Created, prepared.Created, prepared.Mod} {
		if !format.MatchString(v) {
			t.Errorf("stored time %q is not in Bun's format", v)
		}
	}
	if prepared.Mod != "2026-03-04 04:06:07.891011+00:00" {
		t.Errorf("mod_time stored as %q", prepared.Mod)
	}
	if prepared.PHIType != "integer" || prepared.DirType != "integer" || prepared.PHI != 1 || prepared.Tags != `["ct"]` {
		t.Errorf("stored flags and tags %+v, want integers and JSON as Bun writes them (%+v)", prepared, bunRow)
	}
}
