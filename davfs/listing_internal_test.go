package davfs

import (
	"testing"
	"time"
)

func TestParseDBTime(t *testing.T) {
	want := time.Date(2026, 11, 23, 9, 40, 53, 123456000, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2026-11-23 09:40:53.123456+00:00", want},
		{"2026-11-23 09:40:53.123456Z", want},
		{"2026-11-23T09:40:53.123456", want},
		{"2026-11-23 10:40:53.123456+01:00", want},
		{"2026-11-23 04:10:53.123456-05:30", want},
		{"2026-11-23 10:40:53.123456+01", want},
		{"2026-11-23 09:40:53", want.Truncate(time.Second)},
		{"2026-11-23", time.Time{}},
		{"2026-11-23 09:40:53 UTC", time.Time{}},
		{"not a time at all!!", time.Time{}},
	}
	for _, tt := range tests {
		if got := parseDBTime([]byte(tt.in)); !got.Equal(tt.want) {
			t.Errorf("parseDBTime(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseIfHeader(t *testing.T) {
	good := []string{
		"(<opaquelocktoken:a>)",
		`(<opaquelocktoken:a> ["etag"]) (Not <DAV:no-lock> ["x]y"])`,
		`<http://h/dav/a> (<opaquelocktoken:a>) </dav/b> (["e"])`,
		`(not<opaquelocktoken:a>)`,
	}
	for _, v := range good {
		if _, err := parseIf(v); err != nil {
			t.Errorf("parseIf(%q): %v", v, err)
		}
	}
	bad := []string{"", "()", "(<a>", "<http://h/a>", "(<a>) <http://h/b> (<c>)", "([])", "(<a b>)", "x", "(Not)", `(["unterminated)`}
	for _, v := range bad {
		if _, err := parseIf(v); err == nil {
			t.Errorf("parseIf(%q) accepted", v)
		}
	}
	h, _ := parseIf(`(<t1> [e]) (Not <t2>) (<DAV:no-lock>)`)
	if got := h.tokens(); len(got) != 2 || got[0] != "t1" || got[1] != "DAV:no-lock" || !h.offersTokens() {
		t.Fatalf("tokens = %v", got)
	}
}

func TestParseTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"": 0, "Infinite": 0, "Second-60": time.Minute, "Infinite, Second-4100000000": 0,
		"Second-4100000000": 4100000000 * time.Second, "Second-99999999999": MaxLockTimeout, "Bogus, Second-5": 5 * time.Second,
	} {
		got, err := parseTimeout(in)
		if err != nil || got != want {
			t.Errorf("parseTimeout(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"Second-", "Second-x", "forever", "Second--1"} {
		if _, err := parseTimeout(in); err == nil {
			t.Errorf("parseTimeout(%q) accepted", in)
		}
	}
	if capTimeout(0) != MaxLockTimeout || capTimeout(2*time.Hour) != MaxLockTimeout || capTimeout(time.Minute) != time.Minute {
		t.Fatal("capTimeout")
	}
}
