package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"facteur/relay/doctor"
	"facteur/relay/relaytest"
)

// doctor -mx: the MTA-STS and DANE lines for the domain's own MX hosts,
// with the binary, a signed zone on the loopback DNS server and an MX sink.
func TestDoctorMX(t *testing.T) {
	cert := relaytest.SelfSignedCert(t, "mx.good.test")
	sink := relaytest.NewSink(t, "127.0.15.120:0", relaytest.SinkOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	port := sink.Port()
	stranger := relaytest.NewCA(t).Cert()
	tlsa := func(host string) string { return fmt.Sprintf("_%d._tcp.%s", port, host) }
	dns := relaytest.NewDNS(t, map[string]relaytest.Zone{
		"good.test":          {MX: []relaytest.MX{{Host: "mx.good.test", Pref: 10}}, Secure: true},
		"mx.good.test":       {A: []string{"127.0.15.120"}, Secure: true},
		tlsa("mx.good.test"): {Secure: true, TLSA: []relaytest.TLSA{relaytest.TLSAFor(t, 3, 1, 1, cert.Leaf)}},
		"bad.test":           {MX: []relaytest.MX{{Host: "mx.bad.test", Pref: 10}}, Secure: true, TXT: []string{"v=spf1 -all"}},
		"mx.bad.test":        {A: []string{"127.0.15.120"}, Secure: true},
		tlsa("mx.bad.test"):  {Secure: true, TLSA: []relaytest.TLSA{relaytest.TLSAFor(t, 3, 1, 1, stranger)}},
		"_mta-sts.bad.test":  {TXT: []string{"v=STSv1; id=1;"}},
		"plain.test":         {MX: []relaytest.MX{{Host: "mx.good.test", Pref: 10}}},
		"bl.test":            {},
	})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "facteur.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "hostname: relay.test\ndata_dir: %s\nresolver: %s\ndelivery:\n  port: %d\n",
		filepath.Join(dir, "data"), dns.Addr(), port), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		domain string
		want   map[string]doctor.Status
		detail map[string]string
	}{
		{"good.test", map[string]doctor.Status{doctor.CheckDANE: doctor.OK, doctor.CheckMTASTS: doctor.Warn},
			map[string]string{doctor.CheckDANE: "DANE authenticated", doctor.CheckMTASTS: "no MTA-STS policy"}},
		{"bad.test", map[string]doctor.Status{doctor.CheckDANE: doctor.Fail, doctor.CheckMTASTS: doctor.Fail},
			map[string]string{doctor.CheckDANE: "does not match its TLSA", doctor.CheckMTASTS: "no policy can be used"}},
		{"plain.test", map[string]doctor.Status{doctor.CheckDANE: doctor.Warn},
			map[string]string{doctor.CheckDANE: "not DNSSEC-signed"}},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			out, stderr, _ := doctorRun(t, "-domain", tt.domain, "-config", cfg, "-mx", "-dnsbl", "bl.test", "-ip", "127.0.15.121", "--json")
			var fs []doctor.Finding
			if err := json.Unmarshal([]byte(out), &fs); err != nil {
				t.Fatalf("%v\n%s\n%s", err, out, stderr)
			}
			got := map[string]doctor.Finding{}
			for _, f := range fs {
				if f.Check == doctor.CheckDANE || f.Check == doctor.CheckMTASTS {
					got[f.Check] = f
				}
			}
			for check, st := range tt.want {
				if f := got[check]; f.Status != st || !strings.Contains(f.Detail, tt.detail[check]) {
					t.Errorf("%s: %+v, want %s with %q", check, f, st, tt.detail[check])
				}
			}
		})
	}
	// Without -mx, no such line.
	out, _, _ := doctorRun(t, "-domain", "good.test", "-config", cfg, "-dnsbl", "bl.test", "--json")
	if strings.Contains(out, `"dane"`) || strings.Contains(out, `"mta-sts"`) {
		t.Errorf("doctor without -mx checked the MX:\n%s", out)
	}
}
