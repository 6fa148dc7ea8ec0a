package drill

import "testing"

func TestLedgerCounts(t *testing.T) {
	var l ledger
	for _, s := range []uint64{1, 2, 3, 5, 4, 4, 9, 130, 131} {
		l.record(s)
	}
	got := l.count(2, 131)
	want := tally{Expected: 130, Received: 7, Lost: 123, Duplicates: 1, OutOfOrder: 1, LongestRun: 120}
	if got != want {
		t.Fatalf("count(2, 131) = %+v, want %+v", got, want)
	}
	if d := l.distinct(); d != 8 {
		t.Fatalf("distinct = %d, want 8", d)
	}
	if n := l.deliveries(); n != 9 {
		t.Fatalf("deliveries = %d, want 9", n)
	}
	if m := l.max(); m != 131 {
		t.Fatalf("max = %d", m)
	}
}

func TestLedgerFullWords(t *testing.T) {
	var l ledger
	for s := uint64(1); s <= 1000; s++ {
		if s != 700 {
			l.record(s)
		}
	}
	got := l.count(1, 1000)
	if got.Lost != 1 || got.Received != 999 || got.LongestRun != 1 {
		t.Fatalf("count = %+v", got)
	}
	if got := l.count(1, 1002); got.Lost != 3 || got.LongestRun != 2 {
		t.Fatalf("count past the end = %+v", got)
	}
}
