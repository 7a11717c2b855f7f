package admin

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
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

// A listing that has found nothing yet sends its headers after
// listHeadersAfter: the client's wait for headers (5 min in the CLI) must
// not cut a slow scan. Here the scan is held in Decorate, on the first
// match, until the client has its headers; the body then comes whole.
func TestListHeadersBeforeFirstMatch(t *testing.T) {
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Enqueue(t.Context(), queue.Envelope{Sender: "app@example.org", Recipients: []string{"bob@example.com"}}, []byte("x"), time.Now()); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	srv := &Server{Store: st, Log: slog.New(slog.DiscardHandler), listHeadersAfter: time.Millisecond,
		Decorate: func([]queue.Message) { <-hold }}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	for _, url := range []string{"/queue", "/queue?format=text"} {
		type answer struct {
			resp *http.Response
			err  error
		}
		got := make(chan answer, 1)
		go func() {
			resp, err := http.Get(ts.URL + url)
			got <- answer{resp, err}
		}()
		var a answer
		select {
		case a = <-got:
		case <-time.After(20 * time.Second):
			close(hold)
			t.Fatalf("%s: no headers while the scan was held", url)
		}
		if a.err != nil || a.resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", url, a.resp, a.err)
		}
		hold <- struct{}{} // let the one match through
		b, err := io.ReadAll(a.resp.Body)
		a.resp.Body.Close()
		if err != nil || !strings.Contains(string(b), "bob@example.com") {
			t.Errorf("%s: body %q, %v", url, b, err)
		}
	}
}
