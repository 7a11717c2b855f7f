package breaker

import (
	"testing"
	"time"
)

// A sender domain is public: a hacked site can put another site's domain
// in its envelope sender. Its failures trip sender_domain=THAT, but the
// trip must stop only the mail of the submitters whose failures tripped it,
// never the other local users that legitimately send from that domain
// (issue 21 §2: "other senders are untouched").
func TestForgedSenderDomainStopsOnlyTheForger(t *testing.T) {
	forger := Sender{User: "www-data", Address: "shop@victim.example"}
	victim := Sender{User: "alice", Address: "shop@victim.example"}
	authVictim := Sender{AuthUser: "bob", Address: "news@victim.example"}
	remote := Sender{Address: "x@victim.example"} // no known submitter
	for _, tc := range []struct {
		name    string
		per     []string
		sends   []send
		stopped map[string]bool // by sender name below
	}{
		{"user and sender_domain", []string{PerUser, PerSenderDomain},
			[]send{{s: forger, n: 25, status: Bounced}},
			map[string]bool{"forger": true, "victim": false, "authVictim": false, "remote": false}},
		{"sender_domain only", []string{PerSenderDomain},
			[]send{{s: forger, n: 25, status: Bounced}},
			map[string]bool{"forger": true, "victim": false, "authVictim": false, "remote": false}},
		{"unknown submitters trip it for unknown submitters", []string{PerUser, PerSenderDomain},
			[]send{{s: remote, n: 25, status: Bounced}},
			map[string]bool{"forger": false, "victim": false, "authVictim": false, "remote": true}},
		{"two culprits", []string{PerSenderDomain},
			[]send{{s: forger, n: 12, status: Bounced, rcpt: "a"}, {s: victim, n: 12, status: Bounced, rcpt: "b"}},
			map[string]bool{"forger": true, "victim": true, "authVictim": false, "remote": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultConfig()
			cfg.Per = tc.per
			b := New(cfg)
			var trips []Trip
			for _, sd := range tc.sends {
				trips = append(trips, sd.run(b)...)
			}
			tripped := false
			for _, tr := range trips {
				tripped = tripped || tr.Key == "sender_domain=victim.example"
			}
			if !tripped {
				t.Fatalf("sender_domain=victim.example did not trip: %+v", trips)
			}
			check := func(when string, b *Breaker) {
				for name, s := range map[string]Sender{"forger": forger, "victim": victim, "authVictim": authVictim, "remote": remote} {
					if _, got := b.Stopped(s); got != tc.stopped[name] {
						t.Errorf("%s: %s stopped = %v, want %v", when, name, got, tc.stopped[name])
					}
				}
			}
			check("live", b)
			// The culprits survive a restart.
			st, err := b.MarshalState(t0.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			b2 := New(cfg)
			if err := b2.RestoreState(st); err != nil {
				t.Fatal(err)
			}
			check("restored", b2)
		})
	}
}
