package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/filegate/filegate/gateway"
)

const policyUsage = `usage:
  filegate policy list [--ptype p|g|g2] [--subject S] [--limit N]
  filegate policy add [--force] LINE...      e.g. add g2 group:staff level:read /reports
  filegate policy remove LINE...             or: remove "g, user:bob, group:staff" "p, ..."
  filegate policy what-if add|remove LINE...
  filegate policy explain SUBJECT ACTION OBJECT   (OBJECT: a path, a node id or *)
  filegate policy import [--replace] [--force] FILE|-
  filegate policy export [FILE]
With --server URL (FILEGATE_SERVER) it talks to a running server with the
admin API key in FILEGATE_API_KEY; otherwise it works straight on the
database named by the store flags, with the same checks and audit trail.`

// policyCmd runs `filegate policy`, through the admin API of a server or
// of the database itself (gateway.LocalAdmin), so both paths share the
// validation, guardrails, what-if and audit.
func policyCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(policyUsage)
	}
	fs := newFlagSet("policy "+args[0], stderr)
	var sf storeFlags
	sf.register(fs)
	server := fs.String("server", envString("server", ""), "URL of a running filegate server [FILEGATE_SERVER]")
	force := fs.Bool("force", false, "apply a change the guardrails call risky (public or store-wide access)")
	replace := fs.Bool("replace", false, "import: replace the whole policy instead of adding to it")
	ptype := fs.String("ptype", "", "list: only lines of this type (p, g, g2)")
	subject := fs.String("subject", "", "list: only lines whose first value is this subject")
	limit := fs.Int("limit", 1000, "list: at most this many lines")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	c, err := newAdminClient(ctx, &sf, *server, stderr)
	if err != nil {
		return err
	}
	defer c.close()
	switch args[0] {
	case "list":
		q := url.Values{"ptype": {*ptype}, "v0": {*subject}, "limit": {fmt.Sprint(*limit)}}
		return policyList(ctx, c, q, stdout)
	case "add", "remove":
		lines, err := parseLines(pos)
		if err != nil {
			return err
		}
		return policyChange(ctx, c, args[0], lines, *force, stdout)
	case "what-if":
		if len(pos) < 2 || (pos[0] != "add" && pos[0] != "remove") {
			return errors.New("usage: filegate policy what-if add|remove LINE...")
		}
		lines, err := parseLines(pos[1:])
		if err != nil {
			return err
		}
		return policyWhatIf(ctx, c, pos[0], lines, stdout)
	case "explain":
		if len(pos) != 3 {
			return errors.New("usage: filegate policy explain SUBJECT ACTION OBJECT")
		}
		return policyExplain(ctx, c, pos[0], pos[1], pos[2], stdout)
	case "import":
		if len(pos) != 1 {
			return errors.New("usage: filegate policy import [--replace] [--force] FILE|-")
		}
		return policyImport(ctx, c, pos[0], *replace, *force, stdin, stdout)
	case "export":
		if len(pos) > 1 {
			return errors.New("usage: filegate policy export [FILE]")
		}
		return policyExport(ctx, c, pos, stdout)
	}
	return fmt.Errorf("unknown policy command %q\n%s", args[0], policyUsage)
}

// parseLines reads policy lines from arguments: each argument holding a
// comma is one line ("g, user:bob, group:staff"), otherwise all the
// arguments are the fields of one line.
func parseLines(args []string) ([][]string, error) {
	if len(args) == 0 {
		return nil, errors.New("give a policy line, e.g. g2 group:staff level:read /reports")
	}
	split := func(s, sep string) []string {
		var out []string
		for _, f := range strings.Split(s, sep) {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
		return out
	}
	if !strings.Contains(strings.Join(args, " "), ",") {
		return [][]string{split(strings.Join(args, " "), " ")}, nil
	}
	var lines [][]string
	for _, a := range args {
		lines = append(lines, split(a, ","))
	}
	return lines, nil
}

// adminClient sends admin API requests, to a server or in-process.
type adminClient struct {
	h     http.Handler // in-process, when no server is named
	base  string
	key   string
	http  *http.Client
	close func()
}

func newAdminClient(ctx context.Context, sf *storeFlags, server string, stderr io.Writer) (*adminClient, error) {
	if server != "" {
		key := os.Getenv("FILEGATE_API_KEY")
		if key == "" {
			return nil, errors.New("with --server, put an admin's API key in FILEGATE_API_KEY")
		}
		return &adminClient{base: strings.TrimRight(server, "/"), key: key,
			http: &http.Client{Timeout: 5 * time.Minute}, close: func() {}}, nil
	}
	o, err := openForAdmin(ctx, sf, stderr)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := gateway.New(gateway.Config{}, gateway.Deps{Store: o.store, Authz: o.authz, Log: log})
	if err != nil {
		o.Close()
		return nil, err
	}
	actor := "cli"
	if u, err := user.Current(); err == nil {
		actor = "cli:" + u.Username
	}
	h, err := srv.LocalAdmin(gateway.AdminDeps{Policy: o.authz}, actor)
	if err != nil {
		o.Close()
		return nil, err
	}
	return &adminClient{h: h, close: o.Close}, nil
}

// apiError is the admin API's error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Risks   []struct {
			Line   []string `json:"line"`
			Reason string   `json:"reason"`
		} `json:"risks"`
	} `json:"error"`
}

func errorOf(status int, body []byte) error {
	var e apiError
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		return fmt.Errorf("server answered %d: %s", status, bytes.TrimSpace(body))
	}
	msg := e.Error.Message
	for _, r := range e.Error.Risks {
		msg += fmt.Sprintf("\n  %s: %s", strings.Join(r.Line, ", "), r.Reason)
	}
	if e.Error.Code == "unsafe" {
		msg += "\n(use --force to apply it anyway)"
	}
	return errors.New(msg)
}

// call sends one request; a 2xx body goes to out (streamed), anything
// else becomes an error carrying the API's message.
func (c *adminClient) call(ctx context.Context, method, path string, body io.Reader, ctype string, out io.Writer) error {
	if c.h != nil {
		req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, body)
		if err != nil {
			return err
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := &recorder{header: http.Header{}, out: out}
		c.h.ServeHTTP(rec, req)
		if rec.status >= 300 {
			return errorOf(rec.status, rec.buf.Bytes())
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return errorOf(resp.StatusCode, b)
	}
	_, err = io.Copy(out, resp.Body)
	return err
}

// callJSON sends in as JSON (when not nil) and decodes the answer into out.
func (c *adminClient) callJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	var buf bytes.Buffer
	if err := c.call(ctx, method, path, body, ctype, &buf); err != nil {
		return err
	}
	return json.Unmarshal(buf.Bytes(), out)
}

// recorder is the in-process response: a success streams to out, a
// failure is kept for its message.
type recorder struct {
	header http.Header
	status int
	buf    bytes.Buffer
	out    io.Writer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.status < 300 && r.out != nil {
		return r.out.Write(b)
	}
	return r.buf.Write(b)
}

func joinLine(l []string) string { return strings.Join(l, ", ") }

func policyList(ctx context.Context, c *adminClient, q url.Values, stdout io.Writer) error {
	var out struct {
		Total int `json:"total"`
		Rules []struct {
			Line    []string `json:"line"`
			Builtin bool     `json:"builtin"`
		} `json:"rules"`
		Paths map[string]string `json:"paths"`
	}
	if err := c.callJSON(ctx, "GET", "/api/v1/policies?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	for _, r := range out.Rules {
		note := ""
		if r.Builtin {
			note = "  # built in"
		}
		id := ""
		switch l := r.Line; {
		case len(l) == 4 && l[0] == "p" && l[2] != "*":
			id = l[2]
		case len(l) == 4 && l[0] == "g2":
			id = l[3]
		}
		if p := out.Paths[id]; p != "" {
			note = "  # " + p
		}
		fmt.Fprintln(stdout, joinLine(r.Line)+note)
	}
	if out.Total > len(out.Rules) {
		fmt.Fprintf(stdout, "# %d of %d lines shown (--limit)\n", len(out.Rules), out.Total)
	}
	return nil
}

func policyChange(ctx context.Context, c *adminClient, op string, lines [][]string, force bool, stdout io.Writer) error {
	body := map[string]any{op: lines, "force": force}
	var out struct {
		Revision int64      `json:"revision"`
		Before   [][]string `json:"before"`
		After    [][]string `json:"after"`
		Risks    []struct {
			Line   []string `json:"line"`
			Reason string   `json:"reason"`
		} `json:"forced_risks"`
	}
	if err := c.callJSON(ctx, "POST", "/api/v1/policies", body, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied (policy revision %d)\n", out.Revision)
	for _, l := range out.Before {
		fmt.Fprintln(stdout, "  before:", joinLine(l))
	}
	for _, l := range out.After {
		fmt.Fprintln(stdout, "  after: ", joinLine(l))
	}
	for _, r := range out.Risks {
		fmt.Fprintf(stdout, "  forced: %s: %s\n", joinLine(r.Line), r.Reason)
	}
	return nil
}

func policyWhatIf(ctx context.Context, c *adminClient, op string, lines [][]string, stdout io.Writer) error {
	var out struct {
		Diffs []struct {
			Subject string `json:"subject"`
			Action  string `json:"action"`
			Object  string `json:"object"`
			Path    string `json:"path"`
			Before  struct {
				Allowed bool `json:"allowed"`
			} `json:"before"`
			After struct {
				Allowed bool `json:"allowed"`
			} `json:"after"`
		} `json:"diffs"`
		Refusal *struct {
			Message string `json:"message"`
		} `json:"refusal"`
		Sample struct {
			Subjects  []string `json:"subjects"`
			Objects   []string `json:"objects"`
			Queries   int      `json:"queries"`
			Truncated bool     `json:"truncated"`
		} `json:"sample"`
	}
	if err := c.callJSON(ctx, "POST", "/api/v1/policies/what-if", map[string]any{op: lines}, &out); err != nil {
		return err
	}
	capped := ""
	if out.Sample.Truncated {
		capped = ", sample capped"
	}
	fmt.Fprintf(stdout, "%d decision(s) would change (%d checked over %d subjects and %d objects%s); nothing was applied\n",
		len(out.Diffs), out.Sample.Queries, len(out.Sample.Subjects), len(out.Sample.Objects), capped)
	word := map[bool]string{true: "allowed", false: "denied"}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if len(out.Diffs) > 0 {
		fmt.Fprintln(tw, "SUBJECT\tACTION\tOBJECT\tBEFORE\tAFTER")
	}
	for _, d := range out.Diffs {
		where := d.Path
		if where == "" {
			where = d.Object
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Subject, d.Action, where, word[d.Before.Allowed], word[d.After.Allowed])
	}
	tw.Flush()
	if out.Refusal != nil {
		fmt.Fprintln(stdout, "the server would refuse it:", out.Refusal.Message)
	}
	return nil
}

func policyExplain(ctx context.Context, c *adminClient, sub, act, obj string, stdout io.Writer) error {
	var out struct {
		Subject string     `json:"subject"`
		Action  string     `json:"action"`
		Object  string     `json:"object"`
		Path    string     `json:"path"`
		Allowed bool       `json:"allowed"`
		Rule    []string   `json:"rule"`
		Via     [][]string `json:"via"`
		Roles   []string   `json:"roles"`
	}
	q := url.Values{"subject": {sub}, "action": {act}, "object": {obj}}
	if err := c.callJSON(ctx, "GET", "/api/v1/policies/explain?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	where := out.Object
	if out.Path != "" {
		where = out.Path + " (" + out.Object + ")"
	}
	verdict := "denied"
	if out.Allowed {
		verdict = "allowed"
	}
	fmt.Fprintf(stdout, "%s: %s %s %s\n", verdict, out.Subject, out.Action, where)
	if out.Allowed {
		fmt.Fprintln(stdout, "  rule:", joinLine(out.Rule))
	} else {
		fmt.Fprintln(stdout, "  no rule allows it (everything is denied by default)")
	}
	for _, l := range out.Via {
		fmt.Fprintln(stdout, "  via: ", joinLine(l))
	}
	fmt.Fprintln(stdout, "  groups and roles:", strings.Join(out.Roles, ", "))
	return nil
}

func policyImport(ctx context.Context, c *adminClient, file string, replace, force bool, stdin io.Reader, stdout io.Writer) error {
	r := stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	q := url.Values{"replace": {fmt.Sprint(replace)}, "force": {fmt.Sprint(force)}}
	var buf bytes.Buffer
	if err := c.call(ctx, "POST", "/api/v1/policies/import?"+q.Encode(), r, "text/csv", &buf); err != nil {
		return err
	}
	var out struct{ Read, Added, Removed int }
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d lines: %d added, %d removed\n", out.Read, out.Added, out.Removed)
	return nil
}

func policyExport(ctx context.Context, c *adminClient, pos []string, stdout io.Writer) error {
	if len(pos) == 0 || pos[0] == "-" {
		return c.call(ctx, "GET", "/api/v1/policies/export", nil, "", stdout)
	}
	f, err := os.Create(pos[0])
	if err != nil {
		return err
	}
	if err := c.call(ctx, "GET", "/api/v1/policies/export", nil, "", f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
