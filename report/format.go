package report

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// humanDuration writes a duration in milliseconds the way people say it:
// 850 ms, 12.4 s, 3 min 05 s, 1 h 02 min.
func humanDuration(ms int64) string {
	neg := ""
	if ms < 0 {
		neg, ms = "−", -ms
	}
	switch {
	case ms < 1000:
		return fmt.Sprintf("%s%d ms", neg, ms)
	case ms < 10_000:
		return fmt.Sprintf("%s%.2f s", neg, float64(ms)/1000)
	case ms < 60_000:
		return fmt.Sprintf("%s%.1f s", neg, float64(ms)/1000)
	case ms < 3_600_000:
		return fmt.Sprintf("%s%d min %02d s", neg, ms/60_000, (ms%60_000)/1000)
	default:
		return fmt.Sprintf("%s%d h %02d min", neg, ms/3_600_000, (ms%3_600_000)/60_000)
	}
}

// clock writes an offset from the start of the run: +0:12.4, +1:02:03.0.
func clock(ms int64) string {
	sign := "+"
	if ms < 0 {
		sign, ms = "−", -ms
	}
	h, m := ms/3_600_000, (ms%3_600_000)/60_000
	s := float64(ms%60_000) / 1000
	if h > 0 {
		return fmt.Sprintf("%s%d:%02d:%04.1f", sign, h, m, s)
	}
	return fmt.Sprintf("%s%d:%04.1f", sign, m, s)
}

// axisTime labels a time-axis tick; step tells how precise it must be.
func axisTime(ms, step int64) string {
	if step < 1000 {
		return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64) + " s"
	}
	s := ms / 1000
	if s < 60 && step < 60_000 {
		return fmt.Sprintf("%d s", s)
	}
	if s < 3600 {
		return fmt.Sprintf("%d:%02d", s/60, s%60)
	}
	return fmt.Sprintf("%d:%02d:%02d", s/3600, (s%3600)/60, s%60)
}

// count writes an integer with thin-space thousands separators.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := ""
	if n < 0 {
		neg, s = "-", s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3*3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, "\u202f"...)
		}
		out = append(out, s[i])
	}
	return neg + string(out)
}

// rate writes a per-second rate with sensible precision.
func rate(v float64) string {
	switch {
	case v >= 100 || v == math.Trunc(v):
		return count(int64(math.Round(v)))
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// niceCeil returns a round upper bound for an axis showing max, and the
// step between about n ticks: 1, 2 or 5 times a power of ten.
func niceCeil(max float64, n int) (top, step float64) {
	if max <= 0 || math.IsNaN(max) || math.IsInf(max, 0) {
		return 1, 1
	}
	raw := max / float64(n)
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * pow
	for _, m := range []float64{1, 2, 5} {
		if m*pow >= raw {
			step = m * pow
			break
		}
	}
	if step < 1 && max >= 1 {
		step = 1
	}
	return math.Ceil(max/step) * step, step
}

// timeSteps are the spacings a time axis may use, in milliseconds.
var timeSteps = []int64{
	100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000,
	60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000,
	7_200_000, 21_600_000, 43_200_000, 86_400_000,
}

// timeStep picks a spacing giving at most n ticks over span milliseconds.
func timeStep(span int64, n int64) int64 {
	for _, s := range timeSteps {
		if span/s <= n {
			return s
		}
	}
	return timeSteps[len(timeSteps)-1] * (span/(timeSteps[len(timeSteps)-1]*n) + 1)
}

// since returns the milliseconds from base to t, or -1 when t is unset.
func since(base, t time.Time) int64 {
	if t.IsZero() {
		return -1
	}
	return t.Sub(base).Milliseconds()
}

// spanMS is the length of [start, end] in milliseconds, falling back to
// the recorded duration when either end is unset.
func spanMS(start, end time.Time, recorded int64) int64 {
	if start.IsZero() || end.IsZero() {
		return recorded
	}
	return end.Sub(start).Milliseconds()
}
