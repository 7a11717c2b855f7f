package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The cluster block (issue 14): absent is a single node; present starts
// from the defaults (node = hostname, prefix facteur:, lease 30s, timeout
// 250ms); the check refuses what it can see is wrong, naming file:line-free
// keys.
func TestClusterConfig(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "redis.pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	base := "hostname: relay.example.com\nlisten: [127.0.0.1:2525]\ndata_dir: /tmp/x\n"
	tests := []struct {
		name    string
		yaml    string
		wantErr []string
		check   func(t *testing.T, c *Config)
	}{
		{"absent", "", nil, func(t *testing.T, c *Config) {
			if c.Cluster != nil {
				t.Fatal("no cluster block, but a cluster")
			}
		}},
		{"defaults", "cluster:\n  redis: [127.0.0.1:6379]\n", nil, func(t *testing.T, c *Config) {
			h, _ := os.Hostname()
			if c.Cluster.Node != h || c.Cluster.Prefix != "facteur:" || time.Duration(c.Cluster.Lease) != 30*time.Second || time.Duration(c.Cluster.Timeout) != 250*time.Millisecond {
				t.Fatalf("got %+v", c.Cluster)
			}
		}},
		{"sentinel", "cluster:\n  redis: [10.0.0.1:26379, 10.0.0.2:26379]\n  master_name: mymaster\n  password_file: " + pw + "\n  tls: true\n  node: web1\n  prefix: 'x:'\n  lease: 10s\n", nil, func(t *testing.T, c *Config) {
			if c.Cluster.MasterName != "mymaster" || c.Cluster.Node != "web1" || !c.Cluster.TLS || len(c.Cluster.Redis) != 2 {
				t.Fatalf("got %+v", c.Cluster)
			}
		}},
		{"no redis", "cluster:\n  node: web1\n", []string{"cluster.redis"}, nil},
		{"bad address", "cluster:\n  redis: [localhost]\n", []string{"cluster.redis", "host:port"}, nil},
		{"empty node", "cluster:\n  redis: [127.0.0.1:6379]\n  node: ''\n", []string{"cluster.node"}, nil},
		{"unreadable password", "cluster:\n  redis: [127.0.0.1:6379]\n  password_file: " + filepath.Join(dir, "missing") + "\n", []string{"cluster.password_file"}, nil},
		{"short lease", "cluster:\n  redis: [127.0.0.1:6379]\n  lease: 1s\n", []string{"cluster.lease"}, nil},
		{"timeout", "cluster:\n  redis: [127.0.0.1:6379]\n  timeout: 2s\n", nil, func(t *testing.T, c *Config) {
			if time.Duration(c.Cluster.Timeout) != 2*time.Second {
				t.Fatalf("got %+v", c.Cluster)
			}
		}},
		{"zero timeout", "cluster:\n  redis: [127.0.0.1:6379]\n  timeout: 0s\n", []string{"cluster.timeout"}, nil},
		{"unknown key", "cluster:\n  redis: [127.0.0.1:6379]\n  nodes: 3\n", []string{"nodes"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "facteur.yaml")
			os.WriteFile(p, []byte(base+tt.yaml), 0o644)
			c, err := Load(p)
			if err == nil {
				err = c.Validate()
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
