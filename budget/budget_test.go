package budget_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/natscert/natscert/budget"
)

const s = time.Second

func TestCompute(t *testing.T) {
	base := budget.Input{ReconnectWait: 2 * s, HandshakeTimeout: 2 * s, Members: 24, MaxUnavailable: 3}
	with := func(f func(*budget.Input)) budget.Input {
		in := base
		f(&in)
		return in
	}
	tests := []struct {
		name string
		in   budget.Input
		want budget.Estimate
	}{
		{
			name: "operator defaults",
			in:   base,
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 8, Total: 64 * s,
				WorstCycle: 5 * s, WorstWaveWindow: 10 * s, WorstTotal: 80 * s, Fits: true, WorstFits: true},
		},
		{
			name: "rounds a partial wave up",
			in:   with(func(in *budget.Input) { in.Members = 25 }),
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 9, Total: 72 * s,
				WorstCycle: 5 * s, WorstWaveWindow: 10 * s, WorstTotal: 90 * s, Fits: true, WorstFits: true},
		},
		{
			name: "one member short of a wave",
			in:   with(func(in *budget.Input) { in.Members = 23 }),
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 8, Total: 64 * s,
				WorstCycle: 5 * s, WorstWaveWindow: 10 * s, WorstTotal: 80 * s, Fits: true, WorstFits: true},
		},
		{
			name: "max-unavailable above members is one wave",
			in:   with(func(in *budget.Input) { in.Members = 2 }),
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 1, Total: 8 * s,
				WorstCycle: 5 * s, WorstWaveWindow: 10 * s, WorstTotal: 10 * s, Fits: true, WorstFits: true},
		},
		{
			name: "restart time and pause count once per wave",
			in: with(func(in *budget.Input) {
				in.Members, in.MaxUnavailable, in.RestartTime, in.Pause = 10, 5, 3*s, 1*s
			}),
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 2, Total: 24 * s,
				WorstCycle: 5 * s, WorstWaveWindow: 10 * s, WorstTotal: 28 * s, Fits: true, WorstFits: true},
		},
		{
			name: "three servers: one wait per pass over all of them",
			in:   with(func(in *budget.Input) { in.Servers = 3 }),
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 8, Total: 64 * s,
				WorstCycle: 9 * s, WorstWaveWindow: 18 * s, WorstTotal: 144 * s, Fits: true, WorstFits: true},
		},
		{
			name: "explicit jitter, none",
			in:   with(func(in *budget.Input) { in.Jitter = -1 }),
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 8, Total: 64 * s,
				WorstCycle: 4 * s, WorstWaveWindow: 8 * s, WorstTotal: 64 * s, Fits: true, WorstFits: true},
		},
		{
			name: "explicit jitter",
			in:   with(func(in *budget.Input) { in.Jitter = 500 * time.Millisecond }),
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 8, Total: 64 * s,
				WorstCycle: 4500 * time.Millisecond, WorstWaveWindow: 9 * s, WorstTotal: 72 * s, Fits: true, WorstFits: true},
		},
		{
			name: "SLA met exactly by the simple model, missed by the worst case",
			in:   with(func(in *budget.Input) { in.SLA = 64 * s }),
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 8, Total: 64 * s,
				WorstCycle: 5 * s, WorstWaveWindow: 10 * s, WorstTotal: 80 * s, SLA: 64 * s, Fits: true, WorstFits: false},
		},
		{
			name: "SLA missed",
			in:   with(func(in *budget.Input) { in.SLA = 63 * s }),
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 8, Total: 64 * s,
				WorstCycle: 5 * s, WorstWaveWindow: 10 * s, WorstTotal: 80 * s, SLA: 63 * s, Fits: false, WorstFits: false},
		},
		{
			name: "SLA met by both",
			in:   with(func(in *budget.Input) { in.SLA = 80 * s }),
			want: budget.Estimate{Cycle: 4 * s, WaveWindow: 8 * s, Waves: 8, Total: 64 * s,
				WorstCycle: 5 * s, WorstWaveWindow: 10 * s, WorstTotal: 80 * s, SLA: 80 * s, Fits: true, WorstFits: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := budget.Compute(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Compute(%+v)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestComputeRejects(t *testing.T) {
	ok := budget.Input{ReconnectWait: 2 * s, HandshakeTimeout: 2 * s, Members: 24, MaxUnavailable: 3}
	tests := []struct {
		name string
		edit func(*budget.Input)
	}{
		{"no members", func(in *budget.Input) { in.Members = 0 }},
		{"negative members", func(in *budget.Input) { in.Members = -1 }},
		{"no max-unavailable", func(in *budget.Input) { in.MaxUnavailable = 0 }},
		{"negative servers", func(in *budget.Input) { in.Servers = -1 }},
		{"negative reconnect wait", func(in *budget.Input) { in.ReconnectWait = -s }},
		{"no handshake timeout", func(in *budget.Input) { in.HandshakeTimeout = 0 }},
		{"negative restart time", func(in *budget.Input) { in.RestartTime = -s }},
		{"negative pause", func(in *budget.Input) { in.Pause = -s }},
		{"negative SLA", func(in *budget.Input) { in.SLA = -s }},
		{"overflow", func(in *budget.Input) { in.Members, in.MaxUnavailable, in.Pause = 1<<40, 1, 1<<40 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := ok
			tt.edit(&in)
			_, err := budget.Compute(in)
			if !errors.Is(err, budget.ErrInput) {
				t.Fatalf("Compute(%+v) = %v, want ErrInput", in, err)
			}
		})
	}
}

func TestEstimateJSON(t *testing.T) {
	est, err := budget.Compute(budget.Input{ReconnectWait: 2 * s, HandshakeTimeout: 2 * s, Members: 24, MaxUnavailable: 3, SLA: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(est)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"cycle_ms":4000,"wave_window_ms":8000,"waves":8,"total_ms":64000,"worst_cycle_ms":5000,"worst_wave_window_ms":10000,"worst_total_ms":80000,"sla_ms":60000,"fits":false,"worst_fits":false}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
	var back budget.Estimate
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != est {
		t.Errorf("round trip: got %+v, want %+v", back, est)
	}
}

func ExampleCompute() {
	est, err := budget.Compute(budget.Input{
		ReconnectWait:    2 * time.Second,
		HandshakeTimeout: 2 * time.Second,
		Members:          24,
		MaxUnavailable:   3,
		SLA:              2 * time.Minute,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(est.Cycle, est.WaveWindow, est.Waves, est.Total)
	fmt.Println(est.WorstTotal, est.Fits, est.WorstFits)
	// Output:
	// 4s 8s 8 1m4s
	// 1m20s true true
}
