package suppress

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"facteur/queue"
)

// FuzzSuppressCSV: whatever an import file holds, ParseCSV returns entries
// or errors, never panics; and what it accepts survives export and import
// again unchanged (the exact round trip of issue 7 §4).
func FuzzSuppressCSV(f *testing.F) {
	var seed bytes.Buffer
	t0 := time.Date(2026, 3, 8, 14, 0, 0, 123456789, time.UTC)
	WriteCSV(&seed, []queue.Suppression{
		{Address: "a@example.org", Reason: "user_unknown", Response: `550 5.1.1 "quoted", comma`, Source: queue.SourceSMTP, FirstSeen: t0, LastSeen: t0.Add(time.Hour), Count: 2},
		{Address: "b@example.net", Reason: "host_unknown", Response: "multi\nline ", Source: queue.SourceDSN, FirstSeen: t0, LastSeen: t0, Expires: t0.Add(720 * time.Hour), Count: 1},
	})
	f.Add(seed.Bytes())
	f.Add([]byte("a@example.org\nb@example.org\n"))
	f.Add([]byte("source,address\ndsn,c@example.org\n"))
	f.Add([]byte("address,count\nx@y,-1\n"))
	f.Add([]byte("\ufeffaddress,first_seen\nx@y,2026-01-02T03:04:05+02:00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := ParseCSV("fuzz.csv", data)
		if err != nil {
			return
		}
		for _, s := range list {
			if Check(s) != nil {
				t.Fatalf("accepted an entry the import check refuses: %+v", s)
			}
		}
		var out bytes.Buffer
		if err := WriteCSV(&out, list); err != nil {
			t.Fatal(err)
		}
		again, err := ParseCSV("again.csv", out.Bytes())
		if err != nil {
			t.Fatalf("an export does not import: %v\n%s", err, out.Bytes())
		}
		if len(list) == 0 && len(again) == 0 {
			return
		}
		for i := range list {
			list[i] = utc(list[i])
		}
		if !reflect.DeepEqual(list, again) {
			t.Fatalf("round trip changed the list:\n%+v\n%+v", list, again)
		}
	})
}

// utc is what an export keeps of s's times: the instant, in UTC.
func utc(s queue.Suppression) queue.Suppression {
	for _, p := range []*time.Time{&s.FirstSeen, &s.LastSeen, &s.Expires} {
		if !p.IsZero() {
			*p = p.UTC()
		}
	}
	return s
}
