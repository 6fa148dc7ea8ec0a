package seqledger

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestLedgerCounts(t *testing.T) {
	var l Ledger
	for _, s := range []uint64{1, 2, 3, 5, 4, 4, 9, 130, 131} {
		l.Record(s)
	}
	got := l.Count(2, 131)
	want := Tally{Expected: 130, Received: 7, Lost: 123, Duplicates: 1, OutOfOrder: 1, LongestRun: 120}
	if got != want {
		t.Fatalf("Count(2, 131) = %+v, want %+v", got, want)
	}
	if d := l.Distinct(); d != 8 {
		t.Fatalf("Distinct = %d, want 8", d)
	}
	if n := l.Deliveries(); n != 9 {
		t.Fatalf("Deliveries = %d, want 9", n)
	}
	if m := l.Max(); m != 131 {
		t.Fatalf("Max = %d", m)
	}
}

func TestLedgerFullWords(t *testing.T) {
	var l Ledger
	for s := uint64(1); s <= 1000; s++ {
		if s != 700 {
			l.Record(s)
		}
	}
	got := l.Count(1, 1000)
	if got.Lost != 1 || got.Received != 999 || got.LongestRun != 1 {
		t.Fatalf("Count = %+v", got)
	}
	if got := l.Count(1, 1002); got.Lost != 3 || got.LongestRun != 2 {
		t.Fatalf("Count past the end = %+v", got)
	}
}

// A snapshot travels as JSON ranges and merges back to the same counts;
// what two snapshots both hold is a duplicate.
func TestSnapshotMerge(t *testing.T) {
	var a Ledger
	for _, s := range []uint64{1, 2, 3, 5, 4, 4, 9, 64, 65, 66} {
		a.Record(s)
	}
	data, err := json.Marshal(a.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"received":[[1,5],[9,9],[64,66]],"deliveries":10,"duplicates":1,"out_of_order":1}`; string(data) != want {
		t.Fatalf("snapshot %s, want %s", data, want)
	}
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	var b Ledger
	b.Merge(s)
	if got, want := b.Count(1, 70), a.Count(1, 70); got != want {
		t.Fatalf("merged %+v, want %+v", got, want)
	}
	b.Merge(Snapshot{Received: []Range{{66, 67}}, Deliveries: 2})
	if got := b.Count(1, 70); got.Duplicates != 2 || got.Received != 10 || b.Max() != 67 || b.Deliveries() != 12 {
		t.Fatalf("second merge: %+v max %d", got, b.Max())
	}
	if got := (&Ledger{}).Snapshot(); got.Received == nil || len(got.Received) != 0 {
		t.Fatalf("empty snapshot %+v: want an empty list, not null", got)
	}
}

func TestDecode(t *testing.T) {
	if seq, ok := Decode(Append(nil, 42)); !ok || seq != 42 {
		t.Fatalf("Decode(Append(42)) = %d, %v", seq, ok)
	}
	for _, b := range [][]byte{nil, Append(nil, 0), Append(nil, MaxSeq+1), []byte("worker 5"), slices.Concat(Append(nil, 1), []byte{0})} {
		if seq, ok := Decode(b); ok {
			t.Errorf("Decode(%q) = %d, want refused", b, seq)
		}
	}
}
