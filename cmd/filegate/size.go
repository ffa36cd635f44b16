package main

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
)

// sizeUnits maps the unit suffixes parseQuota accepts, lower-cased, to
// their bytes. "KiB", "MiB"… are binary (IEC) and "KB", "MB"… decimal
// (SI), as their standards say. A bare letter ("10G") is binary, as with
// truncate, dd and sort -S, since it is on a Linux command line that
// admins type these.
var sizeUnits = func() map[string]*big.Rat {
	units := map[string]*big.Rat{"": big.NewRat(1, 1), "b": big.NewRat(1, 1)}
	bin, dec := int64(1), int64(1)
	for _, p := range "kmgtpe" {
		bin, dec = bin<<10, dec*1000
		units[string(p)] = new(big.Rat).SetInt64(bin)
		units[string(p)+"ib"] = new(big.Rat).SetInt64(bin)
		units[string(p)+"b"] = new(big.Rat).SetInt64(dec)
	}
	return units
}()

// sizePattern is a plain decimal number and a unit, nothing else: no sign,
// exponent, fraction bar or hex, which big.Rat would otherwise take.
var sizePattern = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)$`)

var errNegativeQuota = errors.New("a quota cannot be negative")

// parseQuota reads the SIZE of `filegate user quota`: plain bytes, or a
// number with a unit from sizeUnits (case does not matter), or "none";
// 0 and "none" mean no quota. A fraction of a byte ("0.3KiB") is dropped.
func parseQuota(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "none") {
		return 0, nil
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("%w (%q)", errNegativeQuota, s)
	}
	m := sizePattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size: give bytes (1048576), a number and a unit (500MiB, 2GiB, 1.5GB, 10G) or none", s)
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q: use B, KiB, MiB, GiB, TiB, PiB, EiB (binary, also K, M, G…) or KB, MB, GB, TB, PB, EB (decimal)", s, m[2])
	}
	n, _ := new(big.Rat).SetString(m[1]) // the pattern admits only what SetString reads
	n.Mul(n, unit)
	b := new(big.Int).Quo(n.Num(), n.Denom())
	if !b.IsInt64() {
		return 0, fmt.Errorf("%q is more than the largest size, %d bytes (8 EiB)", s, int64(math.MaxInt64))
	}
	return b.Int64(), nil
}

// negativeArg matches an argument that is a negative number, which the
// flag package would take for an unknown flag and answer with a usage
// message instead of saying what is wrong.
var negativeArg = regexp.MustCompile(`^-[0-9.]`)
