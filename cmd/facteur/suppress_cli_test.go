package main

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/config"
)

// enqueueHeld puts one held message in env's database (the daemon must be
// down): held, so that a daemon started later never tries it, yet a
// suppression still cancels it (held is not final).
func enqueueHeld(t *testing.T, e *cliEnv, sender string, rcpts ...string) queue.ID {
	t.Helper()
	if err := os.MkdirAll(e.dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	s, err := queue.Open(admin.DBPath(&config.Config{DataDir: e.dataDir}), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := []byte("From: <" + sender + ">\r\nTo: <" + rcpts[0] + ">\r\nSubject: hello\r\n\r\nhello\r\n")
	id, err := s.Enqueue(t.Context(), queue.Envelope{Sender: sender, Recipients: rcpts}, body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	return id
}

// queueOf returns the messages of env's queue: through the daemon when it
// runs, else from the database.
func queueOf(t *testing.T, e *cliEnv) []queue.Message {
	t.Helper()
	var msgs []queue.Message
	if e.log != nil {
		if err := json.Unmarshal([]byte(e.ok("", "queue", "list", "--json")), &msgs); err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	s, err := queue.Open(admin.DBPath(&config.Config{DataDir: e.dataDir}), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msgs, err = s.List(t.Context(), queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// suppressionJSON is the contract of `suppress list --json`.
type suppressionJSON struct {
	Address   string    `json:"address"`
	Reason    string    `json:"reason"`
	Response  *string   `json:"response"`
	Source    string    `json:"source"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Count     int       `json:"count"`
}

func listJSON(t *testing.T, e *cliEnv, args ...string) map[string]suppressionJSON {
	t.Helper()
	var list []suppressionJSON
	out := e.ok("", append([]string{"suppress", "list", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("suppress list --json: %v\n%s", err, out)
	}
	m := map[string]suppressionJSON{}
	for _, s := range list {
		if s.Response == nil || s.FirstSeen.IsZero() || s.LastSeen.IsZero() || s.Source == "" || s.Reason == "" {
			t.Errorf("suppress list --json: incomplete entry %+v in %s", s, out)
		}
		m[s.Address] = s
	}
	return m
}

func TestSuppressCLI(t *testing.T) {
	for _, daemonUp := range []bool{false, true} {
		name := "daemon down"
		if daemonUp {
			name = "daemon up"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src, dst := newCLIEnv(t, ""), newCLIEnv(t, "")
			id := enqueueHeld(t, src, "app@example.com", "carol@example.org", "dave@example.org")
			if daemonUp {
				src.startDaemon()
				dst.startDaemon()
			}

			if out := src.ok("", "suppress", "list"); !strings.Contains(out, "empty") {
				t.Errorf("empty list: %q", out)
			}
			if out := src.ok("", "suppress", "add", "Bob@Example.ORG", "--reason", "user_unknown"); out != "suppressed bob@example.org (user_unknown); 0 queued recipients cancelled\n" {
				t.Errorf("add: %q", out)
			}
			src.ok("", "suppress", "add", "--reason", "user_unknown", "bob@example.org")
			if out := src.ok("", "suppress", "add", "carol@example.org"); out != "suppressed carol@example.org (manual); 1 queued recipient cancelled\n" {
				t.Errorf("add with mail queued: %q", out)
			}
			src.ok("", "suppress", "add", "erin@example.net")

			for _, r := range []struct {
				args []string
				code int
			}{
				{[]string{"suppress", "add", "not an address"}, 1},
				{[]string{"suppress", "add", "x@example.org", "--reason", ""}, 1},
				{[]string{"suppress", "add"}, 2},
				{[]string{"suppress", "remove", "nobody@example.org"}, 1},
				{[]string{"suppress", "frob"}, 2},
			} {
				if got := src.run("", r.args...); got.code != r.code || got.stderr == "" {
					t.Errorf("%v: exit %d (want %d), stderr %q", r.args, got.code, r.code, got.stderr)
				}
			}

			list := listJSON(t, src)
			bob := list["bob@example.org"]
			if len(list) != 3 || bob.Reason != "user_unknown" || bob.Source != "manual" || bob.Count != 2 || bob.LastSeen.Before(bob.FirstSeen) {
				t.Errorf("list after adds: %+v", list)
			}
			if out := src.ok("", "suppress", "list"); !strings.Contains(out, "bob@example.org") || !strings.HasPrefix(out, "ADDRESS") {
				t.Errorf("text list: %q", out)
			}

			// The queued recipient was cancelled, its sender told; the other
			// recipient of the message is untouched.
			var dsnTo []string
			for _, m := range queueOf(t, src) {
				if m.ID == id {
					for _, r := range m.Recipients {
						want := map[string]queue.Status{"carol@example.org": queue.Suppressed, "dave@example.org": queue.Held}[r.Address]
						if r.Status != want {
							t.Errorf("%s <%s> is %s, want %s", id, r.Address, r.Status, want)
						}
					}
				}
				if m.IsDSN && m.Sender == "" {
					for _, r := range m.Recipients {
						dsnTo = append(dsnTo, r.Address)
					}
				}
			}
			if strings.Join(dsnTo, ",") != "app@example.com" {
				t.Errorf("DSNs queued to %v, want one to app@example.com", dsnTo)
			}

			export := src.ok("", "suppress", "export")
			lines := strings.Split(strings.TrimSpace(export), "\n")
			if len(lines) != 4 || lines[0] != "address,reason,response,source,first_seen,last_seen,expires,count" {
				t.Errorf("export:\n%s", export)
			}
			file := dst.write("export.csv", export)
			if out := dst.ok("", "suppress", "import", file); out != "imported 3 suppressions; 0 queued recipients cancelled\n" {
				t.Errorf("import: %q", out)
			}
			if got := dst.ok("", "suppress", "export"); got != export {
				t.Errorf("export → import → export differs:\n%s\nwant\n%s", got, export)
			}

			if out := src.ok("", "suppress", "remove", "BOB@example.org"); !strings.Contains(out, "bob@example.org removed") {
				t.Errorf("remove: %q", out)
			}
			if list := listJSON(t, src); len(list) != 2 || list["bob@example.org"].Address != "" {
				t.Errorf("after remove: %+v", list)
			}
			if daemonUp {
				log := src.log.String()
				for _, w := range []string{
					`suppressed rcpt=<bob@example.org> class=user_unknown source=manual`,
					`suppressed rcpt=<carol@example.org> class=manual source=manual`,
					string(id) + " suppressed rcpt=<carol@example.org>",
				} {
					if !strings.Contains(log, w) {
						t.Errorf("daemon log lacks %q:\n%s", w, log)
					}
				}
			}
		})
	}
}

func TestSuppressImportCLI(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, "")
	tests := []struct {
		name    string
		content string
		// want is the list after the import, by address → source; nil
		// when the import must fail.
		want    map[string]string
		wantErr []string
	}{
		{"bare addresses", "a@example.org\nB@example.org\n", map[string]string{"a@example.org": "manual", "b@example.org": "manual"}, nil},
		{"columns in any order, some missing", "source,address\ndsn,c@example.org\n", map[string]string{"c@example.org": "dsn"}, nil},
		{"JSON of list --json", `[{"address":"d@example.org","reason":"user_unknown","source":"smtp","first_seen":"2026-01-02T03:04:05Z","last_seen":"2026-01-03T03:04:05Z"}]`, map[string]string{"d@example.org": "smtp"}, nil},
		{"every bad row named, nothing imported", "address,source,first_seen,count\nok@example.org,manual,,1\nnoat,manual,,1\nx@example.org,carrier-pigeon,,1\ny@example.org,manual,yesterday,1\nz@example.org,manual,,-3\n", nil,
			[]string{"bad.csv:3:", "bad.csv:4:", "carrier-pigeon", "bad.csv:5:", "yesterday", "bad.csv:6:"}},
		{"unknown column", "address,colour\na@example.org,red\n", nil, []string{"bad.csv:1:", `"colour"`}},
		{"no address column", "reason,source\nx,manual\n", nil, []string{"no address column"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "ok.csv"
			if tt.want == nil {
				name = "bad.csv"
			}
			before := e.ok("", "suppress", "export")
			r := e.run("", "suppress", "import", e.write(name, tt.content))
			if tt.want == nil {
				if r.code != 1 {
					t.Fatalf("exit %d, want 1; stdout %q", r.code, r.stdout)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr %q lacks %q", r.stderr, w)
					}
				}
				if after := e.ok("", "suppress", "export"); after != before {
					t.Errorf("a refused import changed the list:\n%s", after)
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			list := listJSON(t, e)
			for addr, src := range tt.want {
				if list[addr].Source != src {
					t.Errorf("%s: source %q, want %q (list %+v)", addr, list[addr].Source, src, list)
				}
			}
		})
	}
}

// TestSuppressListExpired: an expired host_unknown entry is not listed
// (it no longer suppresses) unless --all, but is exported.
func TestSuppressListExpired(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, "")
	past := time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
	gone := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	e.ok("", "suppress", "import", e.write("l.csv", "address,reason,source,first_seen,last_seen,expires\nold@gone.example,host_unknown,smtp,"+past+","+past+","+gone+"\n"))
	if l := listJSON(t, e); len(l) != 0 {
		t.Errorf("expired entry listed: %+v", l)
	}
	if l := listJSON(t, e, "--all"); l["old@gone.example"].Reason != "host_unknown" {
		t.Errorf("--all: %+v", l)
	}
	if out := e.ok("", "suppress", "export"); !strings.Contains(out, "old@gone.example,host_unknown,,smtp,") {
		t.Errorf("export lacks the expired entry: %s", out)
	}
}

// TestSuppressOfflineDatabaseOwner: a database that root creates with the
// daemon down belongs to data_dir's owner, so that the daemon, running as
// that user, can open it.
func TestSuppressOfflineDatabaseOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cmd/facteur: needs root to give a file away")
	}
	t.Parallel()
	e := newCLIEnv(t, "")
	if err := os.MkdirAll(e.dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(e.dataDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	e.ok("", "suppress", "add", "bob@example.org")
	fi, err := os.Stat(admin.DBPath(&config.Config{DataDir: e.dataDir}))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
		t.Errorf("queue.db owned by %d:%d, want 65534:65534", st.Uid, st.Gid)
	}
}
