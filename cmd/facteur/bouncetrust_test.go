package main

import (
	"reflect"
	"testing"

	"facteur/policy/bounce"
)

func TestTrustedRecipients(t *testing.T) {
	alice := bounce.Recipient{Address: "alice@example.org", Suppress: true}
	victim := bounce.Recipient{Address: "victim@example.org", Suppress: true}
	fwd := bounce.Recipient{Address: "alice.forward@elsewhere.example", Suppress: true}
	fwdAsAlice := fwd
	fwdAsAlice.Address = "alice@example.org"
	tests := []struct {
		name          string
		rep           bounce.Report
		trust         bool
		wantTrusted   []bounce.Recipient
		wantUntrusted []bounce.Recipient
	}{
		{"DSN without token", bounce.Report{Kind: bounce.KindDSN, Recipients: []bounce.Recipient{victim}}, false, nil, []bounce.Recipient{victim}},
		{"ARF without token", bounce.Report{Kind: bounce.KindARF, Recipients: []bounce.Recipient{victim}}, false, nil, []bounce.Recipient{victim}},
		{"without token, trust_untokened", bounce.Report{Kind: bounce.KindDSN, Recipients: []bounce.Recipient{victim}}, true, []bounce.Recipient{victim}, nil},
		{"token for alice, report names alice and victim", bounce.Report{Kind: bounce.KindDSN, VERPRecipient: "alice@example.org",
			Recipients: []bounce.Recipient{victim, alice}}, false, []bounce.Recipient{alice}, []bounce.Recipient{victim}},
		{"ARF with token for alice naming victim too", bounce.Report{Kind: bounce.KindARF, VERPRecipient: "ALICE@example.org",
			Recipients: []bounce.Recipient{alice, victim}}, false, []bounce.Recipient{alice}, []bounce.Recipient{victim}},
		{"token for alice, report names her forwarding address", bounce.Report{Kind: bounce.KindDSN, VERPRecipient: "alice@example.org",
			Recipients: []bounce.Recipient{fwd}}, false, []bounce.Recipient{fwdAsAlice}, []bounce.Recipient{fwd}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			trusted, untrusted := trustedRecipients(&tc.rep, tc.trust)
			if !reflect.DeepEqual(trusted, tc.wantTrusted) || !reflect.DeepEqual(untrusted, tc.wantUntrusted) {
				t.Errorf("trusted %+v untrusted %+v, want %+v and %+v", trusted, untrusted, tc.wantTrusted, tc.wantUntrusted)
			}
		})
	}
}
