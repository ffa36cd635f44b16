package main

import (
	"context"
	"fmt"
	"io"

	"github.com/filegate/filegate/model"
)

// backupCmd runs `filegate backup DIR`: a consistent copy of a SQLite
// store (the database and every file's bytes, verified as they are
// copied) into DIR, laid out as a data folder (see model.Store.Backup).
// It works beside a running server.
func backupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup", stderr)
	var sf storeFlags
	sf.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("usage: filegate backup DIR [--data DIR] [--database-url sqlite:///…] [--blob-url …]")
	}
	o, err := openForAdmin(ctx, &sf, stderr)
	if err != nil {
		return err
	}
	defer o.Close()
	rep, err := o.store.Backup(ctx, pos[0], model.BackupOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %d files to %s in %s: copied %d blobs (%s), %d were there already, removed %d no longer needed; %d database snapshot(s)\n",
		rep.Files, pos[0], rep.Elapsed.Round(1e6), rep.Copied, human(rep.Bytes), rep.Kept, rep.Removed, rep.Snapshots)
	fmt.Fprintf(stdout, "serve it with: filegate serve --data %s   (verify it with: filegate check --data %s)\n", pos[0], pos[0])
	return nil
}
