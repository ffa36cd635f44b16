package davfs

import (
	"bufio"
	"encoding/xml"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"golang.org/x/net/webdav"
)

// xmlWriter is what the escapers write to: bytes.Buffer and bufio.Writer.
type xmlWriter interface {
	io.Writer
	io.ByteWriter
	io.StringWriter
}

// escapeString writes s as XML character data.
func escapeString(w xmlWriter, s string) { escape(w, s, false) }

// escapeAttr writes s as a double-quoted attribute value.
func escapeAttr(w xmlWriter, s string) { escape(w, s, true) }

func escape(w xmlWriter, s string, attr bool) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch c := s[i]; {
		case c == '&':
			esc = "&amp;"
		case c == '<':
			esc = "&lt;"
		case c == '>' && !attr:
			esc = "&gt;"
		case c == '\r':
			esc = "&#xD;"
		case c == '"' && attr:
			esc = "&quot;"
		case c == '\n' && attr:
			esc = "&#xA;"
		case c == '\t' && attr:
			esc = "&#x9;"
		default:
			continue
		}
		w.WriteString(s[last:i])
		w.WriteString(esc)
		last = i + 1
	}
	w.WriteString(s[last:])
}

// shouldEscape reports whether a byte of a path is percent-encoded in an
// href. Everything but unreserved characters and "/" is, so an href never
// needs XML escaping and every client decodes it the same way.
func shouldEscape(c byte) bool {
	return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '/')
}

const hexDigits = "0123456789ABCDEF"

// appendHref appends the escaped prefix+path, with a trailing slash for a
// collection.
func appendHref(b []byte, prefix, p string, dir bool) []byte {
	for _, s := range [2]string{prefix, p} {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if shouldEscape(c) {
				b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
			} else {
				b = append(b, c)
			}
		}
	}
	if dir && (len(b) == 0 || b[len(b)-1] != '/') {
		b = append(b, '/')
	}
	return b
}

// msWriter streams a 207 Multi-Status body.
type msWriter struct {
	bw  *bufio.Writer
	buf []byte // scratch for numbers, dates and hrefs
}

func newMultistatus(w http.ResponseWriter) *msWriter {
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(http.StatusMultiStatus)
	m := &msWriter{bw: bufio.NewWriterSize(w, 64<<10), buf: make([]byte, 0, 256)}
	m.bw.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n" + `<D:multistatus xmlns:D="DAV:">`)
	return m
}

func (m *msWriter) close() error {
	m.bw.WriteString("</D:multistatus>\n")
	return m.bw.Flush()
}

func (m *msWriter) href(prefix, p string, dir bool) {
	m.buf = appendHref(m.buf[:0], prefix, p, dir)
	m.bw.WriteString("<D:href>")
	m.bw.Write(m.buf)
	m.bw.WriteString("</D:href>")
}

func (m *msWriter) status(code int) {
	m.bw.WriteString("<D:status>HTTP/1.1 ")
	m.buf = strconv.AppendInt(m.buf[:0], int64(code), 10)
	m.bw.Write(m.buf)
	m.bw.WriteByte(' ')
	m.bw.WriteString(webdav.StatusText(code))
	m.bw.WriteString("</D:status>")
}

func (m *msWriter) int(v int64) {
	m.buf = strconv.AppendInt(m.buf[:0], v, 10)
	m.bw.Write(m.buf)
}

func (m *msWriter) httpDate(t time.Time) {
	m.buf = t.UTC().AppendFormat(m.buf[:0], http.TimeFormat)
	m.bw.Write(m.buf)
}

func (m *msWriter) isoDate(t time.Time) {
	m.buf = t.UTC().AppendFormat(m.buf[:0], "2006-01-02T15:04:05Z")
	m.bw.Write(m.buf)
}

// emptyProp writes <name/> for a property name in any namespace.
func (m *msWriter) emptyProp(n xml.Name) {
	if n.Space == nsDAV {
		m.bw.WriteString("<D:")
		m.bw.WriteString(n.Local)
		m.bw.WriteString("/>")
		return
	}
	m.bw.WriteByte('<')
	m.bw.WriteString(n.Local)
	m.bw.WriteString(` xmlns="`)
	escapeAttr(m.bw, n.Space)
	m.bw.WriteString(`"/>`)
}

// deadProp writes a stored property; its value declares its own
// namespaces (see xmlReader.inner).
func (m *msWriter) deadProp(p webdav.Property) {
	m.bw.WriteByte('<')
	m.bw.WriteString(p.XMLName.Local)
	m.bw.WriteString(` xmlns="`)
	escapeAttr(m.bw, p.XMLName.Space)
	m.bw.WriteByte('"')
	if p.Lang != "" {
		m.bw.WriteString(` xml:lang="`)
		escapeAttr(m.bw, p.Lang)
		m.bw.WriteByte('"')
	}
	m.bw.WriteByte('>')
	m.bw.Write(p.InnerXML)
	m.bw.WriteString("</")
	m.bw.WriteString(p.XMLName.Local)
	m.bw.WriteByte('>')
}

// validName reports whether a property name can be written back as an
// element name.
func validName(n xml.Name) bool {
	if n.Local == "" || !utf8.ValidString(n.Local) || !utf8.ValidString(n.Space) {
		return false
	}
	for i, r := range n.Local {
		if r == ':' || r == '<' || r == '>' || r == '&' || r == '"' || r == '\'' || r == '/' || r == '=' ||
			r <= ' ' || (i == 0 && (r == '-' || r == '.' || (r >= '0' && r <= '9'))) {
			return false
		}
	}
	return true
}

// writeError answers status with a DAV:error body naming the condition,
// e.g. "propfind-finite-depth" or a built element.
func writeError(w http.ResponseWriter, status int, condition string) {
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, `<?xml version="1.0" encoding="utf-8"?>`+"\n"+`<D:error xmlns:D="DAV:">`+condition+"</D:error>\n")
}

// hrefElem returns <D:href> for a path, for error bodies.
func hrefElem(prefix, p string, dir bool) string {
	return "<D:href>" + string(appendHref(nil, prefix, p, dir)) + "</D:href>"
}
