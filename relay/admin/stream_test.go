package admin

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"facteur/queue"
)

// The streamed listing writes the same bytes as the whole answer did
// (WriteJSON of the list, FormatQueue of it), for an empty and a full queue.
func TestListStreamsSameBytes(t *testing.T) {
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := &Server{Store: st, Log: slog.New(slog.DiscardHandler)}
	h := srv.Handler()
	t0 := time.Date(2026, 11, 22, 14, 3, 8, 0, time.UTC)
	for _, n := range []int{0, 1, 700} {
		for i := range n {
			if _, err := st.Enqueue(t.Context(), queue.Envelope{Sender: "app@example.org", Recipients: []string{fmt.Sprintf("u%d@example.com", i)}}, []byte("x"), t0); err != nil {
				t.Fatal(err)
			}
		}
		msgs, err := st.List(t.Context(), queue.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if msgs == nil {
			msgs = []queue.Message{}
		}
		want := httptest.NewRecorder()
		WriteJSON(want, 200, msgs)
		var wantText bytes.Buffer
		FormatQueue(&wantText, msgs, false)
		for _, c := range []struct {
			url  string
			want []byte
		}{{"/queue", want.Body.Bytes()}, {"/queue?format=text", wantText.Bytes()}} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", c.url, nil))
			if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), c.want) {
				t.Fatalf("%d messages, %s: %d\n%.300q\nwant\n%.300q", len(msgs), c.url, rec.Code, rec.Body.Bytes(), c.want)
			}
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/queue?status=bogus", nil))
	if rec.Code != 400 {
		t.Fatalf("bad filter: %d %s", rec.Code, rec.Body)
	}
}
