package davfs

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/filegate/filegate/model"
)

// Limits on request bodies, checked while reading, before anything acts
// on them: x/net/webdav's decoder recursed without bound on nesting.
const (
	maxXMLBytes = 1 << 20
	maxXMLDepth = 32
)

const (
	nsDAV = "DAV:"
	nsXML = "http://www.w3.org/XML/1998/namespace"
)

// errXML marks a malformed or over-limit XML body: 400, or 413 with
// model.ErrTooLarge.
var errXML = fmt.Errorf("%w: malformed XML body", model.ErrInvalid)

// xmlElem is a start tag with its namespaces resolved.
type xmlElem struct {
	name  xml.Name
	attrs []xml.Attr // resolved; xmlns declarations left out
	lang  string     // xml:lang in scope
}

// xmlReader reads a request body as a stream of namespace-resolved tokens.
// It resolves prefixes itself (encoding/xml leaves an unbound prefix in
// place), rejects undeclared prefixes, empty prefixed declarations
// (xmlns:p=""), DOCTYPE and mismatched tags, and caps nesting depth.
type xmlReader struct {
	d      *xml.Decoder
	scopes []map[string]string // prefix -> URI per open element
	open   []xml.Name          // raw names, for end-tag matching
	langs  []string
	done   bool // the root element has closed
}

func newXMLReader(r io.Reader) *xmlReader {
	d := xml.NewDecoder(r)
	d.Strict = true
	return &xmlReader{d: d}
}

func (x *xmlReader) lookup(prefix string) (string, bool) {
	if prefix == "xml" {
		return nsXML, true
	}
	for i := len(x.scopes) - 1; i >= 0; i-- {
		if uri, ok := x.scopes[i][prefix]; ok {
			return uri, true
		}
	}
	if prefix == "" {
		return "", true
	}
	return "", false
}

// next returns the next start element, end element or character data
// (as xml.CharData), skipping comments and processing instructions. It
// returns io.EOF after the root element has closed and the input ended.
func (x *xmlReader) next() (xml.Token, error) {
	for {
		tok, err := x.d.RawToken()
		if err == io.EOF {
			if !x.done {
				return nil, errXML
			}
			return nil, io.EOF
		}
		if err != nil {
			if errors.Is(err, model.ErrTooLarge) {
				return nil, err
			}
			return nil, errXML
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return x.start(t)
		case xml.EndElement:
			if len(x.open) == 0 || x.open[len(x.open)-1] != t.Name {
				return nil, errXML
			}
			uri, _ := x.lookup(t.Name.Space)
			x.open = x.open[:len(x.open)-1]
			x.scopes = x.scopes[:len(x.scopes)-1]
			x.langs = x.langs[:len(x.langs)-1]
			if len(x.open) == 0 {
				x.done = true
			}
			return xml.EndElement{Name: xml.Name{Space: uri, Local: t.Name.Local}}, nil
		case xml.CharData:
			if len(x.open) == 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, errXML
				}
				continue
			}
			return t.Copy(), nil
		case xml.Directive:
			return nil, errXML
		}
	}
}

func (x *xmlReader) start(t xml.StartElement) (xml.Token, error) {
	if x.done || len(x.open) >= maxXMLDepth {
		return nil, errXML
	}
	scope := map[string]string{}
	lang := ""
	if n := len(x.langs); n > 0 {
		lang = x.langs[n-1]
	}
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			scope[""] = a.Value
		case a.Name.Space == "xmlns":
			if a.Value == "" || a.Name.Local == "xmlns" || a.Name.Local == "xml" {
				return nil, errXML
			}
			scope[a.Name.Local] = a.Value
		case a.Name.Space == "xml" && a.Name.Local == "lang":
			lang = a.Value
		}
	}
	x.scopes = append(x.scopes, scope)
	x.open = append(x.open, t.Name)
	x.langs = append(x.langs, lang)
	uri, ok := x.lookup(t.Name.Space)
	if !ok || t.Name.Local == "" || strings.Contains(t.Name.Local, ":") {
		return nil, errXML
	}
	e := xml.StartElement{Name: xml.Name{Space: uri, Local: t.Name.Local}}
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		space := ""
		if a.Name.Space != "" {
			if space, ok = x.lookup(a.Name.Space); !ok {
				return nil, errXML
			}
		}
		e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Space: space, Local: a.Name.Local}, Value: a.Value})
	}
	return e, nil
}

// lang returns the xml:lang in scope of the innermost open element.
func (x *xmlReader) lang() string {
	if n := len(x.langs); n > 0 {
		return x.langs[n-1]
	}
	return ""
}

// skip consumes the rest of the element whose start was just read.
func (x *xmlReader) skip() error {
	depth := 1
	for depth > 0 {
		tok, err := x.next()
		if err != nil {
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
	}
	return nil
}

// inner consumes the rest of the element whose start was just read and
// returns its content re-serialised so that it stands alone: every
// element declares its own namespace, so the bytes can be replayed inside
// any document. It reports whether the content had any element.
func (x *xmlReader) inner() ([]byte, error) {
	var b bytes.Buffer
	depth := 1
	for {
		tok, err := x.next()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			writeStart(&b, t.Name, t.Attr, "")
		case xml.EndElement:
			depth--
			if depth == 0 {
				return b.Bytes(), nil
			}
			b.WriteString("</")
			b.WriteString(t.Name.Local)
			b.WriteByte('>')
		case xml.CharData:
			escapeString(&b, string(t))
		}
		if b.Len() > maxXMLBytes {
			return nil, fmt.Errorf("%w: XML value too large", model.ErrTooLarge)
		}
	}
}

// writeStart writes a start tag that declares its namespace as the
// default one (xmlns="" for none), and a prefix per namespaced attribute.
func writeStart(b *bytes.Buffer, name xml.Name, attrs []xml.Attr, lang string) {
	b.WriteByte('<')
	b.WriteString(name.Local)
	b.WriteString(` xmlns="`)
	escapeAttr(b, name.Space)
	b.WriteByte('"')
	if lang != "" {
		b.WriteString(` xml:lang="`)
		escapeAttr(b, lang)
		b.WriteByte('"')
	}
	for i, a := range attrs {
		b.WriteByte(' ')
		switch a.Name.Space {
		case "":
		case nsXML:
			b.WriteString("xml:")
		default:
			fmt.Fprintf(b, `xmlns:a%d="`, i)
			escapeAttr(b, a.Name.Space)
			fmt.Fprintf(b, `" a%d:`, i)
		}
		b.WriteString(a.Name.Local)
		b.WriteString(`="`)
		escapeAttr(b, a.Value)
		b.WriteByte('"')
	}
	b.WriteByte('>')
}

// readRoot reads up to the root element and checks its name.
func (x *xmlReader) readRoot(want xml.Name) error {
	for {
		tok, err := x.next()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name != want {
				return errXML
			}
			return nil
		case xml.CharData:
			continue
		default:
			return errXML
		}
	}
}

// children calls fn for every child element of the element whose start
// was just read; fn must consume the child (skip, inner or its own loop).
// Text between children must be white space.
func (x *xmlReader) children(fn func(e xml.StartElement) error) error {
	for {
		tok, err := x.next()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := fn(t); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return errXML
			}
		}
	}
}

// finish checks that nothing but white space follows the root element.
func (x *xmlReader) finish() error {
	for {
		_, err := x.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		return errXML
	}
}

// propfindKind says what a PROPFIND asks for.
type propfindKind int

const (
	findAllProp propfindKind = iota
	findPropName
	findProp
)

// propfindReq is a parsed PROPFIND body.
type propfindReq struct {
	kind    propfindKind
	props   []xml.Name // findProp
	include []xml.Name // findAllProp with DAV:include
}

// parsePropfind parses a PROPFIND body; an empty body means allprop.
func parsePropfind(body io.Reader) (propfindReq, error) {
	var req propfindReq
	br := &peekReader{r: body}
	if br.empty() {
		return propfindReq{kind: findAllProp}, nil
	}
	x := newXMLReader(br)
	if err := x.readRoot(xml.Name{Space: nsDAV, Local: "propfind"}); err != nil {
		return req, err
	}
	seen := 0
	err := x.children(func(e xml.StartElement) error {
		switch e.Name {
		case xml.Name{Space: nsDAV, Local: "allprop"}:
			seen++
			req.kind = findAllProp
			return x.skip()
		case xml.Name{Space: nsDAV, Local: "propname"}:
			seen++
			req.kind = findPropName
			return x.skip()
		case xml.Name{Space: nsDAV, Local: "prop"}:
			seen++
			req.kind = findProp
			return x.children(func(p xml.StartElement) error {
				req.props = append(req.props, p.Name)
				return x.skip()
			})
		case xml.Name{Space: nsDAV, Local: "include"}:
			return x.children(func(p xml.StartElement) error {
				req.include = append(req.include, p.Name)
				return x.skip()
			})
		}
		return x.skip()
	})
	if err != nil {
		return req, err
	}
	if seen != 1 || (req.kind == findProp && len(req.props) == 0) {
		return req, errXML
	}
	return req, x.finish()
}

// parseProppatch parses a PROPPATCH body into its operations in document
// order.
func parseProppatch(body io.Reader) ([]patchOp, error) {
	x := newXMLReader(body)
	if err := x.readRoot(xml.Name{Space: nsDAV, Local: "propertyupdate"}); err != nil {
		return nil, err
	}
	var ops []patchOp
	err := x.children(func(e xml.StartElement) error {
		remove := false
		switch e.Name {
		case xml.Name{Space: nsDAV, Local: "set"}:
		case xml.Name{Space: nsDAV, Local: "remove"}:
			remove = true
		default:
			return x.skip()
		}
		return x.children(func(p xml.StartElement) error {
			if p.Name != (xml.Name{Space: nsDAV, Local: "prop"}) {
				return x.skip()
			}
			return x.children(func(prop xml.StartElement) error {
				op := patchOp{remove: remove, name: prop.Name, lang: x.lang()}
				if remove {
					return append2(&ops, op, x.skip())
				}
				v, err := x.inner()
				op.value = v
				return append2(&ops, op, err)
			})
		})
	})
	if err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return nil, errXML
	}
	return ops, x.finish()
}

func append2(ops *[]patchOp, op patchOp, err error) error {
	if err == nil {
		*ops = append(*ops, op)
	}
	return err
}

// lockInfo is a parsed LOCK body.
type lockInfo struct {
	shared bool
	owner  string
}

// parseLockInfo parses a LOCK body. It reports ok=false for an empty body,
// which asks for a refresh.
func parseLockInfo(body io.Reader) (li lockInfo, ok bool, err error) {
	br := &peekReader{r: body}
	if br.empty() {
		return li, false, nil
	}
	x := newXMLReader(br)
	if err := x.readRoot(xml.Name{Space: nsDAV, Local: "lockinfo"}); err != nil {
		return li, false, err
	}
	scope, typ := false, false
	err = x.children(func(e xml.StartElement) error {
		switch e.Name {
		case xml.Name{Space: nsDAV, Local: "lockscope"}:
			return x.children(func(s xml.StartElement) error {
				switch s.Name {
				case xml.Name{Space: nsDAV, Local: "exclusive"}:
					scope = true
				case xml.Name{Space: nsDAV, Local: "shared"}:
					scope, li.shared = true, true
				default:
					return errXML
				}
				return x.skip()
			})
		case xml.Name{Space: nsDAV, Local: "locktype"}:
			return x.children(func(t xml.StartElement) error {
				if t.Name != (xml.Name{Space: nsDAV, Local: "write"}) {
					return errXML
				}
				typ = true
				return x.skip()
			})
		case xml.Name{Space: nsDAV, Local: "owner"}:
			v, err := x.inner()
			li.owner = string(v)
			return err
		}
		return x.skip()
	})
	if err != nil {
		return li, false, err
	}
	if !scope || !typ {
		return li, false, errXML
	}
	return li, true, x.finish()
}

// peekReader tells an empty body (or one of only white space) from a real
// one without losing bytes.
type peekReader struct {
	r    io.Reader
	head []byte
}

func (p *peekReader) empty() bool {
	buf := make([]byte, 512)
	for {
		n, err := p.r.Read(buf)
		p.head = append(p.head, buf[:n]...)
		if len(bytes.TrimSpace(p.head)) > 0 || len(p.head) > 4096 {
			return false
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false // the parser meets the error again
		}
	}
}

// limitXML caps a request body at maxXMLBytes; reading past the cap fails
// with model.ErrTooLarge instead of silently truncating.
func limitXML(r io.Reader) io.Reader { return &xmlLimit{r: r, left: maxXMLBytes} }

type xmlLimit struct {
	r    io.Reader
	left int64
}

func (l *xmlLimit) Read(b []byte) (int, error) {
	if l.left <= 0 {
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("%w: XML body over %d bytes", model.ErrTooLarge, maxXMLBytes)
		}
		return 0, io.EOF
	}
	if int64(len(b)) > l.left {
		b = b[:l.left]
	}
	n, err := l.r.Read(b)
	l.left -= int64(n)
	return n, err
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	return p.r.Read(b)
}
