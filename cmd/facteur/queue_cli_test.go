package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"facteur/queue"
	"facteur/queue/maildrop"
	"facteur/relay/relaytest"
)

// seedFlood fills a fresh queue database with the night a site is hacked:
// five messages from one sender, client and user, and two legitimate ones
// already tried once and deferred for hours. It returns their IDs.
func seedFlood(t *testing.T, e *cliEnv) (flood, legit []queue.ID) {
	t.Helper()
	if err := os.MkdirAll(e.dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	s, err := queue.Open(filepath.Join(e.dataDir, "queue.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	body := func(subj string) []byte {
		return []byte("From: x\r\nSubject: " + subj + "\r\n\r\nline one\r\nline two\r\n")
	}
	for i := range 5 {
		id, err := s.Enqueue(ctx, queue.Envelope{Sender: fmt.Sprintf("wp%d@hacked.example", i), Recipients: []string{fmt.Sprintf("v%d@victim.example", i)},
			ClientIP: "127.0.0.3", User: "www-data", UID: 33}, body("Cheap pills"), now.Add(-time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, id)
	}
	for i := range 2 {
		rcpt := fmt.Sprintf("customer%d@legit.example", i)
		id, err := s.Enqueue(ctx, queue.Envelope{Sender: "shop@legit.example", Recipients: []string{rcpt}, ClientIP: "127.0.0.1", User: "shop", UID: 1001},
			body("Your order"), now.Add(-3*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Record(ctx, id, []queue.Update{{Rcpt: rcpt, Status: queue.Deferred, NextAttempt: now.Add(4 * time.Hour),
			Attempted: true, At: now.Add(-2 * time.Hour), MX: "mx.legit.example", Response: "451 4.7.1 greylisted", Provider: "default"}}); err != nil {
			t.Fatal(err)
		}
		legit = append(legit, id)
	}
	return flood, legit
}

func queueListJSON(t *testing.T, e *cliEnv, args ...string) []queue.Message {
	t.Helper()
	out := e.ok("", append([]string{"queue", "list", "--json"}, args...)...)
	var msgs []queue.Message
	if err := json.Unmarshal([]byte(out), &msgs); err != nil {
		t.Fatalf("queue list --json %v: %v\n%s", args, err, out)
	}
	return msgs
}

// TestQueueFilters runs the queue tools as an operator would the night a site
// is hacked, with the daemon down (the same handlers answer from the
// database): every filter selects what it says, bad input exits non-zero,
// and the legitimate mail is never touched.
func TestQueueFilters(t *testing.T) {
	e := newCLIEnv(t, "")
	flood, legit := seedFlood(t, e)
	legitBefore := queueListJSON(t, e, "--sender", "shop@legit.example")

	lists := []struct {
		name string
		args []string
		want int
	}{
		{"everything", nil, 7},
		{"sender glob", []string{"--sender", "*@hacked.example"}, 5},
		{"sender exact", []string{"--sender", "wp1@hacked.example"}, 1},
		{"client prefix", []string{"--client-ip", "127.0.0.0/8"}, 7},
		{"client address", []string{"--client-ip", "127.0.0.3"}, 5},
		{"user", []string{"--user", "www-data"}, 5},
		{"domain", []string{"--domain", "legit.example"}, 2},
		{"provider", []string{"--provider", "default"}, 7},
		{"status", []string{"--status", "deferred"}, 2},
		{"older than", []string{"--older-than", "1h"}, 2},
		{"younger than", []string{"--younger-than", "1h"}, 5},
		{"combined", []string{"--user", "www-data", "--client-ip", "127.0.0.3", "--sender", "wp*"}, 5},
		{"combined, disjoint", []string{"--user", "www-data", "--domain", "legit.example"}, 0},
		{"IDs", []string{string(flood[0]), string(legit[1])}, 2},
		{"ID and filter", []string{string(flood[0]), "--user", "shop"}, 0},
	}
	for _, tt := range lists {
		t.Run("list "+tt.name, func(t *testing.T) {
			if got := queueListJSON(t, e, tt.args...); len(got) != tt.want {
				t.Errorf("queue list %v: %d messages, want %d", tt.args, len(got), tt.want)
			}
		})
	}

	ghost := queue.NewID(time.Now())
	refused := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"list junk", "", []string{"queue", "list", "junk"}, "junk"},
		{"list missing ID", "", []string{"queue", "list", string(ghost)}, "no such message"},
		{"bad client ip", "", []string{"queue", "list", "--client-ip", "foo"}, "foo"},
		{"bad prefix", "", []string{"queue", "flush", "--client-ip", "10.0.0.0/40"}, "10.0.0.0/40"},
		{"bad status", "", []string{"queue", "list", "--status", "lost"}, "lost"},
		{"bad duration", "", []string{"queue", "hold", "--older-than", "soon"}, "soon"},
		{"delete without selection", "", []string{"queue", "delete"}, "--all"},
		{"hold without selection", "", []string{"queue", "hold"}, "--all"},
		{"release without selection", "", []string{"queue", "release"}, "--all"},
		{"all with a filter", "", []string{"queue", "delete", "--all", "--user", "shop"}, "--all"},
		{"filter show cannot take", "", []string{"queue", "show", string(flood[0]), "--sender", "x"}, "sender"},
		{"body list cannot take", "", []string{"queue", "list", "--body"}, "body"},
		{"all flush cannot take", "", []string{"queue", "flush", "--all"}, "all"},
		{"hold missing ID", "", []string{"queue", "hold", string(flood[0]), string(ghost)}, string(ghost)},
		{"release missing ID", "", []string{"queue", "release", string(ghost)}, "no such message"},
		{"empty stdin", "", []string{"queue", "delete", "-"}, "no ID"},
		{"junk on stdin", "junk\n", []string{"queue", "delete", "-"}, "junk"},
		{"unknown subcommand", "", []string{"queue", "purge"}, "purge"},
	}
	for _, tt := range refused {
		t.Run("refused "+tt.name, func(t *testing.T) {
			r := e.run(tt.stdin, tt.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("facteur %v: exit %d, stderr %q; want non-zero and %q", tt.args, r.code, r.stderr, tt.want)
			}
		})
	}
	// A refused hold of two IDs, one missing, held neither.
	if got := queueListJSON(t, e, "--status", "held"); len(got) != 0 {
		t.Fatalf("a refused command held %d messages", len(got))
	}

	steps := []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"queue", "hold", "--sender", "*@hacked.example", "--client-ip", "127.0.0.3"}, "5 messages held"},
		// An ID that does not match the filter given with it is not held.
		{"", []string{"queue", "hold", string(legit[0]), "--sender", "wp0@hacked.example"}, "0 messages held"},
		{"", []string{"queue", "release", string(flood[0]), string(flood[1])}, "2 messages released"},
		{"", []string{"queue", "flush", "--client-ip", "127.0.0.3"}, "message"},
		{"", []string{"queue", "hold", "--user", "www-data"}, "2 messages held"},
		{string(flood[0]) + "\n" + string(flood[1]) + "\n" + string(flood[2]) + "\n", []string{"queue", "delete", "-"}, "3 messages deleted"},
		{"", []string{"queue", "delete", "--user", "www-data", "--status", "held"}, "2 messages deleted"},
	}
	for _, st := range steps {
		if out := e.ok(st.stdin, st.args...); !strings.Contains(out, st.want) {
			t.Fatalf("facteur %v = %q, want %q", st.args, out, st.want)
		}
	}
	after := queueListJSON(t, e)
	if len(after) != 2 {
		t.Fatalf("left in the queue: %d messages, want the 2 legitimate ones", len(after))
	}
	b1, _ := json.Marshal(legitBefore)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Errorf("the legitimate mail changed:\nbefore %s\nafter  %s", b1, b2)
	}
	if out := e.ok("", "queue", "list", "--user", "www-data"); !strings.Contains(out, "No queued message matches") {
		t.Errorf("empty filtered list says %q", out)
	}
}

func TestQueueShow(t *testing.T) {
	e := newCLIEnv(t, "")
	flood, legit := seedFlood(t, e)
	out := e.ok("", "queue", "show", string(legit[0]))
	for _, want := range []string{"*** ENVELOPE " + string(legit[0]), "sender:    shop@legit.example", "client:    127.0.0.1",
		"user:      shop (uid 1001)", "recipient: customer0@legit.example [deferred default, 1 attempt, next ",
		"mx.legit.example  451 4.7.1 greylisted", "*** HEADER ***", "Subject: Your order", "*** END ***"} {
		if !strings.Contains(out, want) {
			t.Errorf("queue show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "line one") {
		t.Errorf("queue show without --body printed the body:\n%s", out)
	}
	out = e.ok("", "queue", "show", string(flood[0]), "--body")
	if !strings.Contains(out, "*** BODY ***\nline one\nline two\n*** END ***") {
		t.Errorf("queue show --body:\n%s", out)
	}
	var js struct {
		ID         string `json:"id"`
		User       string `json:"user"`
		Header     string `json:"header"`
		Body       string `json:"body"`
		Recipients []struct {
			History []struct {
				MX       string `json:"mx"`
				Response string `json:"response"`
				At       string `json:"at"`
			} `json:"history"`
		} `json:"recipients"`
	}
	if err := json.Unmarshal([]byte(e.ok("", "queue", "show", string(legit[0]), "--json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.User != "shop" || !strings.Contains(js.Header, "Subject: Your order") || js.Body != "" ||
		len(js.Recipients) != 1 || len(js.Recipients[0].History) != 1 || js.Recipients[0].History[0].MX != "mx.legit.example" {
		t.Errorf("queue show --json = %+v", js)
	}
	if _, err := time.Parse(time.RFC3339, js.Recipients[0].History[0].At); err != nil {
		t.Errorf("history time %q is not RFC 3339", js.Recipients[0].History[0].At)
	}
	// The text listing shows the client, the user and the size, with zoned times.
	out = e.ok("", "queue", "list", string(flood[0]))
	zone := time.Now().Format("MST")
	for _, want := range []string{"client=127.0.0.3 user=www-data (uid 33)", " " + zone + " ", "wp0@hacked.example"} {
		if !strings.Contains(out, want) {
			t.Errorf("queue list lacks %q:\n%s", want, out)
		}
	}
}

func TestQueueHelp(t *testing.T) {
	e := newCLIEnv(t, "")
	for _, args := range [][]string{{"queue", "--help"}, {"queue", "help"}, {"queue", "list", "--help"}, {"queue", "show", "-h"}} {
		r := e.run("", args...)
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "usage: facteur queue") {
			t.Errorf("facteur %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	r := e.run("", "queue", "show", "--help")
	if strings.Contains(r.stdout+r.stderr, "-sender") || !strings.Contains(r.stdout+r.stderr, "-body") {
		t.Errorf("queue show --help shows flags it cannot take, or not --body:\n%s%s", r.stdout, r.stderr)
	}
}

// TestQueueNoDatabase: with no database and no daemon, the tools say so
// instead of "Mail queue is empty".
func TestQueueNoDatabase(t *testing.T) {
	e := newCLIEnv(t, "")
	r := e.run("", "queue", "list")
	if r.code == 0 || strings.Contains(r.stdout, "Mail queue is empty") || !strings.Contains(r.stderr, "no queue database") {
		t.Errorf("queue list without a database: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
}

// TestTop finds the hacked site from the queue alone (daemon down): the user,
// client, recipient domain and subject of the flood come first.
func TestTop(t *testing.T) {
	e := newCLIEnv(t, "")
	seedFlood(t, e)
	var rep struct {
		Messages int `json:"messages"`
		LastHour int `json:"last_hour"`
		Users    []struct {
			Key   string `json:"key"`
			Queue struct {
				Messages int            `json:"messages"`
				States   map[string]int `json:"states"`
			} `json:"queue"`
			LastHour struct {
				Messages int `json:"messages"`
			} `json:"last_hour"`
		} `json:"users"`
		Clients  []struct{ Key string } `json:"clients"`
		Domains  []struct{ Key string } `json:"domains"`
		Subjects []struct{ Key string } `json:"subjects"`
		Senders  []struct{ Key string } `json:"senders"`
	}
	if err := json.Unmarshal([]byte(e.ok("", "top", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Messages != 7 || rep.LastHour != 5 {
		t.Errorf("messages %d, last hour %d; want 7 and 5", rep.Messages, rep.LastHour)
	}
	u := rep.Users[0]
	if u.Key != "www-data" || u.Queue.Messages != 5 || u.Queue.States["queued"] != 5 || u.LastHour.Messages != 5 {
		t.Errorf("top user %+v", u)
	}
	if rep.Clients[0].Key != "127.0.0.3" || rep.Domains[0].Key != "victim.example" || rep.Subjects[0].Key != "Cheap pills" || rep.Senders[0].Key != "shop@legit.example" {
		t.Errorf("top client %v, domain %v, subject %v, sender %v", rep.Clients[0], rep.Domains[0], rep.Subjects[0], rep.Senders[0])
	}
	out := e.ok("", "top")
	for _, want := range []string{"Local users", "www-data", "queued 5", "Cheap pills", "daemon is not running"} {
		if !strings.Contains(out, want) {
			t.Errorf("top lacks %q:\n%s", want, out)
		}
	}
}

// TestTopLastHourWithDaemon: messages already delivered still count in the
// last hour, with their outcome.
func TestTopLastHourWithDaemon(t *testing.T) {
	r := startRelay(t, relayOpts{})
	env := []string{"FACTEUR_CONFIG=" + r.config}
	for i := range 3 {
		runTool(t, env, "Subject: Flood\n\nx\n", r.shim, "-i", "-f", "wp@hacked.example", fmt.Sprintf("v%d@example.org", i))
	}
	r.wait(3)
	r.waitLog(" delivered rcpt=<v2@example.org>")
	out, err := r.cli("top", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		LastHour int `json:"last_hour"`
		Senders  []struct {
			Key      string `json:"key"`
			LastHour struct {
				Messages int            `json:"messages"`
				States   map[string]int `json:"states"`
			} `json:"last_hour"`
		} `json:"senders"`
		Subjects []struct{ Key string } `json:"subjects"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.LastHour != 3 || len(rep.Senders) == 0 || rep.Senders[0].Key != "wp@hacked.example" || rep.Senders[0].LastHour.States["delivered"] != 3 || rep.Subjects[0].Key != "Flood" {
		t.Errorf("top: %s", out)
	}
}

// TestHackedSiteNight is the scenario with a running daemon: a flood
// from one sender and client (python smtplib from 127.0.0.3) among
// legitimate mail that a receiver greylists; top finds it, it is held,
// inspected with show --body, deleted by filter and by IDs on stdin, and the
// legitimate mail's attempts and next_attempt never change.
func TestHackedSiteNight(t *testing.T) {
	need(t, "python3")
	r := startRelay(t, relayOpts{sinkOpts: relaytest.SinkOptions{Rcpt: func(string) error {
		return &smtpError{Code: 451, EnhancedCode: [3]int{4, 7, 1}, Message: "greylisted, try again later"}
	}}})
	env := []string{"FACTEUR_CONFIG=" + r.config}
	for i := range 2 {
		runTool(t, env, "Subject: Your order\n\nthanks\n", r.shim, "-i", "-f", "shop@legit.example", fmt.Sprintf("customer%d@example.org", i))
	}
	r.waitLog(" deferred rcpt=<customer1@example.org>")
	legit := func() string {
		out, err := r.cli("queue", "list", "--json", "--sender", "shop@legit.example")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := legit()
	flood := `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), source_address=("127.0.0.3", 0))
for i in range(6):
    s.sendmail("wp-%d@hacked.example" % i, ["victim%d@example.org" % i], "Subject: Cheap pills\r\n\r\nbuy now\r\n")
s.quit()
`
	host, port, _ := strings.Cut(r.smtp, ":")
	runTool(t, nil, "", "python3", "-c", flood, host, port)
	r.waitLog(" deferred rcpt=<victim5@example.org>")

	out, err := r.cli("top", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var top struct {
		Clients  []struct{ Key string } `json:"clients"`
		Subjects []struct{ Key string } `json:"subjects"`
	}
	if err := json.Unmarshal([]byte(out), &top); err != nil || top.Clients[0].Key != "127.0.0.3" || top.Subjects[0].Key != "Cheap pills" {
		t.Fatalf("top: %v\n%s", err, out)
	}
	if out, err := r.cli("queue", "hold", "--client-ip", "127.0.0.3", "--sender", "*@hacked.example"); err != nil || !strings.Contains(out, "6 messages held") {
		t.Fatalf("hold: %v %q", err, out)
	}
	out, err = r.cli("queue", "list", "--json", "--status", "held")
	if err != nil {
		t.Fatal(err)
	}
	var held []queue.Message
	if err := json.Unmarshal([]byte(out), &held); err != nil || len(held) != 6 {
		t.Fatalf("held: %v %d", err, len(held))
	}
	if out, err := r.cli("queue", "show", string(held[0].ID), "--body"); err != nil || !strings.Contains(out, "buy now") || !strings.Contains(out, "client:    127.0.0.3") {
		t.Fatalf("show --body: %v\n%s", err, out)
	}
	if out, err := r.cli("queue", "flush", "--client-ip", "127.0.0.3"); err != nil || !strings.Contains(out, "0 messages flushed") {
		t.Fatalf("flush of held mail: %v %q", err, out)
	}
	ids := string(held[0].ID) + "\n" + string(held[1].ID) + "\n"
	cmd := boundedCommand(t, r.bin, "queue", "delete", "-", "-config", r.config)
	cmd.Stdin = strings.NewReader(ids)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "2 messages deleted") {
		t.Fatalf("delete -: %v %s", err, out)
	}
	if out, err := r.cli("queue", "delete", "--sender", "*@hacked.example"); err != nil || !strings.Contains(out, "4 messages deleted") {
		t.Fatalf("delete by filter: %v %q", err, out)
	}
	if after := legit(); after != before {
		t.Errorf("the legitimate mail changed:\nbefore %s\nafter  %s", before, after)
	}
	for _, ev := range []string{" held ", " deleted "} {
		if !strings.Contains(r.logText(), ev) {
			t.Errorf("no%sline in the log", ev)
		}
	}
}

// With the daemon down and mail in the maildrop, queue list says so rather
// than "Mail queue is empty".
func TestQueueListShowsMaildrop(t *testing.T) {
	e := newCLIEnv(t, "")
	os.MkdirAll(e.dataDir, 0o750)
	s, err := queue.Open(filepath.Join(e.dataDir, "queue.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	drop := filepath.Join(e.dataDir, "maildrop")
	if err := maildrop.Init(drop, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := maildrop.Write(drop, maildrop.Envelope{Sender: "root", Recipients: []string{"root"}, UID: os.Getuid(), User: "root", Time: time.Now()}, strings.NewReader("Subject: cron\r\n\r\nout\r\n")); err != nil {
		t.Fatal(err)
	}
	out := e.ok("", "queue", "list")
	if strings.Contains(out, "Mail queue is empty") || !strings.Contains(out, "1 message waiting in the maildrop") {
		t.Errorf("queue list with mail in the maildrop:\n%s", out)
	}
}
