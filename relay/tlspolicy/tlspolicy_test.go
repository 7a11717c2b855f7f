package tlspolicy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"facteur/relay/delivery"
)

func TestTrustAD(t *testing.T) {
	tests := []struct {
		setting, server string
		want            bool
	}{
		{"auto", "127.0.0.1:53", true},
		{"auto", "127.0.0.53:53", true}, // systemd-resolved's stub
		{"auto", "[::1]:53", true},
		{"auto", "localhost:53", true},
		{"auto", "192.0.2.1:53", false},
		{"auto", "[2001:db8::1]:53", false},
		{"auto", "resolver.example.net:53", false},
		{"on", "192.0.2.1:53", true},
		{"off", "127.0.0.1:53", false},
	}
	for _, tt := range tests {
		if got := TrustAD(tt.setting, tt.server); got != tt.want {
			t.Errorf("TrustAD(%s, %s) = %v, want %v", tt.setting, tt.server, got, tt.want)
		}
	}
}

func TestPin(t *testing.T) {
	for level, mode := range map[string]string{"none": delivery.ProtNone, "may": delivery.ProtOpportunistic,
		"encrypt": delivery.ProtEncrypt, "verify": delivery.ProtVerify} {
		if s := Pin(level); s == nil || s.Mode != mode {
			t.Errorf("Pin(%s) = %+v, want mode %s", level, s, mode)
		}
	}
	if Pin("") != nil {
		t.Error("Pin(\"\") must leave the policy to MTA-STS and DANE")
	}
}

func TestRefusalError(t *testing.T) {
	inner := &delivery.Error{Phase: delivery.PhaseSTARTTLS, Host: "mx.example.org", Err: delivery.ErrTLSRequired}
	r := &Refusal{Mode: delivery.ProtDANE, Host: "mx.example.org", IP: netip.MustParseAddr("127.0.0.5"), Err: inner}
	if got := r.Error(); got != "TLS policy dane for mx.example.org[127.0.0.5]: starttls: TLS required but not available" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(r, delivery.ErrTLSRequired) {
		t.Error("Refusal does not unwrap to its cause")
	}
	r2 := &Refusal{Mode: delivery.ProtMTASTS, Host: "evil.example.net", Err: errors.New("MX host not in the domain's policy")}
	if !strings.HasPrefix(r2.Error(), "TLS policy mta-sts for evil.example.net: ") {
		t.Errorf("Error() = %q", r2.Error())
	}
}
