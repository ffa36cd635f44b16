//go:build !linux || arm

package localblob

import (
	"errors"
	"os"
)

// errNoXattr means the filesystem keeps no user extended attributes; off
// Linux we do not use them and recompute sums when asked.
var errNoXattr = errors.New("localblob: no user xattrs")

func setSum(path, sum string) error       { return errNoXattr }
func getSum(path string) (string, bool)   { return "", false }
func startWriteback(fd int, off, n int64) {}

// Off Linux large blobs are written through the cache: O_DIRECT's rules
// differ by system and are not tested here.
func setDirect(f *os.File, on bool) error { return errors.ErrUnsupported }
func directSupported(dir string) bool     { return false }

// fsyncCommitsRename is false: without knowing the filesystem, a rename
// is made durable by fsyncing its directory.
func fsyncCommitsRename(root string) bool { return false }
func lockFile(fd int) error               { return nil }
func sameFile(fd int, path string) bool   { return true }
func inode(fi os.FileInfo) uint64         { return 0 }

func renameNoReplace(oldpath, newpath string) error { return errNoRenameFlags }
