package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"facteur/relay/relaytest"
)

const dashToken = "dash-test-token-7c1e9"

// browser starts headless Chromium (Debian's chromium) with the flags this
// closed network needs, and a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	need(t, "chromium")
	path, _ := exec.LookPath("chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	// The first action starts the browser, which lives as long as the
	// context of that call: no timeout there, one on what follows.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelT)
	return ctx
}

// shoot saves a full-page screenshot of the current page as NAME.png in
// $FACTEUR_SCREENSHOTS, when set (README: "Dashboard").
func shoot(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		dir := os.Getenv("FACTEUR_SCREENSHOTS")
		if dir == "" {
			return nil
		}
		png, err := chromedp.FullScreenshot(100)(ctx, tg)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	})
}

// The dashboard in a real browser, against a daemon with mail delivered,
// deferred, bounced and a suspended Yahoo (issue 18 §4).
func TestDashboardInBrowser(t *testing.T) {
	need(t, "python3")
	ctx := browser(t)
	var mu sync.Mutex
	tss04 := true
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte("providers:\n  default:\n    rate: 50/s\n"), 0o644)
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(dashToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, relayOpts{extraConfig: "admin_token_file: " + tokenFile + "\npolicy: " + pol + "\n", sinkOpts: relaytest.SinkOptions{Rcpt: func(a string) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasSuffix(a, "@yahoo-hosted.example") && tss04:
			return &smtpError{Code: 421, EnhancedCode: [3]int{4, 7, 0}, Message: "[TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1"}
		case strings.HasPrefix(a, "gone@"):
			return &smtpError{Code: 550, EnhancedCode: [3]int{5, 1, 1}, Message: "gone@example.org: user unknown"}
		}
		return nil
	}}})
	r.dns.Set("yahoo-hosted.example", relaytest.Zone{MX: []relaytest.MX{{Host: "mta5.am0.yahoodns.net", Pref: 1}}})
	r.dns.Set("mta5.am0.yahoodns.net", relaytest.Zone{A: []string{"127.0.0.2"}})
	script := `
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
s = smtplib.SMTP(host, int(port))
for r in sys.argv[2:]:
    s.sendmail("app@example.com", [r], "Subject: for %s\r\nX-Test: <b>escaped</b>\r\n\r\nBODY-SECRET-%s\r\n" % (r, r))
s.quit()
`
	runTool(t, nil, "", "python3", "-c", script, r.smtp, "a@example.org", "b@example.org", "gone@example.org", "y@yahoo-hosted.example")
	// A local user's mail, through the sendmail shim (cron's way).
	runTool(t, []string{"FACTEUR_CONFIG=" + r.config}, "Subject: backup\n\nbackup done\n", r.shim, "-i", "c@example.org")
	r.waitLog(" delivered rcpt=<b@example.org>")
	r.waitLog(" delivered rcpt=<c@example.org>")
	r.waitLog(" bounced rcpt=<gone@example.org>")
	r.waitLog(" deferred rcpt=<y@yahoo-hosted.example> provider=yahoo")
	// The lines are logged before the outcomes are committed and counted,
	// and the pages read the counts (the senders page's bounce rate, a
	// provider's last replies): the daemon's metrics, counted right after
	// the dashboard's tally, are read until every outcome is in them.
	eventually(t, func() []string {
		m, err := r.metrics()
		if err != nil {
			return []string{err.Error()}
		}
		var problems []string
		for _, want := range []struct {
			labels string
			n      int
		}{{`event="delivered"`, 3}, {`event="bounced"`, 1}, {`event="deferred",provider="yahoo"`, 1}} {
			if got := recipientsCounted(m, want.labels); got < want.n {
				problems = append(problems, fmt.Sprintf("%d recipients counted with %s, want %d:\n%s", got, want.labels, want.n, m))
			}
		}
		return problems
	})
	if t.Failed() {
		t.FailNow()
	}
	// A complaint about a@example.org's message, found by its queue ID.
	qid := qidOf(t, r.logText(), " delivered rcpt=<a@example.org>")
	arf := strings.Replace(cliARF, "Subject: hello\r\n", "Subject: hello\r\nX-Facteur-ID: "+qid+"\r\n", 1)
	arf = strings.ReplaceAll(arf, "angry@example.net", "a@example.org")
	cmd := boundedCommand(t, r.bin, "bounce", "ingest", "-config", r.config)
	cmd.Stdin = strings.NewReader(arf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bounce ingest: %v\n%s", err, out)
	}

	base := "http://" + r.admin
	var text, html string
	// run runs the steps; text and html read what the steps' marks ask.
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v\nlog:\n%s", what, err, r.logText())
		}
	}
	textOf := func(sel string, dst *string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			v, err := chromedp.Text(chromedp.CSS(sel))(ctx, tg)
			*dst = v
			return err
		})
	}
	htmlOf := func(dst *string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			v, err := chromedp.OuterHTML(chromedp.CSS("html"))(ctx, tg)
			*dst = v
			return err
		})
	}
	// Not logged in: the login form, then the overview.
	run("login", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")), shoot("login"),
		chromedp.SendKeys(chromedp.CSS("#token"), dashToken), chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#providers")), textOf("main", &text), shoot("overview"))
	for _, want := range []string{"yahoo", "suspended", "default", "single node"} {
		if !strings.Contains(text, want) {
			t.Errorf("overview lacks %q:\n%s", want, text)
		}
	}

	run("providers", chromedp.Navigate(base+"/ui/providers"), chromedp.WaitVisible(chromedp.CSS("#p-yahoo")),
		textOf("#p-yahoo", &text), shoot("providers"))
	for _, want := range []string{"suspended", "[TSS04]", "Resume", "rate_limited"} {
		if !strings.Contains(text, want) {
			t.Errorf("yahoo on the providers page lacks %q:\n%s", want, text)
		}
	}

	run("senders", chromedp.Navigate(base+"/ui/senders"), chromedp.WaitVisible(chromedp.CSS("table.senders")),
		textOf("main", &text), shoot("senders"))
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"example.com", "> 5 %", "≥ 0.3 %", me.Username} {
		if !strings.Contains(text, want) {
			t.Errorf("senders page lacks %q:\n%s", want, text)
		}
	}

	// The queue: find the Yahoo message by recipient, see its life.
	run("queue search", chromedp.Navigate(base+"/ui/queue"), chromedp.WaitVisible(chromedp.CSS("#q")),
		chromedp.SendKeys(chromedp.CSS("#q"), "y@yahoo-hosted"), chromedp.Click(chromedp.CSS("#search")),
		// The page of results, not the one the search was typed in.
		chromedp.WaitVisible(chromedp.CSS(`input#q[value="y@yahoo-hosted"]`)), chromedp.WaitVisible(chromedp.CSS("#results a")), textOf("#results", &text), shoot("queue"))
	if !strings.Contains(text, "y@yahoo-hosted.example") || strings.Contains(text, "b@example.org") {
		t.Errorf("search by recipient found:\n%s", text)
	}
	run("message", chromedp.Click(chromedp.CSS("#results a")), chromedp.WaitVisible(chromedp.CSS("#log")),
		textOf("#log", &text), htmlOf(&html), shoot("message"))
	for _, want := range []string{" received from=<app@example.com>", " deferred rcpt=<y@yahoo-hosted.example>", "[TSS04]"} {
		if !strings.Contains(text, want) {
			t.Errorf("message log lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(html, "BODY-SECRET") {
		t.Error("the message page shows the body without a click")
	}
	if !strings.Contains(html, "&lt;b&gt;escaped&lt;/b&gt;") {
		t.Error("a header's markup is not escaped")
	}
	run("body", chromedp.Click(chromedp.CSS("#showbody")), chromedp.WaitVisible(chromedp.CSS("#body")),
		textOf("#body", &text))
	if !strings.Contains(text, "BODY-SECRET-y@yahoo-hosted.example") {
		t.Errorf("body page:\n%s", text)
	}
	id := qidOf(t, r.logText(), " deferred rcpt=<y@yahoo-hosted.example>")
	run("back", chromedp.Navigate(base+"/ui/queue/"+id), chromedp.WaitVisible(chromedp.CSS("#hold")))

	// Hold, with its confirmation, then release.
	run("hold", chromedp.Click(chromedp.CSS("#hold")), chromedp.WaitVisible(chromedp.CSS("#confirm")), shoot("confirm"),
		chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#flash")),
		textOf("#recipients", &text))
	if !strings.Contains(text, "held") {
		t.Errorf("after hold:\n%s", text)
	}
	r.waitLog(id + " held by=dashboard")
	run("release", chromedp.Click(chromedp.CSS("#release")), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#flash")),
		textOf("#recipients", &text))
	if strings.Contains(text, "held") {
		t.Errorf("after release:\n%s", text)
	}
	r.waitLog(id + " released by=dashboard")

	run("suppressions", chromedp.Navigate(base+"/ui/suppressions"), chromedp.WaitVisible(chromedp.CSS("#suppressions")),
		textOf("#suppressions", &text), shoot("suppressions"))
	if !strings.Contains(text, "gone@example.org") || !strings.Contains(text, "user_unknown") {
		t.Errorf("suppressions:\n%s", text)
	}
	// Search, then remove gone@ (its own link: the page before the search
	// has a Remove link too, for a@example.org's complaint).
	run("unsuppress", chromedp.SendKeys(chromedp.CSS("#q"), "gone@"), chromedp.Submit(chromedp.CSS("#q")),
		chromedp.WaitNotPresent(chromedp.CSS(`a[href*="a%40example.org"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href*="gone%40example.org"]`)), chromedp.Click(chromedp.CSS(`a[href*="gone%40example.org"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm")), chromedp.Click(chromedp.CSS("#confirm")),
		chromedp.WaitVisible(chromedp.CSS("#flash")), textOf("#suppressions", &text))
	if strings.Contains(text, "gone@example.org") {
		t.Errorf("gone@example.org still listed after its removal:\n%s", text)
	}
	if out, _ := r.cli("suppress", "list"); strings.Contains(out, "gone@example.org") {
		t.Errorf("gone@example.org still suppressed:\n%s", out)
	}

	// Forged requests, with the browser's own session cookie.
	var cookies []*network.Cookie
	run("cookies", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{})
		cookies = res.Cookies
		return err
	}))
	var session string
	for _, c := range cookies {
		if c.Name == "facteur_session" {
			session = c.Value
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict", c)
			}
		}
	}
	post := func(host, origin, form string) int {
		req, _ := http.NewRequest("POST", base+"/ui/queue/"+id+"/delete", strings.NewReader(form))
		req.Host = host
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", "facteur_session="+session)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, host, origin, form string
		want                     int
	}{
		{"no CSRF token", r.admin, base, "", http.StatusForbidden},
		{"wrong CSRF token", r.admin, base, "csrf=" + url.QueryEscape("x"), http.StatusForbidden},
		{"foreign origin", r.admin, "http://evil.example", "", http.StatusForbidden},
		{"foreign Host (DNS rebinding)", "evil.example:" + strings.Split(r.admin, ":")[1], "http://evil.example:" + strings.Split(r.admin, ":")[1], "", http.StatusMisdirectedRequest},
	} {
		if got := post(tc.host, tc.origin, tc.form); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	req, _ := http.NewRequest("GET", base+"/ui/queue", nil)
	req.Host = "evil.example"
	req.Header.Set("Cookie", "facteur_session="+session)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("GET with a foreign Host: %v %v", resp.Status, err)
	}
	if out, _ := r.cli("queue", "show", id); !strings.Contains(out, id) {
		t.Errorf("the message is gone after the forged deletes:\n%s", out)
	}

	// Resume Yahoo from its page.
	mu.Lock()
	tss04 = false
	mu.Unlock()
	run("resume", chromedp.Navigate(base+"/ui/providers"), chromedp.Click(chromedp.CSS(`#p-yahoo a.button`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm")), chromedp.Click(chromedp.CSS("#confirm")),
		chromedp.WaitVisible(chromedp.CSS("#flash")), textOf("#flash", &text))
	if !strings.Contains(text, "resumed yahoo") {
		t.Errorf("resume flash: %q", text)
	}
	r.waitLog(" resumed provider=yahoo")
	if strings.Contains(text, "suspended") {
		t.Errorf("yahoo still suspended after resume")
	}
	run("after resume", textOf("#summary", &text))
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "yahoo") && strings.Contains(l, "suspended") {
			t.Errorf("yahoo still suspended after resume: %q", l)
		}
	}

	// Every page as JSON through the admin API, with the bearer token.
	for _, p := range []string{"/", "/ui/providers", "/ui/senders", "/ui/queue?q=example.org", "/ui/suppressions"} {
		req, _ := http.NewRequest("GET", base+p, nil)
		req.Header.Set("Authorization", "Bearer "+dashToken)
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s as JSON: %v %v", p, resp.Status, err)
		}
		resp.Body.Close()
	}
}

// recipientsCounted sums the facteur_recipients_total series of metrics
// (Prometheus's text format) whose labels contain labels.
func recipientsCounted(metrics, labels string) int {
	n := 0
	for _, l := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(l, "facteur_recipients_total{") || !strings.Contains(l, labels) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(l[strings.LastIndex(l, " ")+1:], &v); err == nil {
			n += int(v)
		}
	}
	return n
}

// qidOf returns the queue ID of the first log line containing s.
func qidOf(t *testing.T, log, s string) string {
	t.Helper()
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			if f := strings.Fields(l); len(f) > 1 {
				return f[1]
			}
		}
	}
	t.Fatalf("no %q in the log", s)
	return ""
}
