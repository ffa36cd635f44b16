package tus

import (
	"encoding/base64"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/filegate/filegate/model"
)

// encodeMetadata writes metadata as an Upload-Metadata header.
func encodeMetadata(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+" "+base64.StdEncoding.EncodeToString([]byte(m[k])))
	}
	return strings.Join(parts, ",")
}

// metaValueOK is what the door must accept for a key it reads: valid
// UTF-8 without control characters, except CR, LF and tab in a
// description.
func metaValueOK(key, v string) bool {
	if !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if unicode.IsControl(r) && !(key == "description" && strings.ContainsRune("\r\n\t", r)) {
			return false
		}
	}
	return true
}

var readKeys = []string{"filename", "name", "folder", "parentId", "filetype", "mimeType", "tags", "title", "source", "phi", "description"}

// FuzzUploadMetadata sends an Upload-Metadata header through the door's
// header check (seed corpus in testdata/fuzz/FuzzUploadMetadata). A header
// over 8 KiB is refused; an accepted one carries no CR, LF or other
// control character in the values filegate stores, names a clean file
// and folder, and reads the same when encoded again. A single well-formed
// key and base64 value pair round-trips unless the value is one the door
// must refuse.
func FuzzUploadMetadata(f *testing.F) {
	f.Add("filename ZmlsZS50eHQ=,folder Lw==", "title", "x")
	f.Add("filename YQ0KYg==", "filename", "a\r\nb")
	f.Fuzz(func(t *testing.T, header, key, value string) {
		r := httptest.NewRequest(http.MethodPost, "/uploads/", nil)
		r.Header.Set("Tus-Resumable", "1.0.0")
		r.Header["Upload-Metadata"] = []string{header}
		rs := &reqState{method: http.MethodPost}
		status, code, _ := rs.parseHeaders(r, false)
		if len(header) > MaxMetadataBytes {
			if code != "ERR_METADATA_TOO_LARGE" {
				t.Fatalf("a %d-byte Upload-Metadata got %d %q, want ERR_METADATA_TOO_LARGE", len(header), status, code)
			}
		} else if status == 0 {
			checkMeta(t, header, rs.meta)
		}

		validKey := key != "" && strings.IndexFunc(key, func(r rune) bool { return r <= ' ' || r > '~' || r == ',' }) < 0
		if !validKey {
			return
		}
		one := key + " " + base64.StdEncoding.EncodeToString([]byte(value))
		m, err := parseMetadata(one)
		mustRefuse := slices.Contains(readKeys, key) && !metaValueOK(key, value)
		switch {
		case mustRefuse && err == nil:
			t.Fatalf("%q: value %q accepted for %q", one, value, key)
		case !mustRefuse && (err != nil || len(m) != 1 || m[key] != value):
			t.Fatalf("%q: pair %q=%q reads back as %q, %v", one, key, value, m, err)
		}
	})
}

func checkMeta(t *testing.T, header string, meta map[string]string) {
	t.Helper()
	for _, k := range readKeys {
		if v, ok := meta[k]; ok && !metaValueOK(k, v) {
			t.Fatalf("%q: accepted %s=%q", header, k, v)
		}
	}
	if again, err := parseMetadata(encodeMetadata(meta)); err != nil || !maps.Equal(again, meta) {
		t.Fatalf("%q: metadata %q encoded again reads %q, %v", header, meta, again, err)
	}
	tg, err := targetFrom(meta, true)
	if err != nil {
		return
	}
	if c, err := model.CleanName(tg.name); err != nil || c != tg.name || strings.ContainsAny(tg.name, "\r\n") {
		t.Fatalf("%q: target name %q is not clean", header, tg.name)
	}
	if tg.folder != "" {
		if c, err := model.CleanPath(tg.folder); err != nil || c != tg.folder {
			t.Fatalf("%q: target folder %q is not clean", header, tg.folder)
		}
	}
	if tg.meta.MimeType != "" && strings.ContainsAny(tg.meta.MimeType, "\r\n\x00") {
		t.Fatalf("%q: media type %q", header, tg.meta.MimeType)
	}
}
