package model

import (
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Limits on names and paths. Names are measured in bytes after NFC
// normalisation, as most filesystems and clients count them.
const (
	MaxNameBytes = 255
	MaxPathBytes = 4096
	MaxDepth     = 64
)

// CleanPath turns a decoded request path into filegate's one canonical
// form: "/" for the root, otherwise "/a/b" with no trailing slash. Every
// door calls it exactly once, and the authorizer and the store both see its
// result, so they can never disagree about which node a request names.
//
// Empty and "." segments (from "//" and "/./") are dropped. Names are
// normalised to NFC, so a macOS NFD name and its NFC twin are one file. It
// returns ErrInvalid for "..", backslashes, NUL and other control
// characters, invalid UTF-8, over-long names or paths, and segments that
// would become "." or ".." or contain a slash if decoded once more (a
// double-encoded traversal).
func CleanPath(p string) (string, error) {
	if len(p) > MaxPathBytes {
		return "", fmt.Errorf("%w: path longer than %d bytes", ErrInvalid, MaxPathBytes)
	}
	var b strings.Builder
	depth := 0
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." {
			continue
		}
		name, err := CleanName(seg)
		if err != nil {
			return "", err
		}
		depth++
		if depth > MaxDepth {
			return "", fmt.Errorf("%w: path deeper than %d", ErrInvalid, MaxDepth)
		}
		b.WriteByte('/')
		b.WriteString(name)
	}
	if b.Len() == 0 {
		return "/", nil
	}
	if b.Len() > MaxPathBytes {
		return "", fmt.Errorf("%w: path longer than %d bytes", ErrInvalid, MaxPathBytes)
	}
	return b.String(), nil
}

// CleanName validates one name (a single path segment) and returns it in
// NFC. It returns ErrInvalid under the rules CleanPath documents.
func CleanName(name string) (string, error) {
	if name == "" || name == "." || name == ".." {
		return "", fmt.Errorf("%w: name %q is reserved", ErrInvalid, name)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: name is not valid UTF-8", ErrInvalid)
	}
	for _, r := range name {
		if r == '/' || r == '\\' || unicode.IsControl(r) {
			return "", fmt.Errorf("%w: name contains a forbidden character", ErrInvalid)
		}
	}
	if strings.Contains(name, "%") {
		if dec, err := url.PathUnescape(name); err == nil {
			if dec == "." || dec == ".." || strings.ContainsAny(dec, "/\\\x00") {
				return "", fmt.Errorf("%w: name is an encoded path traversal", ErrInvalid)
			}
		}
	}
	name = norm.NFC.String(name)
	if len(name) > MaxNameBytes {
		return "", fmt.Errorf("%w: name longer than %d bytes", ErrInvalid, MaxNameBytes)
	}
	return name, nil
}

// SplitPath returns the parent path and the last name of a clean path. The
// root has no parent and yields ("", "").
func SplitPath(clean string) (parent, name string) {
	if clean == "/" {
		return "", ""
	}
	i := strings.LastIndexByte(clean, '/')
	if i == 0 {
		return "/", clean[1:]
	}
	return clean[:i], clean[i+1:]
}

// JoinPath appends a clean name to a clean folder path.
func JoinPath(folder, name string) string {
	if folder == "/" {
		return "/" + name
	}
	return folder + "/" + name
}

// IsWithin reports whether clean path p is folder itself or lies below it.
// "/a-b" is not within "/a".
func IsWithin(p, folder string) bool {
	if folder == "/" {
		return true
	}
	return p == folder || strings.HasPrefix(p, folder+"/")
}
