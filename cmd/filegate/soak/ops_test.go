package soak

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// content is the deterministic body of a write: size bytes of ChaCha8
// output keyed by seed, so a retry sends the same bytes and nothing is
// held in memory.
func content(seed uint64, size int64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return io.LimitReader(rand.NewChaCha8(key), size)
}

func sumOf(r io.Reader) (string, int64) {
	h := sha256.New()
	n, _ := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n
}

// readSum hashes an answer's body; a body cut off by a kill is errRetry.
func readSum(resp *http.Response) (string, error) {
	h := sha256.New()
	_, err := io.Copy(h, resp.Body)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errRetry, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// size picks a file size: mostly small, some medium, a few large.
func (c *client) size() int64 {
	switch p := c.rnd.IntN(10); {
	case p < 6:
		return 1 + c.rnd.Int64N(64<<10)
	case p < 9:
		return 64<<10 + c.rnd.Int64N(960<<10)
	default:
		return 1<<20 + c.rnd.Int64N(3<<20)
	}
}

func (c *client) davURL(base, name string) string {
	return base + "/dav/" + c.acct.name + "/" + name
}

// pick returns a random name the client believes exists, optionally only
// among files whose node id it knows; "" when there is none.
func (c *client) pick(withID bool) string {
	names := slices.Sorted(maps.Keys(c.files))
	if withID {
		names = slices.DeleteFunc(names, func(n string) bool { return c.files[n].id == "" })
	}
	if len(names) == 0 {
		return ""
	}
	return names[c.rnd.IntN(len(names))]
}

func (c *client) newName(prefix string) string {
	return fmt.Sprintf("%s%02d-%06d.bin", prefix, c.id, c.seq+1)
}

// verify compares a read's SHA-256 with what the client wrote.
func (c *client) verify(what, name, got string) {
	if f := c.files[name]; f != nil && f.sha != got {
		c.h.n.mismatches.Add(1)
		c.h.t.Errorf("client %d: %s of %s: sha256 %s, wrote %s", c.id, what, name, got, f.sha)
	}
}

// step runs one random operation.
func (c *client) step() error {
	ops := []struct {
		weight int
		fn     func() error
	}{
		{14, c.davPut}, {12, c.davGet}, {6, c.davPropfind}, {6, c.davMove}, {4, c.davDelete},
		{10, c.tusUpload}, {10, c.apiUpload}, {10, c.apiDownload}, {6, c.apiMeta}, {3, c.apiPatch},
		{4, c.apiLink},
	}
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	p := c.rnd.IntN(total)
	for _, o := range ops {
		if p < o.weight {
			err := o.fn()
			if err == nil {
				c.h.n.ops.Add(1)
			}
			return err
		}
		p -= o.weight
	}
	return nil
}

// davPut writes a new file, or replaces one, through WebDAV.
func (c *client) davPut() error {
	name := c.pick(false)
	if name == "" || c.rnd.IntN(3) > 0 {
		name = c.newName("d")
	}
	seed, size := c.rnd.Uint64(), c.size()
	sum, _ := sumOf(content(seed, size))
	err := c.do(req{kind: "dav PUT", door: "dav",
		build: func(base string) (*http.Request, error) {
			r, err := http.NewRequest(http.MethodPut, c.davURL(base, name), content(seed, size))
			r.ContentLength = size
			return r, err
		},
		handle: func(resp *http.Response, _ bool) error {
			return want(resp, "dav PUT", http.StatusCreated, http.StatusNoContent)
		}})
	if err != nil {
		return err
	}
	c.h.n.bytesUp.Add(size)
	f := c.files[name]
	if f == nil {
		f = &file{}
		c.files[name] = f
	}
	f.sha, f.size = sum, size
	return nil
}

func (c *client) davGet() error {
	name := c.pick(false)
	if name == "" {
		return c.davPut()
	}
	return c.do(req{kind: "dav GET", door: "dav",
		build: func(base string) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, c.davURL(base, name), nil)
		},
		handle: func(resp *http.Response, _ bool) error {
			if err := want(resp, "dav GET "+name, http.StatusOK); err != nil {
				return err
			}
			sum, err := readSum(resp)
			if err == nil {
				c.h.n.bytesDown.Add(c.files[name].size)
				c.verify("dav GET", name, sum)
			}
			return err
		}})
}

// davPropfind lists the folder and checks that every file the client
// wrote is listed with its size.
func (c *client) davPropfind() error {
	body := `<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getcontentlength/></prop></propfind>`
	return c.do(req{kind: "dav PROPFIND", door: "dav",
		build: func(base string) (*http.Request, error) {
			r, err := http.NewRequest("PROPFIND", base+"/dav/"+c.acct.name+"/", strings.NewReader(body))
			if err == nil {
				r.Header.Set("Depth", "1")
				r.Header.Set("Content-Type", "application/xml")
			}
			return r, err
		},
		handle: func(resp *http.Response, _ bool) error {
			if err := want(resp, "dav PROPFIND", http.StatusMultiStatus); err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("%w: %v", errRetry, err)
			}
			for name, f := range c.files {
				if !bytes.Contains(b, []byte("/"+name+"<")) ||
					!bytes.Contains(b, []byte(">"+strconv.FormatInt(f.size, 10)+"<")) {
					c.h.n.mismatches.Add(1)
					c.h.t.Errorf("client %d: PROPFIND does not list %s with %d bytes", c.id, name, f.size)
				}
			}
			return nil
		}})
}

// davMove renames a file. A retried MOVE whose first attempt went through
// finds no source (404); the final check confirms the new name.
func (c *client) davMove() error {
	name := c.pick(false)
	if name == "" {
		return c.davPut()
	}
	to := c.newName("m")
	err := c.do(req{kind: "dav MOVE", door: "dav",
		build: func(base string) (*http.Request, error) {
			r, err := http.NewRequest("MOVE", c.davURL(base, name), nil)
			if err == nil {
				r.Header.Set("Destination", c.davURL(base, to))
				r.Header.Set("Overwrite", "F")
			}
			return r, err
		},
		handle: func(resp *http.Response, ambiguous bool) error {
			if ambiguous && resp.StatusCode == http.StatusNotFound {
				return nil
			}
			return want(resp, "dav MOVE", http.StatusCreated)
		}})
	if err != nil {
		return err
	}
	c.files[to] = c.files[name]
	delete(c.files, name)
	return nil
}

// davDelete archives a file.
func (c *client) davDelete() error {
	name := c.pick(false)
	if name == "" || len(c.files) < 4 {
		return c.davPut()
	}
	err := c.do(req{kind: "dav DELETE", door: "dav",
		build: func(base string) (*http.Request, error) {
			return http.NewRequest(http.MethodDelete, c.davURL(base, name), nil)
		},
		handle: func(resp *http.Response, ambiguous bool) error {
			if ambiguous && resp.StatusCode == http.StatusNotFound {
				return nil
			}
			return want(resp, "dav DELETE", http.StatusNoContent)
		}})
	if err == nil {
		delete(c.files, name)
	}
	return err
}

// tusUpload sends a file in 256 KiB PATCHes. A PATCH the killed instance
// dropped is resumed on the other one from the offset a HEAD reports.
func (c *client) tusUpload() error {
	name := c.newName("t")
	seed := c.rnd.Uint64()
	size := 256<<10 + c.rnd.Int64N(2<<20)
	sum, _ := sumOf(content(seed, size))
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	var loc string
	err := c.do(req{kind: "tus POST", door: "tus",
		build: func(base string) (*http.Request, error) {
			r, err := http.NewRequest(http.MethodPost, base+"/uploads/", nil)
			if err == nil {
				r.Header.Set("Tus-Resumable", "1.0.0")
				r.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
				r.Header.Set("Upload-Metadata", "filename "+b64(name)+",folder "+b64("/"+c.acct.name))
			}
			return r, err
		},
		handle: func(resp *http.Response, _ bool) error {
			if err := want(resp, "tus POST", http.StatusCreated); err != nil {
				return err
			}
			u, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || u.Path == "" {
				return fmt.Errorf("tus POST: bad Location %q", resp.Header.Get("Location"))
			}
			loc = u.Path
			return nil
		}})
	if err != nil {
		return err
	}
	const chunk = 256 << 10
	offset := int64(0)
	resumed := false
	for offset < size {
		n := min(chunk, size-offset)
		off := offset
		err := c.do(req{kind: "tus PATCH", door: "tus", retry423: true,
			build: func(base string) (*http.Request, error) {
				body := content(seed, off+n)
				io.CopyN(io.Discard, body, off)
				r, err := http.NewRequest(http.MethodPatch, base+loc, body)
				if err == nil {
					r.ContentLength = n
					r.Header.Set("Tus-Resumable", "1.0.0")
					r.Header.Set("Upload-Offset", strconv.FormatInt(off, 10))
					r.Header.Set("Content-Type", "application/offset+octet-stream")
				}
				return r, err
			},
			handle: func(resp *http.Response, ambiguous bool) error {
				if ambiguous && resp.StatusCode == http.StatusConflict {
					return nil // the dropped PATCH got further; HEAD tells where
				}
				if resp.StatusCode == http.StatusBadRequest {
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
					if bytes.Contains(b, []byte("ERR_UPLOAD_INTERRUPTED")) {
						// Nobody else touched this upload. Known issue (see
						// RELIABILITY.md): resumed from where HEAD says.
						c.h.n.interrupted.Add(1)
						c.h.known("tus PATCH interrupted with no other request on the upload", resp.Header.Get("X-Request-Id"))
						return nil
					}
					return fmt.Errorf("tus PATCH: got %s: %s", resp.Status, b)
				}
				if err := want(resp, "tus PATCH", http.StatusNoContent); err != nil {
					return err
				}
				offset, _ = strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
				return nil
			}})
		if err != nil {
			return err
		}
		if offset == off+n {
			continue
		}
		// A PATCH was dropped or refused: ask where the upload stands.
		resumed = true
		err = c.do(req{kind: "tus HEAD", door: "tus", retry423: true,
			build: func(base string) (*http.Request, error) {
				r, err := http.NewRequest(http.MethodHead, base+loc, nil)
				if err == nil {
					r.Header.Set("Tus-Resumable", "1.0.0")
				}
				return r, err
			},
			handle: func(resp *http.Response, _ bool) error {
				if err := want(resp, "tus HEAD", http.StatusOK); err != nil {
					return err
				}
				offset, err = strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
				return err
			}})
		if err != nil {
			return err
		}
	}
	if resumed {
		c.h.n.tusResumed.Add(1)
		// A tus client whose HEAD says the offset is the length is done.
		// Check that the file is there: an instance killed after the
		// last chunk was durable but before the upload was published
		// would leave it complete by HEAD and absent from the store.
		var status int
		err := c.do(req{kind: "dav HEAD", door: "dav",
			build: func(base string) (*http.Request, error) {
				return http.NewRequest(http.MethodHead, c.davURL(base, name), nil)
			},
			handle: func(resp *http.Response, _ bool) error { status = resp.StatusCode; return nil }})
		if err != nil {
			return err
		}
		if status == http.StatusNotFound {
			// Known issue (see RELIABILITY.md): the client is done by the
			// protocol, the store has no file. Not added to the files
			// the client checks at the end.
			c.h.n.tusStuck.Add(1)
			c.h.known(fmt.Sprintf("tus upload %s (%s, %d bytes) is complete by HEAD after a dropped PATCH, "+
				"but the file never appeared", loc, name, size), fmt.Sprintf("soak%02d-%06d-1", c.id, c.seq))
			return nil
		}
	}
	c.h.n.bytesUp.Add(size)
	c.files[name] = &file{sha: sum, size: size}
	return nil
}

// apiFile is the part of the API's FileMetadata the soak reads.
type apiFile struct {
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Tokens []struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	} `json:"tokens"`
}

// apiUpload creates a file through POST /api/v1/files and keeps its
// full token. When a dropped attempt did create it, the retry gets 409;
// the file is then known by name only (its id and token were in the
// lost answer).
func (c *client) apiUpload() error {
	name := c.newName("a")
	seed, size := c.rnd.Uint64(), c.size()
	sum, _ := sumOf(content(seed, size))
	var got apiFile
	created := false
	err := c.do(req{kind: "api POST files", door: "api",
		build: func(base string) (*http.Request, error) {
			q := url.Values{"name": {name}, "folder": {"/" + c.acct.name}}
			r, err := http.NewRequest(http.MethodPost, base+"/api/v1/files?"+q.Encode(), content(seed, size))
			if err == nil {
				r.ContentLength = size
				r.Header.Set("Content-Type", "application/octet-stream")
			}
			return r, err
		},
		handle: func(resp *http.Response, ambiguous bool) error {
			if ambiguous && resp.StatusCode == http.StatusConflict {
				return nil
			}
			if err := want(resp, "api POST files", http.StatusCreated); err != nil {
				return err
			}
			created = true
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				return fmt.Errorf("%w: %v", errRetry, err)
			}
			return nil
		}})
	if err != nil {
		return err
	}
	f := &file{sha: sum, size: size}
	if created {
		if got.SHA256 != sum {
			c.h.n.mismatches.Add(1)
			c.h.t.Errorf("client %d: POST /api/v1/files %s: sha256 %s, sent %s", c.id, name, got.SHA256, sum)
		}
		f.id = got.ID
		if len(got.Tokens) > 0 && got.Tokens[0].Token != "" {
			f.token, f.minted = got.Tokens[0].Token, time.Now()
			c.h.sec.addCredential("file token", "fgt", f.token)
			c.h.sec.addAuthorization("Bearer " + f.token)
		}
	}
	c.files[name] = f
	c.h.n.bytesUp.Add(size)
	return nil
}

// apiDownload reads a file's content, with the client's own credentials
// or with the file's token.
func (c *client) apiDownload() error {
	name := c.pick(true)
	if name == "" {
		return c.apiUpload()
	}
	f := c.files[name]
	r := req{kind: "api GET content", door: "api",
		build: func(base string) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, base+"/api/v1/files/"+f.id+"/content", nil)
		},
		handle: func(resp *http.Response, _ bool) error {
			if err := want(resp, "api GET content", http.StatusOK); err != nil {
				return err
			}
			sum, err := readSum(resp)
			if err == nil {
				c.h.n.bytesDown.Add(f.size)
				c.verify("api GET content", name, sum)
			}
			return err
		}}
	if f.token != "" && c.rnd.IntN(2) == 0 {
		id, _, _ := strings.Cut(strings.TrimPrefix(f.token, "fgt_"), "_")
		r.kind, r.auth, r.subject = "api GET content (token)", "Bearer "+f.token, "token:"+id
		handle := r.handle
		r.handle = func(resp *http.Response, ambiguous bool) error {
			// A token minted on one instance reaches the other's
			// authorizer at its next policy poll; until then the other
			// refuses it. Counted and reported, not hidden.
			if resp.StatusCode == http.StatusForbidden && time.Since(f.minted) < 5*time.Second {
				c.h.n.stale403.Add(1)
				c.h.known("403 to a file token minted moments before on the other instance", resp.Header.Get("X-Request-Id"))
				return errAgain
			}
			return handle(resp, ambiguous)
		}
	}
	return c.do(r)
}

// apiMeta reads a random file's metadata and checks its SHA-256.
func (c *client) apiMeta() error {
	name := c.pick(true)
	if name == "" {
		return c.apiUpload()
	}
	return c.metaOf(name)
}

func (c *client) metaOf(name string) error {
	f := c.files[name]
	return c.do(req{kind: "api GET file", door: "api",
		build: func(base string) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, base+"/api/v1/files/"+f.id, nil)
		},
		handle: func(resp *http.Response, _ bool) error {
			if err := want(resp, "api GET file", http.StatusOK); err != nil {
				return err
			}
			var m apiFile
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				return fmt.Errorf("%w: %v", errRetry, err)
			}
			c.verify("api metadata", name, m.SHA256)
			return nil
		}})
}

// apiPatch sets a file's title and tags.
func (c *client) apiPatch() error {
	name := c.pick(true)
	if name == "" {
		return c.apiUpload()
	}
	f := c.files[name]
	body := fmt.Sprintf(`{"title":"soak %d","tags":["soak","c%02d"]}`, c.seq, c.id)
	return c.do(req{kind: "api PATCH file", door: "api",
		build: func(base string) (*http.Request, error) {
			r, err := http.NewRequest(http.MethodPatch, base+"/api/v1/files/"+f.id, strings.NewReader(body))
			if err == nil {
				r.Header.Set("Content-Type", "application/json")
			}
			return r, err
		},
		handle: func(resp *http.Response, _ bool) error {
			return want(resp, "api PATCH file", http.StatusOK)
		}})
}

// apiLink signs a link to a file and reads the file through it without
// credentials.
func (c *client) apiLink() error {
	name := c.pick(true)
	if name == "" {
		return c.apiUpload()
	}
	f := c.files[name]
	var link struct {
		Path string `json:"path"`
	}
	err := c.do(req{kind: "api POST links", door: "api",
		build: func(base string) (*http.Request, error) {
			r, err := http.NewRequest(http.MethodPost, base+"/api/v1/files/"+f.id+"/links", strings.NewReader(`{"expiresIn":"10m"}`))
			if err == nil {
				r.Header.Set("Content-Type", "application/json")
			}
			return r, err
		},
		handle: func(resp *http.Response, _ bool) error {
			if err := want(resp, "api POST links", http.StatusCreated); err != nil {
				return err
			}
			if err := json.NewDecoder(resp.Body).Decode(&link); err != nil {
				return fmt.Errorf("%w: %v", errRetry, err)
			}
			return nil
		}})
	if err != nil {
		return err
	}
	u, err := url.Parse(link.Path)
	if err != nil {
		return err
	}
	c.h.sec.add("signed-link signature", u.Query().Get("signature"))
	return c.do(req{kind: "api GET link", door: "api", auth: "-", subject: "link:" + u.Query().Get("key"),
		build: func(base string) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, base+link.Path, nil)
		},
		handle: func(resp *http.Response, _ bool) error {
			if err := want(resp, "api GET link", http.StatusOK); err != nil {
				return err
			}
			sum, err := readSum(resp)
			if err == nil {
				c.h.n.bytesDown.Add(f.size)
				c.verify("signed link", name, sum)
			}
			return err
		}})
}
