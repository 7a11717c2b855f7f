package scheduler

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/clock"
	"facteur/relay/maillog"
)

// fill puts each due message's recipients into the lane of their
// destination, one item per message and lane, in the message's recipient
// order, messages in the order they fell due; a message whose recipients
// all go to one destination, as most do, is one item.
func TestFillGroupsByDestination(t *testing.T) {
	type msg struct {
		rcpts []string
		age   time.Duration // how long ago it was queued: the oldest falls due first
	}
	tests := []struct {
		name string
		msgs []msg
		want map[string][][]string // lane → its items' recipients, in order
	}{
		{"one recipient", []msg{{[]string{"a@x.example"}, time.Minute}},
			map[string][][]string{"x.example": {{"a@x.example"}}}},
		{"one destination", []msg{{[]string{"a@x.example", "b@X.example", "c@x.example"}, time.Minute}},
			map[string][][]string{"x.example": {{"a@x.example", "b@X.example", "c@x.example"}}}},
		{"two destinations interleaved", []msg{{[]string{"a@x.example", "b@y.example", "c@x.example", "d@y.example", "e@z.example"}, time.Minute}},
			map[string][][]string{"x.example": {{"a@x.example", "c@x.example"}}, "y.example": {{"b@y.example", "d@y.example"}}, "z.example": {{"e@z.example"}}}},
		{"messages in due order", []msg{
			{[]string{"new@x.example"}, time.Minute},
			{[]string{"old@x.example", "old@y.example"}, time.Hour},
			{[]string{"mid@y.example", "mid2@y.example"}, 30 * time.Minute},
		}, map[string][][]string{
			"x.example": {{"old@x.example"}, {"new@x.example"}},
			"y.example": {{"old@y.example"}, {"mid@y.example", "mid2@y.example"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			pol, err := policy.Builtin()
			if err != nil {
				t.Fatal(err)
			}
			clk := clock.NewFake(t0)
			s := New(Options{Hostname: "relay.test"}, st, nil, EngineShaper{E: policy.NewEngine(pol)}, clk, maillog.New(discard{}, "text"))
			for _, m := range tt.msgs {
				if _, err := st.Enqueue(t.Context(), queue.Envelope{Sender: "app@shop.example", Recipients: m.rcpts}, []byte("Subject: x\r\n\r\nx\r\n"), t0.Add(-m.age)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.fill(t.Context(), t0); err != nil {
				t.Fatal(err)
			}
			got := map[string][][]string{}
			n := 0
			for k, l := range s.lanes {
				for _, it := range l.pending {
					got[k] = append(got[k], it.rcpts)
					n += len(it.rcpts)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("lanes %v, want %v", got, tt.want)
			}
			for k, w := range tt.want {
				if !slices.EqualFunc(got[k], w, slices.Equal) {
					t.Errorf("lane %s: %v, want %v", k, got[k], w)
				}
			}
			if len(s.inflight) != n {
				t.Errorf("%d in flight, %d in lanes", len(s.inflight), n)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
