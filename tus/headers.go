package tus

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/filegate/filegate/model"
)

// parseMetadata decodes an Upload-Metadata header strictly: tusd skips
// elements it cannot decode, which would silently drop a filename or a
// folder and put the file somewhere the client did not ask for.
func parseMetadata(header string) (map[string]string, error) {
	meta := map[string]string{}
	for _, el := range strings.Split(header, ",") {
		el = strings.TrimSpace(el)
		if el == "" {
			continue
		}
		key, val, hasVal := strings.Cut(el, " ")
		if key == "" || strings.ContainsAny(val, " ") {
			return nil, fmt.Errorf("metadata element %q is not \"key base64value\"", clip(el))
		}
		for i := 0; i < len(key); i++ {
			if key[i] <= ' ' || key[i] > '~' {
				return nil, fmt.Errorf("metadata key %q has a character outside printable ASCII", clip(key))
			}
		}
		if _, dup := meta[key]; dup {
			return nil, fmt.Errorf("metadata key %q appears twice", key)
		}
		dec := ""
		if hasVal {
			b, err := base64.StdEncoding.DecodeString(val)
			if err != nil {
				b, err = base64.RawStdEncoding.DecodeString(val)
			}
			if err != nil {
				return nil, fmt.Errorf("metadata value of %q is not valid base64", key)
			}
			dec = string(b)
		}
		if err := checkMetaValue(key, dec); err != nil {
			return nil, err
		}
		meta[key] = dec
	}
	return meta, nil
}

// checkMetaValue rejects values of the keys filegate reads that could not
// be stored as given: invalid UTF-8, and control characters (CR and LF
// included) anywhere but in a description.
func checkMetaValue(key, v string) error {
	switch key {
	case "filename", "name", "folder", "parentId", "filetype", "mimeType", "tags", "title", "source", "phi", "description":
	default:
		return nil
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("metadata %q is not valid UTF-8", key)
	}
	for _, r := range v {
		if unicode.IsControl(r) && !(key == "description" && (r == '\n' || r == '\r' || r == '\t')) {
			return fmt.Errorf("metadata %q contains a control character (such as CR or LF)", key)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// target is where a finished upload lands and what it records.
type target struct {
	name     string
	folder   string // a clean path, when given as "folder"
	parentID string // when given as "parentId"
	meta     model.FileMeta
}

// targetFrom reads the metadata keys filegate understands. A missing
// filename is allowed only when needName is false (partial uploads).
func targetFrom(m map[string]string, needName bool) (target, error) {
	var t target
	name := m["filename"]
	if name == "" {
		name = m["name"]
	}
	if name != "" {
		clean, err := model.CleanName(name)
		if err != nil {
			return t, err
		}
		t.name = clean
	} else if needName {
		return t, fmt.Errorf("%w: Upload-Metadata needs a filename", model.ErrInvalid)
	}
	if f, ok := m["folder"]; ok && f != "" {
		clean, err := model.CleanPath(f)
		if err != nil {
			return t, err
		}
		t.folder = clean
	}
	t.parentID = m["parentId"]
	if t.folder != "" && t.parentID != "" {
		return t, fmt.Errorf("%w: give folder or parentId, not both", model.ErrInvalid)
	}
	if t.folder == "" && t.parentID == "" {
		t.folder = "/"
	}
	t.meta.MimeType = m["mimeType"]
	if t.meta.MimeType == "" {
		t.meta.MimeType = m["filetype"]
	}
	if t.meta.MimeType != "" && !validMime(t.meta.MimeType) {
		return t, fmt.Errorf("%w: %q is not a media type", model.ErrInvalid, clip(t.meta.MimeType))
	}
	t.meta.Tags = parseTags(m["tags"])
	t.meta.Title = m["title"]
	t.meta.Description = m["description"]
	t.meta.Source = m["source"]
	switch strings.ToLower(strings.TrimSpace(m["phi"])) {
	case "", "0", "false", "no":
	case "1", "true", "yes":
		t.meta.PHI = true
	default:
		return t, fmt.Errorf("%w: phi must be true or false", model.ErrInvalid)
	}
	if v := m["mtime"]; v != "" {
		if ts, err := time.Parse(time.RFC3339Nano, v); err == nil {
			t.meta.ModTime = ts
		} else if sec, err := strconv.ParseInt(v, 10, 64); err == nil && sec > 0 {
			t.meta.ModTime = time.Unix(sec, 0)
		}
	}
	return t, nil
}

// validMime accepts type/subtype with optional parameters, nothing that
// would break a Content-Type header.
func validMime(v string) bool {
	base, _, _ := strings.Cut(v, ";")
	typ, sub, ok := strings.Cut(strings.TrimSpace(base), "/")
	return ok && typ != "" && sub != "" && len(v) <= 255 && !strings.ContainsAny(v, "\r\n\x00")
}

// parseTags takes a JSON array or a comma-separated list.
func parseTags(v string) []string {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	if strings.HasPrefix(v, "[") {
		var tags []string
		if json.Unmarshal([]byte(v), &tags) == nil {
			return tags
		}
	}
	return strings.Split(v, ",")
}

// checksum is the expected digest of one request's body (Upload-Checksum).
type checksum struct {
	algo string
	h    hash.Hash
	want []byte
}

// errChecksum is answered 460 Checksum Mismatch; the chunk is discarded.
var errChecksum = tusError(460, "ERR_CHECKSUM_MISMATCH", "the chunk does not match Upload-Checksum and was discarded")

func parseChecksum(v string) (*checksum, error) {
	algo, enc, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return nil, errors.New("Upload-Checksum must be \"algorithm base64digest\"")
	}
	var h hash.Hash
	switch strings.ToLower(algo) {
	case "sha1":
		h = sha1.New()
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	case "md5":
		h = md5.New()
	default:
		return nil, fmt.Errorf("checksum algorithm %q is not supported; use one of %s", clip(algo), checksumAlgorithms)
	}
	want, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil || len(want) != h.Size() {
		return nil, fmt.Errorf("the %s digest in Upload-Checksum is not %d bytes of base64", algo, h.Size())
	}
	return &checksum{algo: strings.ToLower(algo), h: h, want: want}, nil
}

func (c *checksum) Write(p []byte) (int, error) { return c.h.Write(p) }

func (c *checksum) ok() bool { return bytes.Equal(c.h.Sum(nil), c.want) }
