package daemon

import (
	"testing"

	"facteur/queue"
	"facteur/relay/config"
)

func TestOwnAddressesNeverSuppressed(t *testing.T) {
	cfg := config.Default()
	cfg.Hostname, cfg.LocalDomain = "web1.example.com", "example.com"
	for addr, own := range map[string]bool{"root": true, "root@web1.example.com": true, "postmaster@EXAMPLE.com": true, "root@localhost": true, "bob@gmail.com": false, "root@other.example": false} {
		if got := ownAddress(cfg, addr); got != own {
			t.Errorf("ownAddress(%q) = %v, want %v", addr, got, own)
		}
	}
	got := DropOwn(cfg, []queue.Suppression{{Address: "root@web1.example.com"}, {Address: "bob@gmail.com"}})
	if len(got) != 1 || got[0].Address != "bob@gmail.com" {
		t.Errorf("DropOwn = %+v", got)
	}
}
