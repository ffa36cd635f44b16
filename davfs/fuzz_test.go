package davfs

import (
	"strings"
	"testing"
)

// FuzzRequestParsers feeds arbitrary input to every parser a request
// body or header reaches before anything acts on it. None may panic, and
// an accepted PROPPATCH value must be replayable XML.
func FuzzRequestParsers(f *testing.F) {
	f.Add(`<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>`)
	f.Add(`<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns="y:" xml:lang="en">a<b/>&amp;</x></D:prop></D:set></D:propertyupdate>`)
	f.Add(`<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>me</D:owner></D:lockinfo>`)
	f.Add(`(<opaquelocktoken:a> ["e"]) (Not <DAV:no-lock>)`)
	f.Add(`<a><a><a><a></a></a></a></a>`)
	f.Fuzz(func(t *testing.T, in string) {
		parsePropfind(strings.NewReader(in))
		parseLockInfo(strings.NewReader(in))
		parseIf(in)
		parseTimeout(in)
		parseDepth(in)
		ops, err := parseProppatch(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, op := range ops {
			if op.remove {
				continue
			}
			doc := `<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><v xmlns="z:">` + string(op.value) + `</v></D:prop></D:set></D:propertyupdate>`
			again, err := parseProppatch(strings.NewReader(doc))
			if err != nil || len(again) != 1 || string(again[0].value) != string(op.value) {
				t.Fatalf("stored value %q does not replay: %v %v", op.value, err, again)
			}
		}
	})
}
