package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const uploadUsage = `Usage: filegate upload FILE... --to URL/FOLDER [flags]

Uploads files through the tus door, resumably: an upload cut off by a
dropped link, a crash or Ctrl-C continues where it stopped the next time
the same command runs for the same file (same path, size and modification
time). The folder is a path as WebDAV shows it; a URL whose path starts
with /dav/ is taken as a WebDAV URL.

  filegate upload scan.dcm --to https://files.example.org/dav/scans/ct

Credentials: --user NAME with the password on standard input
(--password-stdin), or an API key or token in FILEGATE_API_KEY or
FILEGATE_TOKEN.

Flags:
`

// uploadCmd is "filegate upload".
func uploadCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("upload", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, uploadUsage)
		fs.PrintDefaults()
	}
	to := fs.String("to", envString("upload-to", ""), "server URL and folder, e.g. http://127.0.0.1:8080/dav/scans [FILEGATE_UPLOAD_TO]")
	user := fs.String("user", envString("user", ""), "user name for password login [FILEGATE_USER]")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	chunk := fs.Int64("chunk-size", 8<<20, "bytes per PATCH request")
	noSum := fs.Bool("no-checksum", false, "do not send Upload-Checksum (sha256) with each chunk")
	quiet := fs.Bool("quiet", false, "no progress output")
	statePath := fs.String("state", "", "file remembering unfinished uploads (default in the user cache folder)")
	retries := fs.Int("retries", 10, "consecutive failed attempts before giving up on a file")
	caCert := fs.String("ca-cert", envString("ca-cert", ""),
		"PEM file of certificate authorities to trust besides the system's, for a server with a private certificate [FILEGATE_CA_CERT]")
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 || *to == "" {
		fs.Usage()
		return errors.New("upload needs at least one FILE and --to URL/FOLDER")
	}
	if *chunk < 1 {
		return errors.New("--chunk-size must be positive")
	}
	endpoint, folder, err := parseUploadTarget(*to)
	if err != nil {
		return err
	}
	auth, err := uploadAuth(*user, *pwStdin, stdin)
	if err != nil {
		return err
	}
	if *statePath == "" {
		if *statePath, err = defaultStatePath(); err != nil {
			return err
		}
	}
	var roots *x509.CertPool
	if *caCert != "" {
		if roots, err = certPool(*caCert); err != nil {
			return err
		}
	}
	c := &tusClient{
		endpoint: endpoint, folder: folder, auth: auth, chunk: *chunk, checksum: !*noSum,
		retries: *retries, state: &uploadState{path: *statePath}, out: stdout, roots: roots,
	}
	if !*quiet {
		c.progress = newProgress(stderr)
	}
	for _, f := range files {
		if err := c.uploadFile(ctx, f); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

// parseUploadTarget splits --to into the tus endpoint and the folder path.
func parseUploadTarget(to string) (endpoint, folder string, err error) {
	u, err := url.Parse(to)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", fmt.Errorf("--to must be an http(s) URL with a folder path, not %q", to)
	}
	p := u.Path
	for _, door := range []string{"/dav", "/uploads"} {
		if p == door || strings.HasPrefix(p, door+"/") {
			p = strings.TrimPrefix(p, door)
			break
		}
	}
	if p == "" {
		p = "/"
	}
	return u.Scheme + "://" + u.Host + "/uploads/", p, nil
}

// uploadAuth returns the Authorization header value.
func uploadAuth(user string, pwStdin bool, stdin io.Reader) (string, error) {
	switch {
	case user != "":
		if !pwStdin {
			return "", errors.New("--user needs --password-stdin (or use FILEGATE_API_KEY)")
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", errors.New("no password on standard input")
		}
		pw := strings.TrimRight(line, "\r\n")
		req := &basicAuth{user: user, pass: pw}
		return req.header(), nil
	case os.Getenv("FILEGATE_API_KEY") != "":
		return "Bearer " + os.Getenv("FILEGATE_API_KEY"), nil
	case os.Getenv("FILEGATE_TOKEN") != "":
		return "Bearer " + os.Getenv("FILEGATE_TOKEN"), nil
	}
	return "", errors.New("no credentials: give --user NAME --password-stdin, or set FILEGATE_API_KEY or FILEGATE_TOKEN")
}

func defaultStatePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder for the upload state (give --state): %w", err)
	}
	return filepath.Join(dir, "filegate", "uploads.json"), nil
}

// uploadState remembers the URLs of unfinished uploads, keyed by what
// identifies one attempt at one file: its path, size and modification
// time, and where it goes.
type uploadState struct {
	path string
}

type stateEntry struct {
	URL     string    `json:"url"`
	Started time.Time `json:"started"`
}

func stateKey(abs string, size int64, mtime time.Time, endpoint, folder string) string {
	return strings.Join([]string{abs, strconv.FormatInt(size, 10), strconv.FormatInt(mtime.UnixNano(), 10), endpoint, folder}, "|")
}

func (s *uploadState) load() map[string]stateEntry {
	m := map[string]stateEntry{}
	b, err := os.ReadFile(s.path)
	if err == nil {
		json.Unmarshal(b, &m) // a damaged state file only costs a restart
	}
	return m
}

func (s *uploadState) get(key string) (stateEntry, bool) {
	e, ok := s.load()[key]
	return e, ok
}

// set records (or with an empty URL forgets) an upload, replacing the
// file in one rename so a crash never leaves it half written.
func (s *uploadState) set(key, u string) error {
	m := s.load()
	if u == "" {
		delete(m, key)
	} else {
		m[key] = stateEntry{URL: u, Started: time.Now().UTC()}
	}
	// Forget entries nobody came back for in a long while.
	for k, e := range m {
		if time.Since(e.Started) > 30*24*time.Hour {
			delete(m, k)
		}
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	tmp := s.path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}

// certPool is the system's certificate authorities plus those in the PEM
// file path. It returns an error naming the file when it cannot be read
// or holds no certificate.
func certPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca-cert: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-cert: %s holds no PEM certificate", path)
	}
	return pool, nil
}
