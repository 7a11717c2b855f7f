package config

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // -1: an error
	}{
		{"10240000", 10240000},
		{"512MiB", 512 << 20},
		{"1.5GiB", 3 << 29},
		{"10MB", 10_000_000},
		{" 1 G ", 1 << 30},
		{"0", 0},
		{"8EiB", -1}, // no such unit
		{"NaN", -1},
		{"nan", -1},
		{"NaNMiB", -1},
		{"Inf", -1},
		{"-Inf", -1},
		{"1e30", -1},
		{"9.3e18", -1}, // over the int64 range
		{"8TB", 8_000_000_000_000},
		{"-1", -1},
		{"", -1},
		{"ten", -1},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			switch {
			case tc.want < 0 && err == nil:
				t.Errorf("ParseSize(%q) = %d, want an error", tc.in, got)
			case tc.want >= 0 && (err != nil || got != tc.want):
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}
