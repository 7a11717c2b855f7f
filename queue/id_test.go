package queue

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func TestNewIDFormatAndOrder(t *testing.T) {
	times := []time.Time{
		time.Unix(0, 0),
		t0,
		t0, // same instant: still increasing
		t0.Add(time.Nanosecond),
		t0.Add(time.Millisecond),
		t0.Add(-time.Millisecond), // clock jitter backwards: still increasing
		t0.Add(-999 * time.Millisecond),
		t0.Add(24 * time.Hour),
	}
	var prev ID
	for i, now := range times {
		id := NewID(now)
		if _, err := ParseID(string(id)); err != nil {
			t.Fatalf("NewID(%v) = %q: %v", now, id, err)
		}
		if id <= prev {
			t.Errorf("step %d: NewID(%v) = %s, not after %s", i, now, id, prev)
		}
		prev = id
	}
}

func TestNewIDFollowsLargeStepBack(t *testing.T) {
	ahead := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	NewID(ahead)
	now := ahead.Add(-2 * time.Second)
	if got := NewID(now).Time(); !got.Equal(now) {
		t.Errorf("after a 2s step back, ID time = %v, want %v", got, now)
	}
}

func TestNewIDTimeRoundTrip(t *testing.T) {
	now := time.Date(2099, 5, 6, 7, 8, 9, 0, time.UTC)
	id := NewID(now)
	if got := id.Time(); !got.Equal(now) {
		t.Errorf("%s.Time() = %v, want %v", id, got, now)
	}
}

func TestNewIDUniqueConcurrent(t *testing.T) {
	const workers, per = 20, 5000 // 100k IDs in one millisecond: overflows into the next
	ids := make([][]ID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range per {
				ids[w] = append(ids[w], NewID(t0))
			}
		})
	}
	wg.Wait()
	seen := map[ID]bool{}
	for _, l := range ids {
		if !slices.IsSorted(l) {
			t.Errorf("one goroutine's IDs are not increasing")
		}
		for _, id := range l {
			if seen[id] {
				t.Fatalf("duplicate ID %s", id)
			}
			seen[id] = true
		}
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"upper case", "0G3ZK4R2Q8M1", "0G3ZK4R2Q8M1", true},
		{"lower case is upper-cased", "0g3zk4r2q8m1", "0G3ZK4R2Q8M1", true},
		{"empty", "", "", false},
		{"too short", "0G3ZK4R2Q8M", "", false},
		{"too long", "0G3ZK4R2Q8M12", "", false},
		{"punctuation", "0G3ZK4R2Q8M-", "", false},
		{"non-ASCII", "0G3ZK4R2Q8Mé", "", false},
		{"NUL", "0G3ZK4R2Q8M\x00", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseID(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseID(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if string(got) != tt.want {
				t.Errorf("ParseID(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
