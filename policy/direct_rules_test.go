package policy

import "testing"

// TestIPRefusedDirect holds ip-refused-direct with replies written from the
// receivers' wordings: a block of the sending IP, never of the recipient.
func TestIPRefusedDirect(t *testing.T) {
	p, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		reply string
		stage Stage
		want  Class
	}{
		{"550 5.7.0 <app@example.com>... Please use the smtp server of your ISP.", StageMail, IPBlocked},
		{"554 Use your ISP's mail server to send mail", StageRcpt, IPBlocked},
		{"554 INVALID IP FOR SENDING MAIL OF DOMAIN example.com", StageRcpt, IPBlocked},
		// Not every "server" advice: the recipient unknown stays unknown.
		{"550 5.1.1 <bob@example.org>: user unknown, check with your ISP", StageRcpt, UserUnknown},
	}
	for _, tt := range tests {
		r, err := ParseReply(tt.reply)
		if err != nil {
			t.Fatalf("%q: %v", tt.reply, err)
		}
		r.Stage = tt.stage
		if d := p.Classify(DefaultProvider, r); d.Class != tt.want {
			t.Errorf("%q: class %s (rule %s), want %s", tt.reply, d.Class, d.Rule, tt.want)
		}
	}
}
