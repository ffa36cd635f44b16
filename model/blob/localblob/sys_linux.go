//go:build linux && !arm

package localblob

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const xattrSum = "user.filegate.sha256"

// errNoXattr means the filesystem keeps no user extended attributes.
var errNoXattr = errors.New("localblob: no user xattrs")

// setSum records a blob's SHA-256 on its file.
func setSum(path, sum string) error {
	err := syscall.Setxattr(path, xattrSum, []byte(sum), 0)
	if errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) {
		return errNoXattr
	}
	return err
}

// getSum reads what setSum recorded.
func getSum(path string) (string, bool) {
	var buf [64]byte
	n, err := syscall.Getxattr(path, xattrSum, buf[:])
	if err != nil || n != len(buf) {
		return "", false
	}
	for _, c := range buf {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return string(buf[:]), true
}

// startWriteback asks the kernel to start writing a range of dirty pages
// without waiting for it (SYNC_FILE_RANGE_WRITE). It is a hint only: the
// commit's fsync is what makes the bytes durable.
func startWriteback(fd int, off, n int64) {
	const syncFileRangeWrite = 2
	_ = syscall.SyncFileRange(fd, off, n, syncFileRangeWrite)
}

// setDirect sets or clears O_DIRECT on f.
func setDirect(f *os.File, on bool) error {
	fd := f.Fd()
	fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(fd, unix.F_SETFL, fl)
	return err
}

// directSupported reports whether files in dir take aligned O_DIRECT
// writes: it writes one block to a scratch file and removes it. Some
// filesystems refuse the flag at open, some only at the first write.
func directSupported(dir string) bool {
	f, err := os.CreateTemp(dir, "direct-probe-*")
	if err != nil {
		return false
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if setDirect(f, true) != nil {
		return false
	}
	b := newDirectBuf()
	_, err = f.WriteAt((*b)[:directAlign], 0)
	return err == nil
}

// fsyncCommitsRename reports whether root is on a filesystem whose fsync
// of a file also makes durable a rename of that file to a new name done
// before it. ext4 with a journal and XFS log the rename together with the
// renamed inode's change time, and an fsync of the inode forces the log up
// to its last change, so the rename is in. ext4 without a journal (this
// project's CI machines) marks an inode given a new directory entry and
// its fsync then writes that directory's blocks too (ext4_sync_parent).
// Elsewhere a directory fsync is still needed.
func fsyncCommitsRename(root string) bool {
	const ext4Magic, xfsMagic = 0xEF53, 0x58465342
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return false
	}
	return st.Type == ext4Magic || st.Type == xfsMagic
}

// lockFile takes an exclusive flock on f, so that appends from two
// processes to one partial upload cannot interleave.
func lockFile(fd int) error {
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

// sameFile reports whether the open descriptor fd still is the file at
// path (it is not after a concurrent publish or discard).
func sameFile(fd int, path string) bool {
	var a, b syscall.Stat_t
	if syscall.Fstat(fd, &a) != nil || syscall.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// inode identifies a file, so a partial upload's sidecar can tell whether
// it still describes the same data file.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// renameNoReplace renames oldpath to newpath unless newpath exists, in
// which case it fails with os.ErrExist.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		return os.ErrExist
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return errNoRenameFlags
	}
	return err
}
