package bus

import (
	"math"
	"testing"
	"time"
)

func TestBackoffCeiling(t *testing.T) {
	for _, tc := range []struct {
		lo, hi time.Duration
		n      int
		want   time.Duration
	}{
		{500 * time.Millisecond, 40 * time.Second, 0, 500 * time.Millisecond},
		{500 * time.Millisecond, 40 * time.Second, 3, 4 * time.Second},
		{500 * time.Millisecond, 40 * time.Second, 7, 40 * time.Second},
		{500 * time.Millisecond, 40 * time.Second, 1 << 30, 40 * time.Second},
		{time.Nanosecond, math.MaxInt64, 1000, math.MaxInt64},
		{3 * time.Second, time.Second, 0, time.Second},
	} {
		if got := backoffCeiling(tc.lo, tc.hi, tc.n); got != tc.want {
			t.Errorf("backoffCeiling(%s, %s, %d) = %s, want %s", tc.lo, tc.hi, tc.n, got, tc.want)
		}
	}
}
