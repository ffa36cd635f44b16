package model

import (
	"bytes"
	"mime"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/uptrace/bun"
)

const sniffLen = 512

func bunIn(xs []string) any { return bun.In(xs) }

// magic lists content signatures that decide a type whatever the name
// says, so HTML uploaded as "x.png" is still recorded as HTML and the files
// API forces it to download.
var magic = []struct {
	prefix string
	offset int
	typ    string
}{
	{"%PDF-", 0, "application/pdf"},
	{"\x89PNG\r\n\x1a\n", 0, "image/png"},
	{"\xff\xd8\xff", 0, "image/jpeg"},
	{"GIF87a", 0, "image/gif"},
	{"GIF89a", 0, "image/gif"},
	{"DICM", 128, "application/dicom"},
	{"PK\x03\x04", 0, "application/zip"},
	{"\x1f\x8b", 0, "application/gzip"},
}

// active lists markup a browser would execute when shown inline. Matched
// case-insensitively after leading white space.
var active = []struct{ prefix, typ string }{
	{"<!doctype html", "text/html"},
	{"<html", "text/html"},
	{"<head", "text/html"},
	{"<body", "text/html"},
	{"<script", "text/html"},
	{"<iframe", "text/html"},
	{"<svg", "image/svg+xml"},
	{"<?xml", "application/xml"},
}

// DetectType returns a MIME type for a file from its first bytes and its
// name: a recognised signature or active markup wins over the extension.
func DetectType(name string, head []byte) string {
	for _, m := range magic {
		if len(head) >= m.offset+len(m.prefix) && string(head[m.offset:m.offset+len(m.prefix)]) == m.prefix {
			return m.typ
		}
	}
	trimmed := bytes.ToLower(bytes.TrimLeft(head, " \t\r\n\ufeff"))
	for _, a := range active {
		if bytes.HasPrefix(trimmed, []byte(a.prefix)) {
			if a.typ == "application/xml" && bytes.Contains(trimmed, []byte("<svg")) {
				return "image/svg+xml"
			}
			return a.typ
		}
	}
	if t := mime.TypeByExtension(strings.ToLower(path.Ext(name))); t != "" {
		return t
	}
	if len(head) == 0 {
		return "application/octet-stream"
	}
	if utf8.Valid(head) && !bytes.ContainsRune(head, 0) {
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}
