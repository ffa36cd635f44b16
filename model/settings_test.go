package model_test

import (
	"context"
	"errors"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

func TestFileSettings(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		fs, err := repo.FileSettings(ctx)
		if err != nil || len(fs.DisableForceDownloadForMimeTypes) != 0 || !fs.UpdatedAt.IsZero() || fs.InlineAllowed("image/png") {
			t.Fatalf("defaults: %+v, %v", fs, err)
		}
		saved, err := repo.SetFileSettings(ctx, model.FileSettings{
			DisableForceDownloadForMimeTypes: []string{"Image/PNG", "image/png", "text/*; x=y"}, AllowPublicPHI: true})
		if err != nil || len(saved.DisableForceDownloadForMimeTypes) != 2 || saved.UpdatedAt.IsZero() {
			t.Fatalf("save: %+v, %v", saved, err)
		}
		got, err := repo.FileSettings(ctx)
		if err != nil || !got.AllowPublicPHI || !got.UpdatedAt.Equal(saved.UpdatedAt) {
			t.Fatalf("reload: %+v, %v", got, err)
		}
		for typ, want := range map[string]bool{"image/png": true, "IMAGE/PNG; q=1": true, "text/html": true,
			"image/svg+xml": false, "application/xml": false} {
			if got.InlineAllowed(typ) != want {
				t.Errorf("InlineAllowed(%q) = %v, want %v", typ, !want, want)
			}
		}
		if _, err := repo.SetFileSettings(ctx, model.FileSettings{DisableForceDownloadForMimeTypes: []string{"html"}}); !errors.Is(err, model.ErrInvalid) {
			t.Fatalf("bad type: err = %v", err)
		}
		all, err := repo.SetFileSettings(ctx, model.FileSettings{DisableForceDownloadForMimeTypes: []string{"*/*"}})
		if err != nil || !all.InlineAllowed("text/html") || all.AllowPublicPHI {
			t.Fatalf("*/*: %+v, %v", all, err)
		}
	})
}

func TestSigningKeys(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		k1, err := repo.CurrentSigningKey(ctx)
		if err != nil || len(k1.Bytes()) != 32 {
			t.Fatalf("first key: %+v, %v", k1, err)
		}
		again, err := repo.CurrentSigningKey(ctx)
		if err != nil || again.ID != k1.ID {
			t.Fatalf("current key changed: %+v, %v", again, err)
		}
		k2, err := repo.RotateSigningKey(ctx)
		if err != nil || k2.ID == k1.ID {
			t.Fatalf("rotate: %+v, %v", k2, err)
		}
		if _, err := repo.SigningKeyByID(ctx, k1.ID); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("retired key: err = %v", err)
		}
		if k, err := repo.SigningKeyByID(ctx, k2.ID); err != nil || string(k.Bytes()) != string(k2.Bytes()) {
			t.Fatalf("new key: %v", err)
		}
		if cur, err := repo.CurrentSigningKey(ctx); err != nil || cur.ID != k2.ID {
			t.Fatalf("current after rotation: %+v, %v", cur, err)
		}
	})
}
