package main

import (
	"math"
	"slices"
	"time"
)

// summary is what a table cell shows for one target and metric across
// rounds.
type summary struct {
	Median, Min, Max float64
	N                int
}

// summarize returns the median, min and max of vs; N is 0 for no values.
func summarize(vs []float64) summary {
	if len(vs) == 0 {
		return summary{}
	}
	return summary{Median: median(vs), Min: slices.Min(vs), Max: slices.Max(vs), N: len(vs)}
}

// median of vs, the mean of the two middle values for an even count; NaN
// for none. vs is not modified.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of ds, the
// smallest value at or above which p% of the samples fall; 0 for none.
// Nearest rank never invents a latency that no request had.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = max(1, min(rank, len(s)))
	return s[rank-1]
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mbps is decimal megabytes per second, as dd and the anchors report.
func mbps(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / 1e6 / d.Seconds()
}

// perSec is operations per second.
func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// rotate returns the round-th rotation of xs, so each target leads a round
// in turn and none always runs on a cold or a warm machine.
func rotate[T any](xs []T, round int) []T {
	if len(xs) == 0 {
		return nil
	}
	k := round % len(xs)
	return append(slices.Clone(xs[k:]), xs[:k]...)
}
