package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"facteur/relay/relaytest"
)

// Issue 17 end to end: a pool of 127.0.0.2 and 127.0.0.3 for shop.example,
// 127.0.0.3 on warm-up day 0 (20 a day) with overflow: warm, sixty messages
// from Python's smtplib to a fake Yahoo MX: 20 leave from 127.0.0.3 and 40
// from 127.0.0.2, and `providers --json` and `status` say so.
func TestPoolsWarmupE2E(t *testing.T) {
	need(t, "python3")
	today := time.Now().UTC().Format(time.DateOnly)
	r := startRelay(t, relayOpts{sinkIP: "127.0.0.5", extraConfig: fmt.Sprintf(`pools:
  shop:
    ips:
      - 127.0.0.2
      - {addr: 127.0.0.3, ehlo: out3.relay.test, warmup: {start: %s, schedule: [20, 200]}}
    overflow: warm
pool_by:
  sender_domain: {shop.example: shop}
`, today)})
	r.dns.Set("yahoo.com", relaytest.Zone{MX: []relaytest.MX{{Host: "mta5.am0.yahoodns.net", Pref: 1}}})
	r.dns.Set("mta5.am0.yahoodns.net", relaytest.Zone{A: []string{"127.0.0.5"}})
	const n = 60
	script := `
import smtplib, sys
from email.message import EmailMessage
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port)) as s:
    for i in range(int(sys.argv[2])):
        m = EmailMessage()
        m["From"] = "news@shop.example"
        m["To"] = "user%d@yahoo.com" % i
        m["Subject"] = "news %d" % i
        m.set_content("Hello.\n")
        s.send_message(m)
`
	runTool(t, nil, "", "python3", "-c", script, r.smtp, fmt.Sprint(n))
	msgs := r.wait(n)
	from := map[string]int{}
	for _, m := range msgs {
		host, _, _ := strings.Cut(m.RemoteAddr, ":")
		from[host]++
		if host == "127.0.0.3" && m.EHLO != "out3.relay.test" {
			t.Errorf("127.0.0.3 said EHLO %q", m.EHLO)
		}
	}
	if from["127.0.0.3"] != 20 || from["127.0.0.2"] != 40 {
		t.Fatalf("messages by source: %v", from)
	}
	r.waitLog("source_ip=127.0.0.3")

	out, err := r.cli("providers", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var states []struct {
		Name string `json:"name"`
		IPs  []struct {
			Addr        string  `json:"addr"`
			Pool        string  `json:"pool"`
			Connections *int    `json:"connections"`
			SentToday   int     `json:"sent_today"`
			CapToday    *int    `json:"cap_today"`
			Until       *string `json:"suspended_until"`
			Reason      *string `json:"suspended_reason"`
		} `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &states); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	found := false
	for _, s := range states {
		if s.Name != "yahoo" {
			continue
		}
		found = true
		if len(s.IPs) != 2 {
			t.Fatalf("yahoo ips %+v", s.IPs)
		}
		for _, ip := range s.IPs {
			switch {
			case ip.Pool != "shop" || ip.Connections == nil || ip.Until != nil:
				t.Errorf("ip %+v", ip)
			case ip.Addr == "127.0.0.3" && (ip.SentToday != 20 || ip.CapToday == nil || *ip.CapToday != 20):
				t.Errorf("127.0.0.3: sent %d cap %v", ip.SentToday, ip.CapToday)
			case ip.Addr == "127.0.0.2" && (ip.SentToday != 40 || ip.CapToday != nil):
				t.Errorf("127.0.0.2: sent %d cap %v", ip.SentToday, ip.CapToday)
			}
		}
	}
	if !found {
		t.Fatalf("no yahoo in %s", out)
	}
	if txt, err := r.cli("providers"); err != nil || !strings.Contains(txt, "from 127.0.0.3") || !strings.Contains(txt, "20/20 today (warm-up)") || !strings.Contains(txt, "40 today") {
		t.Errorf("providers: %v\n%s", err, txt)
	}
	st, err := r.cli("status")
	if err != nil || !strings.Contains(st, "pool shop (overflow: warm)") || !strings.Contains(st, "127.0.0.3 (out3.relay.test)  warm-up day 0, 20 a day per provider") || !strings.Contains(st, "127.0.0.2  warm") {
		t.Fatalf("status: %v\n%s", err, st)
	}
	if _, err := r.cli("config", "check"); err != nil {
		t.Fatalf("config check: %v", err)
	}
	// The counts survive the daemon: saved at shutdown, read back by the
	// offline `providers --json` (and by the next start).
	r.stop()
	out, err = r.cli("providers", "--json")
	if err != nil {
		t.Fatal(err)
	}
	states = nil
	if err := json.Unmarshal([]byte(out), &states); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	kept := false
	for _, s := range states {
		for _, ip := range s.IPs {
			if s.Name == "yahoo" && ip.Addr == "127.0.0.3" && ip.SentToday == 20 && ip.CapToday != nil && *ip.CapToday == 20 {
				kept = true
			}
		}
	}
	if !kept {
		t.Fatalf("offline providers --json lost the warm-up counts:\n%s", out)
	}
}

// `config check` refuses an IP this host cannot bind, unless
// --no-bind-check.
func TestConfigCheckBind(t *testing.T) {
	bin, _ := binaries(t)
	cfg := t.TempDir() + "/facteur.yaml"
	if err := os.WriteFile(cfg, []byte("hostname: relay.test\ndata_dir: "+t.TempDir()+"\npools: {p: {ips: [127.0.0.2, 192.0.2.77]}}\npool_by: {default: p}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, bin: bin, config: cfg}
	out, err := r.cli("config", "check")
	if err == nil || !strings.Contains(err.Error(), "pools.p.ips[1]: 192.0.2.77 is not an address of this host") || strings.Contains(err.Error(), "127.0.0.2 is not") {
		t.Fatalf("config check: %v %s", err, out)
	}
	if out, err := r.cli("config", "check", "--no-bind-check"); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("--no-bind-check: %v %s", err, out)
	}
}
