package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/maillog"
)

// storeSource is a Source over a real queue.Store, with a fixed provider
// list (the policy engine's state is the daemon's; its browser test covers
// it).
type storeSource struct {
	st      *queue.Store
	now     time.Time
	mu      sync.Mutex // guards resumed
	resumed []string
	cluster *Cluster // nil: a single node
}

func (s *storeSource) Cluster() *Cluster { return s.cluster }

func (s *storeSource) Stats(ctx context.Context) (queue.Stats, error) { return s.st.Stats(ctx) }

func (s *storeSource) Counts(ctx context.Context) ([]queue.DestCount, error) { return s.st.Counts(ctx) }
func (s *storeSource) Providers(ctx context.Context, now time.Time) ([]policy.ProviderState, error) {
	until, why := now.Add(4*time.Hour), "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred"
	return []policy.ProviderState{{Name: "default"}, {Name: "yahoo", SuspendedUntil: &until, SuspendedReason: &why}}, nil
}
func (s *storeSource) Resume(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumed = append(s.resumed, name)
	return nil
}
func (s *storeSource) Each(ctx context.Context, after queue.ID, fn func(queue.Message) error) error {
	return s.st.EachAfter(ctx, queue.Filter{}, after, fn)
}
func (s *storeSource) Get(ctx context.Context, id queue.ID) (queue.Message, error) {
	return s.st.Get(ctx, id)
}
func (s *storeSource) Body(ctx context.Context, id queue.ID) ([]byte, error) {
	return s.st.Body(ctx, id)
}
func (s *storeSource) Hold(ctx context.Context, id queue.ID) error { return s.st.Hold(ctx, id) }
func (s *storeSource) Release(ctx context.Context, id queue.ID) error {
	return s.st.Release(ctx, id, s.now)
}
func (s *storeSource) Delete(ctx context.Context, id queue.ID) error { return s.st.Delete(ctx, id) }
func (s *storeSource) Suppressions(ctx context.Context) ([]queue.Suppression, error) {
	return s.st.Suppressions(ctx)
}
func (s *storeSource) Unsuppress(ctx context.Context, addr string) (bool, error) {
	return s.st.Unsuppress(ctx, addr)
}

const testToken = "t0ken-for-the-dashboard"

type fixture struct {
	srv  *httptest.Server
	src  *storeSource
	d    *Dashboard
	host string
	id   queue.ID
	log  *lockedBuffer
}

func newFixture(t testing.TB, token string) *fixture {
	t.Helper()
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)
	src := &storeSource{st: st, now: now}
	id, err := st.Enqueue(context.Background(), queue.Envelope{Sender: "app@shop.example", Recipients: []string{"bob@yahoo.example"}, ClientIP: "127.0.0.1", User: "www-data"},
		[]byte("Subject: <script>alert(1)</script>\r\nX-Fold: a\r\n b\r\n\r\nSECRET BODY\r\n"), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	logb := &lockedBuffer{}
	d := &Dashboard{Source: src, Token: token, Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(logb, nil)),
		API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("api " + r.URL.Path)) })}
	// Configured before it serves: a client in another process shares no
	// memory with the test, so nothing else orders these writes before the
	// handler's reads.
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = d.Handler()
	d.Hosts = AllowedHosts(srv.Listener.Addr().String())
	srv.Start()
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, src: src, d: d, host: srv.Listener.Addr().String(), id: id, log: logb}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// login returns the session cookie and a page's CSRF token.
func (f *fixture) login(t *testing.T) (cookie, csrf string) {
	t.Helper()
	c := &http.Client{CheckRedirect: noRedirect}
	req, _ := http.NewRequest("POST", f.srv.URL+"/ui/login", strings.NewReader(url.Values{"token": {testToken}, "next": {"/ui/queue"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", f.srv.URL)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/queue" {
		t.Fatalf("login: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			cookie = ck.Value
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
				t.Errorf("session cookie %+v", ck)
			}
		}
	}
	_, body := f.get(t, "/ui/queue/"+string(f.id), cookie)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return cookie, m[1]
}

func (f *fixture) get(t *testing.T, path, cookie string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
	if cookie != "" {
		req.Header.Set("Cookie", sessionCookie+"="+cookie)
	}
	resp, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPostsNeedSessionCSRFAndSameOrigin(t *testing.T) {
	f := newFixture(t, testToken)
	cookie, csrf := f.login(t)
	hold := "/ui/queue/" + string(f.id) + "/hold"
	tests := []struct {
		name   string
		host   string
		origin string
		cookie string
		form   url.Values
		bearer string
		want   int
	}{
		{"no session", "", f.srv.URL, "", url.Values{"csrf": {csrf}}, "", http.StatusUnauthorized},
		{"no CSRF token", "", f.srv.URL, cookie, nil, "", http.StatusForbidden},
		{"CSRF token of another session", "", f.srv.URL, cookie, url.Values{"csrf": {f.d.sess.csrf("other")}}, "", http.StatusForbidden},
		{"foreign Origin", "", "http://evil.example", cookie, url.Values{"csrf": {csrf}}, "", http.StatusForbidden},
		{"no Origin nor Referer", "", "", cookie, url.Values{"csrf": {csrf}}, "", http.StatusForbidden},
		{"foreign Host", "evil.example", "http://evil.example", cookie, url.Values{"csrf": {csrf}}, "", http.StatusMisdirectedRequest},
		{"wrong bearer token", "", "", "", nil, "nope", http.StatusUnauthorized},
		{"all good", "", f.srv.URL, cookie, url.Values{"csrf": {csrf}}, "", http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.srv.URL+hold, strings.NewReader(tt.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.cookie != "" {
				req.Header.Set("Cookie", sessionCookie+"="+tt.cookie)
			}
			if tt.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			resp, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			m, _ := f.src.st.Get(context.Background(), f.id)
			held := m.Recipients[0].Status == queue.Held
			if held != (tt.want == http.StatusSeeOther) {
				t.Errorf("held = %v after a %d", held, resp.StatusCode)
			}
		})
	}
}

func TestPagesNeedAuthentication(t *testing.T) {
	f := newFixture(t, testToken)
	for _, p := range []string{"/", "/ui/providers", "/ui/senders", "/ui/queue", "/ui/queue/" + string(f.id), "/ui/queue/" + string(f.id) + "/body", "/ui/suppressions"} {
		code, body := f.get(t, p, "")
		if code != http.StatusSeeOther || strings.Contains(body, "SECRET") {
			t.Errorf("GET %s without a session: %d", p, code)
		}
		code, _ = f.get(t, p, "forged-session")
		if code != http.StatusSeeOther {
			t.Errorf("GET %s with a forged session: %d", p, code)
		}
	}
	// The rest is the API's.
	if code, body := f.get(t, "/queue", ""); code != 200 || body != "api /queue" {
		t.Errorf("API path: %d %q", code, body)
	}
}

func TestNoTokenNoDashboard(t *testing.T) {
	f := newFixture(t, "")
	for _, p := range []string{"/", "/ui/login", "/ui/queue"} {
		code, body := f.get(t, p, "")
		if code != http.StatusForbidden || !strings.Contains(body, "admin_token") {
			t.Errorf("GET %s without admin_token: %d\n%s", p, code, body)
		}
	}
}

func TestMessagePageEscapesAndHidesBody(t *testing.T) {
	f := newFixture(t, testToken)
	cookie, _ := f.login(t)
	code, body := f.get(t, "/ui/queue/"+string(f.id), cookie)
	if code != 200 {
		t.Fatalf("%d\n%s", code, body)
	}
	if strings.Contains(body, "SECRET BODY") {
		t.Error("the message page shows the body")
	}
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the Subject is not escaped")
	}
	if !strings.Contains(body, "<td>a b</td>") {
		t.Error("the folded header is not unfolded")
	}
	if _, body = f.get(t, "/ui/queue/"+string(f.id)+"/body", cookie); !strings.Contains(body, "SECRET BODY") {
		t.Error("the body page lacks the body")
	}
}

func TestLoginRefusals(t *testing.T) {
	f := newFixture(t, testToken)
	for _, tt := range []struct {
		name, token, origin string
		want                int
	}{
		{"wrong token", "guess", f.srv.URL, http.StatusUnauthorized},
		{"empty token", "", f.srv.URL, http.StatusUnauthorized},
		{"cross-site login", testToken, "http://evil.example", http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.srv.URL+"/ui/login", strings.NewReader(url.Values{"token": {tt.token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", tt.origin)
			resp, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want || len(resp.Cookies()) != 0 {
				t.Errorf("status %d cookies %v, want %d and none", resp.StatusCode, resp.Cookies(), tt.want)
			}
		})
	}
}

func TestLoginThrottled(t *testing.T) {
	f := newFixture(t, testToken)
	now := f.src.now
	f.d.Now = func() time.Time { return now }
	try := func(token string) int {
		req, _ := http.NewRequest("POST", f.srv.URL+"/ui/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", f.srv.URL)
		resp, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range loginTries {
		if got := try(fmt.Sprint("guess", i)); got != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, got)
		}
	}
	if got := try(testToken); got != http.StatusTooManyRequests {
		t.Errorf("the right token during the penalty: %d, want 429", got)
	}
	now = now.Add(loginPenalty)
	if got := try(testToken); got != http.StatusSeeOther {
		t.Errorf("the right token after the penalty: %d", got)
	}
}

// The throttle counts per local account (sock_diag), not for every client
// at once: www-data guessing from the same host locks itself out, never the
// operator. Real processes under real uids: python3 as www-data (33).
func TestLoginThrottlePerAccount(t *testing.T) {
	python := "/usr/bin/python3" // the system's: a pyenv one is not reachable by uid 33
	if _, err := os.Stat(python); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is missing (apt-get install python3)")
		}
		t.Skip("python3 is missing")
	}
	if os.Getuid() != 0 {
		t.Skip("relay/dashboard: needs root to post as another uid")
	}
	f := newFixture(t, testToken)
	const guesser = `
import sys, urllib.request, urllib.parse
base = sys.argv[1]
codes = []
for i in range(int(sys.argv[2])):
    req = urllib.request.Request(base + "/ui/login", data=urllib.parse.urlencode({"token": "guess%d" % i}).encode(), headers={"Origin": base})
    try:
        codes.append(urllib.request.urlopen(req).status)
    except urllib.error.HTTPError as e:
        codes.append(e.code)
print(" ".join(map(str, codes)))
`
	cmd := exec.CommandContext(t.Context(), python, "-c", guesser, f.srv.URL, fmt.Sprint(loginTries+2))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 33, Gid: 33}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 as www-data: %v", err)
	}
	// Five wrong tokens, then refused unchecked.
	if got, want := strings.TrimSpace(string(out)), strings.TrimSpace(strings.Repeat("401 ", loginTries)+"429 429"); got != want {
		t.Fatalf("www-data's guesses answered %q, want %q", got, want)
	}
	if !strings.Contains(f.log.String(), "account=uid:33") {
		t.Errorf("the refusals do not name www-data's uid:\n%s", f.log.String())
	}
	// The operator, on the same 127.0.0.1 but another account, still logs in.
	f.login(t)
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/ui/queue?q=x": "/ui/queue?q=x", "//evil.example/": "/", "https://evil.example": "/", "/\\evil": "/", "": "/",
		"/\t/evil.example": "/", "/\n/evil.example": "/", "/\r\n/evil.example": "/", "/ui/x\\y": "/", "/ui/\x7f": "/",
		"/ui/queue?q=a%20b&field=rcpt": "/ui/queue?q=a%20b&field=rcpt"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSenderFlags(t *testing.T) {
	tests := []struct {
		name  string
		c     Counts
		flags string
	}{
		{"clean", Counts{Delivered: 10000, Bounced: 100, Complaints: 9}, ""},
		{"complaints at 0.1 %", Counts{Delivered: 10000, Complaints: 10}, "complaints_0.1"},
		{"complaints at 0.3 %", Counts{Delivered: 10000, Complaints: 30}, "complaints_0.3"},
		{"bounces at 5 % exactly", Counts{Delivered: 95, Bounced: 5}, ""},
		{"bounces above 5 %", Counts{Delivered: 94, Bounced: 6}, "bounces_5"},
		{"complaints with nothing delivered", Counts{Bounced: 1, Complaints: 1}, "complaints_0.3 bounces_5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rows(map[string]Counts{"x": tt.c}, 10)[0]
			if got := strings.Join(r.Flags, " "); got != tt.flags {
				t.Errorf("flags %q, want %q (bounce %.4f, complaint %.4f)", got, tt.flags, r.BounceRate, r.ComplaintRate)
			}
		})
	}
}

func TestTallyWindows(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tl := NewTally()
	tl.Record(Event{Kind: "delivered", ID: "A", Sender: "a@Shop.example", User: "www-data", Provider: "google", At: t0.Add(-23 * time.Hour)})
	tl.Record(Event{Kind: "bounced", ID: "B", Sender: "a@shop.example", Provider: "google", Response: "550 5.1.1", At: t0.Add(-30 * time.Minute)})
	tl.Record(Event{Kind: "expired", ID: "C", Sender: "", Provider: "yahoo", At: t0.Add(-2 * time.Minute)})
	tl.Record(Event{Kind: "delivered", ID: "D", Sender: "x@old.example", Provider: "google", At: t0.Add(-25 * time.Hour)})
	tl.Complaint("A", "", "", t0.Add(-time.Minute))
	tl.Complaint("unknown", "z@other.example", "", t0.Add(-time.Minute))
	for _, tt := range []struct {
		span   time.Duration
		google Counts
		shop   Counts
		null   Counts
		other  Counts
		user   Counts
	}{
		{time.Hour, Counts{Bounced: 1}, Counts{Bounced: 1, Complaints: 1}, Counts{Bounced: 1}, Counts{Complaints: 1}, Counts{Complaints: 1}},
		{24 * time.Hour, Counts{Delivered: 1, Bounced: 1}, Counts{Delivered: 1, Bounced: 1, Complaints: 1}, Counts{Bounced: 1}, Counts{Complaints: 1}, Counts{Delivered: 1, Complaints: 1}},
	} {
		w := tl.Window(t0, tt.span)
		if w.Providers["google"] != tt.google || w.Domains["shop.example"] != tt.shop || w.Domains["<>"] != tt.null || w.Domains["other.example"] != tt.other || w.Users["www-data"] != tt.user {
			t.Errorf("window %v: %+v", tt.span, w)
		}
		if _, ok := w.Domains["old.example"]; ok {
			t.Errorf("window %v keeps an event older than a day", tt.span)
		}
	}
	if rs := tl.Replies("google"); len(rs) != 3 || rs[0].ID != "D" || rs[1].Response != "550 5.1.1" {
		t.Errorf("replies, last recorded first: %+v", rs)
	}
	for i := range 30 {
		tl.Record(Event{Kind: "deferred", Provider: "yahoo", Response: fmt.Sprint(i), At: t0})
	}
	if rs := tl.Replies("yahoo"); len(rs) != RepliesKept || rs[0].Response != "29" {
		t.Errorf("yahoo keeps %d replies, newest %q", len(rs), rs[0].Response)
	}
}

func TestLogBookKeepsLinesByQueueID(t *testing.T) {
	// The daemon's text log hands the book its lines as written (a tap);
	// any other handler (the JSON log) has them formatted for the book.
	for _, tc := range []struct {
		name string
		next func(w io.Writer) slog.Handler
	}{
		{"maillog text", func(w io.Writer) slog.Handler { return maillog.New(w, "text").Handler() }},
		{"json", func(w io.Writer) slog.Handler { return maillog.New(w, "json").Handler() }},
		{"slog text", func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			book := NewLogBook()
			var out strings.Builder
			log := slog.New(book.Handler(tc.next(&out)))
			log.Info("received", "qid", "0ABC", "from", "<a@b.example>")
			log.With("qid", "0ABC").Info("deferred", "rcpt", "<c@d.example>", "resp", "421 4.7.0 try later")
			log.Info("started", "pid", 1)
			log.Info("received", "qid", "0DEF", "from", "<>")
			got := book.Lines("0ABC")
			if len(got) != 2 || !strings.Contains(got[0], " 0ABC received from=<a@b.example>") || !strings.Contains(got[1], ` 0ABC deferred rcpt=<c@d.example> resp="421 4.7.0 try later"`) {
				t.Errorf("lines: %q", got)
			}
			if other := book.Lines("0DEF"); len(other) != 1 || strings.HasSuffix(other[0], "\n") {
				t.Errorf("0DEF lines: %q", other)
			}
			if !strings.Contains(out.String(), "started") {
				t.Error("the wrapped handler did not get every record")
			}
		})
	}
}

// Issue 18 §5: each page in under 200 ms with 100,000 messages queued.
// Run once: go test ./relay/dashboard -run XXX -bench Pages100k -benchtime 1x
func BenchmarkPages100k(b *testing.B) {
	f := newFixture(b, testToken)
	ctx := context.Background()
	var wg sync.WaitGroup
	const n, workers = 100000, 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				dom := []string{"gmail.com", "yahoo.com", "outlook.com", "orange.fr", "example.org"}[i%5]
				_, err := f.src.st.Enqueue(ctx, queue.Envelope{Sender: fmt.Sprintf("app@site%d.example", i%40), Recipients: []string{fmt.Sprintf("u%d@%s", i, dom)}},
					[]byte("Subject: x\r\n\r\nx\r\n"), f.src.now.Add(-time.Duration(n-i)*time.Second))
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	d := f.d
	for i := range 20000 {
		d.Stats.Record(Event{Kind: []string{"delivered", "deferred", "bounced"}[i%3], Sender: fmt.Sprintf("a@site%d.example", i%40), Provider: "google", At: f.src.now.Add(-time.Duration(i) * 4 * time.Second)})
	}
	h := d.Handler()
	b.ResetTimer()
	for b.Loop() {
		for _, p := range []string{"/", "/ui/providers", "/ui/senders", "/ui/queue", "/ui/queue?q=u99999@example.org", "/ui/suppressions"} {
			req := httptest.NewRequest("GET", p, nil)
			req.Host = f.host
			req.Header.Set("Authorization", "Bearer "+testToken)
			start := time.Now()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			el := time.Since(start)
			if rec.Code != 200 {
				b.Fatalf("%s: %d", p, rec.Code)
			}
			b.Logf("%-36s %v", p, el)
			b.ReportMetric(float64(el.Microseconds())/1000, "ms/"+strings.Trim(strings.ReplaceAll(strings.Split(p, "?")[0], "/", "_"), "_")+"_page")
		}
	}
}

func TestQueueSearchContinues(t *testing.T) {
	f := newFixture(t, testToken)
	// Pages end by their size here, not by the time budget.
	f.d.SearchBudget = time.Hour
	ctx := context.Background()
	for i := range 150 {
		if _, err := f.src.st.Enqueue(ctx, queue.Envelope{Sender: "news@list.example", Recipients: []string{fmt.Sprintf("r%d@gmail.example", i)}, ClientIP: "127.0.0.9"},
			[]byte("Subject: x\r\n\r\nx\r\n"), f.src.now); err != nil {
			t.Fatal(err)
		}
	}
	search := func(q, field string, after queue.ID) QueueView {
		req := httptest.NewRequest("GET", "/ui/queue?format=json&q="+url.QueryEscape(q)+"&field="+field+"&after="+string(after), nil)
		title, v, err := f.d.queue(req)
		if err != nil || title != "Queue" {
			t.Fatalf("search %q: %v", q, err)
		}
		return v.(QueueView)
	}
	tests := []struct {
		name, q, field string
		pages          []int
	}{
		{"by sender, two pages", "news@list", "sender", []int{100, 50}},
		{"by recipient", "r149@gmail", "rcpt", []int{1}},
		{"by client", "127.0.0.9", "client", []int{100, 50}},
		{"by user", "www-data", "user", []int{1}},
		{"by ID", string(f.id), "", []int{1}},
		{"recipient in the sender field", "r149@gmail", "sender", []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var after queue.ID
			for i, want := range tt.pages {
				v := search(tt.q, tt.field, after)
				if len(v.Messages) != want {
					t.Fatalf("page %d: %d messages, want %d", i, len(v.Messages), want)
				}
				if last := i == len(tt.pages)-1; last != (v.Next == "") {
					t.Fatalf("page %d: next %q", i, v.Next)
				}
				after = v.Next
			}
		})
	}
}

func TestOverviewFromCounters(t *testing.T) {
	f := newFixture(t, testToken)
	ctx := context.Background()
	if err := f.src.st.Hold(ctx, f.id); err != nil {
		t.Fatal(err)
	}
	f.src.st.Enqueue(ctx, queue.Envelope{Sender: "a@b.example", Recipients: []string{"x@c.example", "y@c.example"}}, []byte("\r\n"), f.src.now)
	f.d.Stats.Record(Event{Kind: "delivered", Provider: "default", Sender: "a@b.example", At: f.src.now.Add(-10 * time.Minute)})
	_, v, err := f.d.overview(httptest.NewRequest("GET", "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	ov := v.(Overview)
	if ov.Messages != 2 || ov.Waiting != 2 || ov.Held != 1 {
		t.Errorf("totals: %+v", ov)
	}
	got := map[string]ProviderQueue{}
	for _, p := range ov.Providers {
		got[p.Provider] = p
	}
	if p := got["default"]; p.Queued != 3-1 || p.Held != 1 || p.Hour.Delivered != 1 || !p.OldestExact || !p.Oldest.Equal(f.src.now.Add(-time.Hour)) {
		t.Errorf("default: %+v", p)
	}
	if p := got["yahoo"]; !p.Suspended {
		t.Errorf("yahoo: %+v", p)
	}
}

// TestOverviewClusterLink: the overview shows the fleet's link, this
// node's name and the nodes seen with their heartbeat age (issue 18 §2),
// in the page and in its JSON, and "single node" without a cluster.
func TestOverviewClusterLink(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cluster  *Cluster
		wantHTML []string
		notHTML  []string
		wantJSON []string
	}{
		{name: "alone", wantHTML: []string{"single node"}, notHTML: []string{`id="nodes"`},
			wantJSON: []string{`"link": null`}},
		{name: "up", cluster: &Cluster{Node: "mx1", Up: true, Nodes: []ClusterNode{{Name: "mx1", AgeSeconds: 0.4, Alive: true}, {Name: "mx2", AgeSeconds: 2.5, Alive: true}}},
			wantHTML: []string{"node <b>mx1</b>, cluster link <b>up</b>", "<td>mx2</td><td>alive</td><td class=\"n\">2.5s ago</td>"},
			notHTML:  []string{"single node", "link is down"},
			wantJSON: []string{`"link": "up"`, `"node": "mx1"`, `"name": "mx2"`, `"heartbeat_age_seconds": 2.5`}},
		{name: "down", cluster: &Cluster{Node: "mx1", LastErr: "dial tcp 127.0.0.1:6379: connection refused", Pending: 3,
			Nodes: []ClusterNode{{Name: "mx2", AgeSeconds: 31, Alive: false}}},
			wantHTML: []string{`cluster link <span class="tag bad">down</span>`, "link is down", "connection refused", "<td>mx2</td><td>silent</td>", "3 change(s) waiting"},
			notHTML:  []string{"single node"},
			wantJSON: []string{`"link": "down"`, `"up": false`, `"last_error": "dial tcp`, `"alive": false`, `"pending": 3`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, testToken)
			f.src.cluster = tc.cluster
			cookie, _ := f.login(t)
			code, page := f.get(t, "/", cookie)
			if code != http.StatusOK {
				t.Fatalf("GET /: %d", code)
			}
			for _, w := range tc.wantHTML {
				if !strings.Contains(page, w) {
					t.Errorf("page lacks %q:\n%s", w, page)
				}
			}
			for _, w := range tc.notHTML {
				if strings.Contains(page, w) {
					t.Errorf("page has %q", w)
				}
			}
			code, js := f.get(t, "/?format=json", cookie)
			if code != http.StatusOK {
				t.Fatalf("GET /?format=json: %d", code)
			}
			for _, w := range tc.wantJSON {
				if !strings.Contains(js, w) {
					t.Errorf("JSON lacks %q:\n%s", w, js)
				}
			}
		})
	}
}

func TestSeriesOnRoundTimes(t *testing.T) {
	now := time.Date(2026, 11, 22, 14, 37, 0, 0, time.UTC)
	tl := NewTally()
	for _, e := range []struct {
		kind string
		ago  time.Duration
	}{{"delivered", 2 * time.Minute}, {"bounced", 40 * time.Minute}, {"deferred", 23 * time.Hour}, {"delivered", 25 * time.Hour}} {
		tl.Record(Event{Kind: e.kind, Provider: "p", At: now.Add(-e.ago)})
	}
	day := tl.Series(now, time.Hour, 24)
	if len(day) != 24 || !day[23].Start.Equal(time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)) {
		t.Fatalf("last hour bar starts %v", day[23].Start)
	}
	if day[23].Counts != (Counts{Delivered: 1}) || day[22].Counts != (Counts{Bounced: 1}) || day[0].Counts != (Counts{Deferred: 1}) {
		t.Errorf("day series: %+v", day)
	}
	hour := tl.Series(now, 5*time.Minute, 12)
	if hour[11].Counts != (Counts{Delivered: 1}) || hour[3].Counts != (Counts{Bounced: 1}) {
		t.Errorf("hour series: %+v", hour)
	}
}

// lockedBuffer is a log sink the server's goroutines write while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Attempts are counted before the token is checked, in one locked step:
// twenty guesses posted at once get loginTries checks, not twenty.
func TestLoginAttemptsCountedFirst(t *testing.T) {
	s := newSessions()
	now := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	var mu sync.Mutex
	checked := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.attempt("uid:33", now) {
				mu.Lock()
				checked++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if checked != loginTries {
		t.Fatalf("%d of 20 parallel guesses checked, want %d", checked, loginTries)
	}
	if !s.attempt("uid:0", now) {
		t.Error("another account is throttled too")
	}
	if s.attempt("uid:33", now.Add(loginPenalty-time.Second)) {
		t.Error("a guess within the penalty was checked")
	}
	if !s.attempt("uid:33", now.Add(2*loginPenalty)) {
		t.Error("no guess checked after the penalty")
	}
	s.ok("uid:33")
	for i := range loginTries {
		if !s.attempt("uid:33", now.Add(2*loginPenalty)) {
			t.Fatalf("attempt %d after a right token refused", i)
		}
	}
}
