package main

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseQuota(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  string // a part of the error; "" for none
	}{
		{"0", 0, ""},
		{"none", 0, ""},
		{"NONE", 0, ""},
		{"0GiB", 0, ""},
		{"1048576", 1 << 20, ""},
		{" 42 ", 42, ""},
		{"42B", 42, ""},
		{"500MiB", 500 << 20, ""},
		{"2GiB", 2 << 30, ""},
		{"2gib", 2 << 30, ""},
		{"1.5GB", 1_500_000_000, ""},
		{"1.5 GB", 1_500_000_000, ""},
		{"10G", 10 << 30, ""},
		{"10k", 10 << 10, ""},
		{"10KB", 10_000, ""},
		{"1.5GiB", 3 << 29, ""},
		{"0.3KiB", 307, ""}, // 307.2: the fraction of a byte is dropped
		{"1TB", 1_000_000_000_000, ""},
		{"1T", 1 << 40, ""},
		{"7EiB", 7 << 60, ""},
		{"9223372036854775807", math.MaxInt64, ""},
		{"9223372036854775808", 0, "more than the largest"},
		{"8EiB", 0, "more than the largest"},
		{"10EB", 0, "more than the largest"},
		{"99999999999999999999999999999999PB", 0, "more than the largest"},
		{"-1", 0, "negative"},
		{"-5GiB", 0, "negative"},
		{"", 0, "not a size"},
		{"GiB", 0, "not a size"},
		{"lots", 0, "not a size"},
		{"1.2.3", 0, "not a size"},
		{".5G", 0, "not a size"},
		{"5.", 0, "not a size"},
		{"+5", 0, "not a size"},
		{"1e9", 0, "not a size"},
		{"0x10", 0, "not a size"},
		{"1/2", 0, "not a size"},
		{"10X", 0, "unknown unit"},
		{"10Mbit", 0, "unknown unit"},
		{"5 GiB extra", 0, "not a size"},
	} {
		got, err := parseQuota(c.in)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("parseQuota(%q) = %d, %v; want %d", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("parseQuota(%q) = %d, %v; want an error saying %q", c.in, got, err, c.err)
		}
	}
	if _, err := parseQuota("-1"); !errors.Is(err, errNegativeQuota) {
		t.Errorf("a negative size: %v", err)
	}
}
