package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"

	"facteur/strictyaml"
)

// DefaultPath is where the daemon, the CLI and the sendmail shim look for the
// config when neither -config nor FACTEUR_CONFIG names one.
const DefaultPath = "/etc/facteur/facteur.yaml"

// Config is the whole main configuration. Field tags are the public contract
// of the YAML file (issue 3 §2): add keys, never rename one.
type Config struct {
	Hostname        string            `yaml:"hostname" json:"hostname"`
	Listen          []HostPort        `yaml:"listen" json:"listen"`
	DataDir         string            `yaml:"data_dir" json:"data_dir"`
	Admin           HostPort          `yaml:"admin" json:"admin"`
	AdminToken      string            `yaml:"admin_token" json:"-"`
	AdminTokenFile  string            `yaml:"admin_token_file" json:"admin_token_file"`
	AdminSocket     string            `yaml:"admin_socket" json:"admin_socket"`
	AdminGroup      string            `yaml:"admin_group" json:"admin_group"`
	AdminPprof      bool              `yaml:"admin_pprof" json:"admin_pprof"`
	LocalDomain     string            `yaml:"local_domain" json:"local_domain"`
	Aliases         map[string]string `yaml:"aliases" json:"aliases"`
	AliasesFile     string            `yaml:"aliases_file" json:"aliases_file"`
	MailSpool       string            `yaml:"mail_spool" json:"mail_spool"`
	Senders         map[string]string `yaml:"senders" json:"senders"`
	MaxMessageSize  Size              `yaml:"max_message_size" json:"max_message_size"`
	MaxRecipients   int               `yaml:"max_recipients" json:"max_recipients"`
	TrustedNetworks []Prefix          `yaml:"trusted_networks" json:"trusted_networks"`
	Submission      []Submission      `yaml:"submission" json:"submission"`
	Policy          string            `yaml:"policy" json:"policy"`
	Resolver        HostPort          `yaml:"resolver" json:"resolver"`
	Delivery        Delivery          `yaml:"delivery" json:"delivery"`
	Routes          map[string]Route  `yaml:"routes" json:"routes"`
	Postmaster      string            `yaml:"postmaster" json:"postmaster"`
	ShutdownTimeout Duration          `yaml:"shutdown_timeout" json:"shutdown_timeout"`
	LogFile         string            `yaml:"log_file" json:"log_file"`
	LogFormat       string            `yaml:"log_format" json:"log_format"`
	MaxHops         int               `yaml:"max_hops" json:"max_hops"`
	DKIM            []DKIMKey         `yaml:"dkim" json:"dkim"`
	Suppression     Suppression       `yaml:"suppression" json:"suppression"`
	Limits          Limits            `yaml:"limits" json:"limits"`
	MaxQueue        int               `yaml:"max_queue_messages" json:"max_queue_messages"`
	MinFreeDisk     Size              `yaml:"min_free_disk" json:"min_free_disk"`
	QueueAlarm      QueueAlarm        `yaml:"queue_alarm" json:"queue_alarm"`
	Webhooks        []Webhook         `yaml:"webhooks" json:"webhooks"`
	Bounces         Bounces           `yaml:"bounces" json:"bounces"`
	Breaker         *Breaker          `yaml:"breaker" json:"breaker"`
	// Cluster shares shaping state and the suppression list with other
	// facteur nodes through Redis (issue 14); nil, the key absent, is a
	// single node.
	Cluster *Cluster `yaml:"cluster" json:"cluster"`
	// Issue 11: connection and AUTH limits of the SMTP listeners, the
	// senders a local user may use, and the maildrop's per-user quota.
	MaxConnections      int                 `yaml:"max_connections" json:"max_connections"`
	MaxConnectionsPerIP int                 `yaml:"max_connections_per_ip" json:"max_connections_per_ip"`
	MaxAuthFailures     int                 `yaml:"max_auth_failures" json:"max_auth_failures"`
	SenderLogin         map[string][]string `yaml:"sender_login" json:"sender_login"`
	MaildropQuota       MaildropQuota       `yaml:"maildrop_quota" json:"maildrop_quota"`
	// Issue 17: outbound IP pools and which senders use them.
	Pools  map[string]Pool `yaml:"pools" json:"pools,omitempty"`
	PoolBy PoolBy          `yaml:"pool_by" json:"pool_by"`

	// File is the path the config was read from ("" for built-in defaults).
	File string `yaml:"-" json:"-"`
	// doc has the line of each key of File, for Validate's errors.
	doc *strictyaml.Doc
}

// Submission is an authenticated listener (ports 587/465) for clients outside
// trusted_networks.
type Submission struct {
	Listen      HostPort `yaml:"listen" json:"listen"`
	TLSCert     string   `yaml:"tls_cert" json:"tls_cert"`
	TLSKey      string   `yaml:"tls_key" json:"tls_key"`
	ImplicitTLS bool     `yaml:"implicit_tls" json:"implicit_tls"`
	UsersFile   string   `yaml:"users_file" json:"users_file"`
}

// Delivery configures the outbound side (issue 4).
type Delivery struct {
	Port          int        `yaml:"port" json:"port"`
	SourceIP      string     `yaml:"source_ip" json:"source_ip"`
	IPVersion     string     `yaml:"ip_version" json:"ip_version"`
	Relayhost     HostPort   `yaml:"relayhost" json:"relayhost"`
	RelayhostAuth *RelayAuth `yaml:"relayhost_auth" json:"relayhost_auth,omitempty"`
	RelayhostTLS  string     `yaml:"relayhost_tls" json:"relayhost_tls"`
	// RelayhostTLSVerify checks the relayhost's certificate for its name;
	// without a verified certificate no AUTH is sent. Only an explicit
	// false in the file turns it off.
	RelayhostTLSVerify bool     `yaml:"relayhost_tls_verify" json:"relayhost_tls_verify"`
	RelayhostTLSCA     string   `yaml:"relayhost_tls_ca" json:"relayhost_tls_ca"`
	Timeouts           Timeouts `yaml:"timeouts" json:"timeouts"`
	Workers            int      `yaml:"workers" json:"workers"`
	MaxLifetime        Duration `yaml:"max_lifetime" json:"max_lifetime"`
	TLS                string   `yaml:"tls" json:"tls"`
	// MTASTS honours the recipient domains' MTA-STS policies (RFC 8461,
	// issue 15): on or off.
	MTASTS string `yaml:"mta_sts" json:"mta_sts"`
	// DANE authenticates MX hosts with DNSSEC-signed TLSA records (RFC
	// 7672): auto (only when the resolver is on loopback, where its AD bit
	// can be trusted), on, or off.
	DANE string `yaml:"dane" json:"dane"`
	// ConnectionCacheTime keeps a connection open this long after its
	// destination's queue emptied, for the next message to that
	// destination (Postfix's smtp_connection_cache_time_limit); 0 closes
	// it at once.
	ConnectionCacheTime Duration `yaml:"connection_cache_time" json:"connection_cache_time"`
}

// RelayAuth is the smarthost login; the password lives in its own file so
// that the config can stay world-readable.
type RelayAuth struct {
	Username     string `yaml:"username" json:"username"`
	PasswordFile string `yaml:"password_file" json:"password_file"`
}

// Timeouts are RFC 5321 §4.5.3.2's per-phase limits.
type Timeouts struct {
	Connect  Duration `yaml:"connect" json:"connect"`
	Greeting Duration `yaml:"greeting" json:"greeting"`
	Mail     Duration `yaml:"mail" json:"mail"`
	Rcpt     Duration `yaml:"rcpt" json:"rcpt"`
	Data     Duration `yaml:"data" json:"data"`
	Block    Duration `yaml:"block" json:"block"`
	DataEnd  Duration `yaml:"data_end" json:"data_end"`
}

// DKIMKey is one signing key (issue 6).
type DKIMKey struct {
	Domain     string   `yaml:"domain" json:"domain"`
	Selector   string   `yaml:"selector" json:"selector"`
	Key        string   `yaml:"key" json:"key"`
	Algorithm  string   `yaml:"algorithm" json:"algorithm"`
	Headers    []string `yaml:"headers" json:"headers"`
	Subdomains bool     `yaml:"subdomains" json:"subdomains"`
}

// Limits are the submission-side abuse guards (issue 8 §3): rates such as
// "100/h" per client IP, per envelope sender and per authenticated user.
// Empty means no limit; none is on by default, so that a bulk sender or a
// benchmark never trips one.
type Limits struct {
	PerClientIP Rate `yaml:"per_client_ip" json:"per_client_ip"`
	PerSender   Rate `yaml:"per_sender" json:"per_sender"`
	PerUser     Rate `yaml:"per_user" json:"per_user"`
	// PerClientIPTrusted applies per_client_ip to trusted_networks (and
	// loopback) too. Off by default: every PHP site of a web server
	// connects from 127.0.0.1, and one hacked site must not spend the
	// others' budget; per_user tells them apart instead (issue 11 §2).
	PerClientIPTrusted bool `yaml:"per_client_ip_trusted" json:"per_client_ip_trusted"`
}

// MaildropQuota bounds what one local user may leave in the maildrop while
// the daemon is down (issue 11 §2); 0 is no limit.
type MaildropQuota struct {
	Files int  `yaml:"files" json:"files"`
	Bytes Size `yaml:"bytes" json:"bytes"`
}

// QueueAlarm logs and raises a metric when the queue holds more than
// Messages messages or its oldest message is older than Age (0: off).
type QueueAlarm struct {
	Messages int      `yaml:"messages" json:"messages"`
	Age      Duration `yaml:"age" json:"age"`
}

// Bounces configures VERP return paths and the inbound bounce listener
// (issue 7 §2). With Domain set, a message's envelope sender on the wire
// becomes bounces+TOKEN@Domain, one recipient per transaction, so that an
// asynchronous bounce names its message and recipient even when its text
// does not. Listen accepts mail for Domain only (the domain's MX points
// here); without it, the MTA that receives Domain pipes the bounces to
// `facteur bounce ingest`.
type Bounces struct {
	Domain     string     `yaml:"domain" json:"domain"`
	Listen     []HostPort `yaml:"listen" json:"listen"`
	SecretFile string     `yaml:"secret_file" json:"secret_file"`
	// TrustUntokened lets a report without a valid VERP token suppress the
	// addresses it names. Off: anyone can send the listener a report, and
	// only the token proves facteur sent the message it is about.
	TrustUntokened bool `yaml:"trust_untokened" json:"trust_untokened"`
}

// Webhook posts delivery events to an app (issue 8 §4).
type Webhook struct {
	URL        string   `yaml:"url" json:"url"`
	Secret     string   `yaml:"secret" json:"-"`
	SecretFile string   `yaml:"secret_file" json:"secret_file"`
	Events     []string `yaml:"events" json:"events"`
	BatchSize  int      `yaml:"batch_size" json:"batch_size"`
	BatchWait  Duration `yaml:"batch_wait" json:"batch_wait"`
	Timeout    Duration `yaml:"timeout" json:"timeout"`
}

// DefaultWebhook is what a webhooks entry leaves unset: batch_size,
// batch_wait and timeout (relay/webhook applies it to zero fields).
func DefaultWebhook() Webhook {
	return Webhook{BatchSize: 100, BatchWait: Duration(time.Second), Timeout: Duration(10 * time.Second)}
}

// Breaker is the per-sender circuit breaker (issue 21): it stops a sender
// (local user, authenticated user, sender domain) whose recipients fail or
// are deferred too often. nil, the key absent, is off; a `breaker:` block
// starts from DefaultBreaker and overrides what it names.
type Breaker struct {
	Window        Duration `yaml:"window" json:"window"`
	MinRecipients int      `yaml:"min_recipients" json:"min_recipients"`
	MaxFailed     float64  `yaml:"max_failed" json:"max_failed"`
	MaxDeferred   float64  `yaml:"max_deferred" json:"max_deferred"`
	Action        string   `yaml:"action" json:"action"` // hold or refuse
	Notify        []string `yaml:"notify" json:"notify"` // empty: root (its alias)
	Per           []string `yaml:"per" json:"per"`       // user, sender_domain
}

// Cluster is the `cluster:` block (issue 14): the Redis the fleet shares
// (one server, a Sentinel set with master_name, or a Redis Cluster: the
// addresses of its nodes), this node's name, the key prefix and the
// connection-lease period, and the timeout of a call on the mail path.
type Cluster struct {
	Redis        []string `yaml:"redis" json:"redis"`
	MasterName   string   `yaml:"master_name" json:"master_name"`
	PasswordFile string   `yaml:"password_file" json:"password_file"`
	TLS          bool     `yaml:"tls" json:"tls"`
	Node         string   `yaml:"node" json:"node"`
	Prefix       string   `yaml:"prefix" json:"prefix"`
	Lease        Duration `yaml:"lease" json:"lease"`
	// Timeout bounds each Redis call on the delivery and SMTP paths (the
	// heartbeat gets twice it): a slower Redis counts as down, and the
	// node shapes alone with its share until a heartbeat succeeds.
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// DefaultCluster is what a `cluster:` block starts from.
func DefaultCluster() *Cluster {
	host, _ := os.Hostname()
	return &Cluster{Node: host, Prefix: "facteur:", Lease: Duration(30 * time.Second), Timeout: Duration(250 * time.Millisecond)}
}

// DefaultBreaker is the breaker a `breaker:` block starts from, and the one
// `facteur install` writes (issue 21 §1).
func DefaultBreaker() *Breaker {
	return &Breaker{
		Window:        Duration(time.Hour),
		MinRecipients: 20,
		MaxFailed:     0.25,
		MaxDeferred:   0.5,
		Action:        "hold",
		Notify:        []string{},
		Per:           []string{"user", "sender_domain"},
	}
}

// presetOptional gives the optional blocks present in data their defaults
// before the strict decode overlays the file on them: a block's absence
// means off, its presence means the defaults plus what it sets.
func presetOptional(data []byte, c *Config) {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return // Decode reports the problem
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "breaker" && m.Content[i+1].Kind == yaml.MappingNode {
			c.Breaker = DefaultBreaker()
		}
		if m.Content[i].Value == "cluster" && m.Content[i+1].Kind == yaml.MappingNode {
			c.Cluster = DefaultCluster()
		}
	}
}

// Suppression configures the suppression list (issue 7).
type Suppression struct {
	HostUnknownTTL Duration `yaml:"host_unknown_ttl" json:"host_unknown_ttl"`
	OnRcpt         string   `yaml:"on_rcpt" json:"on_rcpt"`
}

// Default returns the configuration used when no file exists; it is the only
// place a default is written.
func Default() *Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return &Config{
		Hostname:        host,
		Listen:          []HostPort{"127.0.0.1:25"},
		DataDir:         "/var/lib/facteur",
		Admin:           "127.0.0.1:8025",
		Aliases:         map[string]string{},
		AliasesFile:     "/etc/aliases",
		MailSpool:       "/var/mail",
		Senders:         map[string]string{},
		MaxMessageSize:  10240000,
		MaxRecipients:   1000,
		TrustedNetworks: []Prefix{{netip.MustParsePrefix("127.0.0.0/8")}, {netip.MustParsePrefix("::1/128")}},
		ShutdownTimeout: Duration(10 * time.Second),
		LogFormat:       "text",
		MaxHops:         50,
		Delivery: Delivery{
			Port:               25,
			IPVersion:          "any",
			RelayhostTLSVerify: true,
			Timeouts: Timeouts{
				Connect:  Duration(30 * time.Second),
				Greeting: Duration(5 * time.Minute),
				Mail:     Duration(5 * time.Minute),
				Rcpt:     Duration(5 * time.Minute),
				Data:     Duration(2 * time.Minute),
				Block:    Duration(3 * time.Minute),
				DataEnd:  Duration(10 * time.Minute),
			},
			Workers:             100,
			MaxLifetime:         Duration(5 * 24 * time.Hour),
			ConnectionCacheTime: Duration(time.Second),
			TLS:                 "may",
			MTASTS:              "on",
			DANE:                "auto",
		},
		Suppression: Suppression{
			HostUnknownTTL: Duration(30 * 24 * time.Hour),
			OnRcpt:         "refuse",
		},
		// Postfix's default_process_limit is 100 smtpd processes and its
		// smtpd_client_connection_count_limit 50; a Go session is cheaper.
		MaxConnections:      200,
		MaxConnectionsPerIP: 20,
		MaxAuthFailures:     3,
		SenderLogin:         map[string][]string{},
		MaildropQuota:       MaildropQuota{Files: 1000, Bytes: 100 << 20},
	}
}

// AdminSocketPath is admin_socket, or private/admin.sock under data_dir:
// the CLI and the daemon find it the same way.
func (c *Config) AdminSocketPath() string {
	if c.AdminSocket != "" {
		return c.AdminSocket
	}
	return filepath.Join(c.DataDir, "private", "admin.sock")
}

// ShowqSocketPath is where mailq reads the queue listing: in public/, which
// the sendmail shim's group may enter.
func (c *Config) ShowqSocketPath() string {
	return filepath.Join(c.DataDir, "public", "showq.sock")
}

// FreeDiskFloor is min_free_disk, or 1.5 × max_message_size when unset
// (Postfix's queue_minfree rule).
func (c *Config) FreeDiskFloor() int64 {
	if c.MinFreeDisk > 0 {
		return int64(c.MinFreeDisk)
	}
	return int64(c.MaxMessageSize) * 3 / 2
}

// Load reads path over the defaults and validates the result. A missing
// file is not an error when it is the default path: facteur must be useful
// with no config at all.
func Load(path string) (*Config, error) {
	if path == "" {
		path = DefaultPath
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && path == DefaultPath {
			c := Default()
			return c, c.Validate()
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := decode(path, data)
	if err != nil {
		return nil, err
	}
	c.resolvePaths(path)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decode is Default() with the file strictly decoded over it.
func decode(name string, data []byte) (*Config, error) {
	c := Default()
	c.File = name
	// Maps replace, not merge: a file that lists aliases gives all of them.
	c.Aliases, c.Senders, c.SenderLogin = nil, nil, nil
	presetOptional(data, c)
	doc, err := strictyaml.Decode(name, data, c, movedKey)
	if err != nil {
		return nil, err
	}
	c.doc = doc
	if c.Aliases == nil {
		c.Aliases = map[string]string{}
	}
	if c.Senders == nil {
		c.Senders = map[string]string{}
	}
	if c.SenderLogin == nil {
		c.SenderLogin = map[string][]string{}
	}
	return c, nil
}

// movedKeys are keys the config once had, with where they went: an old
// config gets told what to change, not only that a key is unknown.
var movedKeys = map[string]string{
	"delivery.retry":                   "retry schedules live in the policy file (policy:), as defaults.retry or providers.NAME.retry; see facteur policy show",
	"delivery.connections":             "connection limits live in the policy file (policy:), as defaults.connections or providers.NAME.connections",
	"delivery.messages_per_connection": "it lives in the policy file (policy:), as defaults.messages_per_connection or providers.NAME.messages_per_connection",
	"delay_warning":                    "facteur sends no delay warnings; remove the key",
}

func movedKey(path string) string {
	if to, ok := movedKeys[path]; ok {
		return "removed, " + to
	}
	return ""
}

// resolvePaths makes a relative data_dir relative to the config file's
// directory, not to wherever a command happens to run: `facteur queue list`
// from another directory must find the daemon's queue, not an empty one.
func (c *Config) resolvePaths(file string) {
	if c.DataDir == "" || filepath.IsAbs(c.DataDir) {
		return
	}
	dir := filepath.Dir(file)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	c.DataDir = filepath.Join(dir, c.DataDir)
}

// Parse decodes data as a config file named name (tests, policy check).
func Parse(name string, data []byte) (*Config, error) {
	c, err := decode(name, data)
	if err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// Validate checks what the decoder cannot, and reports every problem.
func (c *Config) Validate() error {
	var errs strictyaml.Errors
	bad := func(key, format string, args ...any) {
		errs = append(errs, c.errorf(key, format, args...))
	}
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n") {
		bad("hostname", "must be a host name, got %q", c.Hostname)
	}
	if len(c.Listen) == 0 && len(c.Submission) == 0 {
		bad("listen", "at least one listen address is needed")
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	if c.AdminToken != "" && c.AdminTokenFile != "" {
		bad("admin_token", "set admin_token or admin_token_file, not both")
	}
	if c.Admin != "" && c.AdminToken == "" && c.AdminTokenFile == "" && !loopback(string(c.Admin)) {
		// Metrics name providers and volumes: not on the network without
		// a token.
		bad("admin", "%s is not a loopback address: set admin_token_file or bind 127.0.0.1", c.Admin)
	}
	if c.AdminGroup != "" && strings.ContainsAny(c.AdminGroup, " \t:/") {
		bad("admin_group", "bad group name %q", c.AdminGroup)
	}
	if c.MaxMessageSize <= 0 {
		bad("max_message_size", "must be positive")
	}
	if c.MaxRecipients <= 0 {
		bad("max_recipients", "must be positive")
	}
	if c.MaxHops <= 0 {
		bad("max_hops", "must be positive")
	}
	for k, v := range c.Aliases {
		if strings.ContainsAny(k, "@ \t") || k == "" {
			bad("aliases."+k, "alias names are bare local parts")
		}
		for _, a := range strings.Split(v, ",") {
			if !plausibleAddress(strings.TrimSpace(a)) {
				bad("aliases."+k, "bad target %q", a)
			}
		}
	}
	for k, v := range c.Senders {
		if strings.ContainsAny(k, "@ \t") || k == "" {
			bad("senders."+k, "sender names are bare local parts")
		}
		if !strings.Contains(v, "@") || !plausibleAddress(v) {
			bad("senders."+k, "bad address %q", v)
		}
	}
	if c.LocalDomain != "" && strings.ContainsAny(c.LocalDomain, "@ \t") {
		bad("local_domain", "bad domain %q", c.LocalDomain)
	}
	for i, s := range c.Submission {
		key := fmt.Sprintf("submission[%d]", i)
		if s.Listen == "" {
			bad(key+".listen", "missing")
		}
		if s.UsersFile == "" {
			bad(key+".users_file", "a submission listener needs users (bcrypt passwords)")
		}
		if (s.TLSCert == "") != (s.TLSKey == "") {
			bad(key, "tls_cert and tls_key go together")
		}
		if s.ImplicitTLS && s.TLSCert == "" {
			bad(key+".implicit_tls", "needs tls_cert and tls_key")
		}
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log_format", "want text or json, got %q", c.LogFormat)
	}
	d := c.Delivery
	if d.Port <= 0 || d.Port > 65535 {
		bad("delivery.port", "bad port %d", d.Port)
	}
	switch d.IPVersion {
	case "any", "ipv4", "ipv6":
	default:
		bad("delivery.ip_version", "want any, ipv4 or ipv6, got %q", d.IPVersion)
	}
	if d.SourceIP != "" {
		if _, err := netip.ParseAddr(d.SourceIP); err != nil {
			bad("delivery.source_ip", "bad address %q", d.SourceIP)
		}
	}
	switch d.RelayhostTLS {
	case "", "starttls", "implicit", "none":
	default:
		bad("delivery.relayhost_tls", "want starttls or implicit, got %q", d.RelayhostTLS)
	}
	switch d.TLS {
	case "may", "none":
	default:
		bad("delivery.tls", "want may or none, got %q", d.TLS)
	}
	switch d.MTASTS {
	case "on", "off":
	default:
		bad("delivery.mta_sts", "want on or off, got %q", d.MTASTS)
	}
	switch d.DANE {
	case "auto", "on", "off":
	default:
		bad("delivery.dane", "want auto, on or off, got %q", d.DANE)
	}
	if d.RelayhostAuth != nil && (d.RelayhostAuth.Username == "" || d.RelayhostAuth.PasswordFile == "") {
		bad("delivery.relayhost_auth", "needs username and password_file")
	}
	if d.Workers <= 0 {
		bad("delivery.workers", "must be positive")
	}
	if d.MaxLifetime <= 0 {
		bad("delivery.max_lifetime", "must be positive")
	}
	for dom, r := range c.Routes {
		switch r.To {
		case "hold", "discard":
		case "":
			if r.TLS == "" {
				bad("routes."+dom, "want host:port, hold, discard or {to, tls}")
			}
		default:
			if err := checkHostPort(r.To); err != nil {
				bad("routes."+dom, "want host:port, hold or discard: %v", err)
			}
		}
		switch r.TLS {
		case "", "none", "may", "encrypt", "verify":
		default:
			bad("routes."+dom+".tls", "want none, may, encrypt or verify, got %q", r.TLS)
		}
	}
	for i, k := range c.DKIM {
		key := fmt.Sprintf("dkim[%d]", i)
		if k.Domain == "" || k.Selector == "" || k.Key == "" {
			bad(key, "needs domain, selector and key")
		}
		switch k.Algorithm {
		case "", "rsa", "ed25519":
		default:
			bad(key+".algorithm", "want rsa or ed25519, got %q", k.Algorithm)
		}
	}
	if c.MaxQueue < 0 {
		bad("max_queue_messages", "must not be negative")
	}
	if c.MaxConnections <= 0 {
		bad("max_connections", "must be positive")
	}
	if c.MaxConnectionsPerIP <= 0 {
		bad("max_connections_per_ip", "must be positive")
	}
	if c.MaxAuthFailures <= 0 {
		bad("max_auth_failures", "must be positive")
	}
	if c.MaildropQuota.Files < 0 || c.MaildropQuota.Bytes < 0 {
		bad("maildrop_quota", "must not be negative")
	}
	for user, pats := range c.SenderLogin {
		if user == "" || strings.ContainsAny(user, "@ \t") {
			bad("sender_login."+user, "keys are local user names")
		}
		if len(pats) == 0 {
			bad("sender_login."+user, "lists no sender: write [\"<>\"] to allow only the null sender")
		}
		for _, p := range pats {
			if p != "<>" && (!strings.Contains(p, "@") || strings.ContainsAny(p, " \t\r\n<>,;")) {
				bad("sender_login."+user, "bad pattern %q: want an address, *@domain, local@* or <>", p)
			}
		}
	}
	seenHooks := map[string]bool{}
	for i, w := range c.Webhooks {
		key := fmt.Sprintf("webhooks[%d]", i)
		if seenHooks[w.URL] {
			// One outbox per URL: two entries would share and clobber it.
			bad(key+".url", "%q is listed twice", w.URL)
		}
		seenHooks[w.URL] = true
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			bad(key+".url", "want an http:// or https:// URL, got %q", w.URL)
		}
		if w.Secret == "" && w.SecretFile == "" {
			bad(key, "needs secret or secret_file (the HMAC key)")
		}
		for _, e := range w.Events {
			switch e {
			case "delivered", "deferred", "bounced", "suppressed", "expired", "unverified_report", "breaker":
			default:
				bad(key+".events", "unknown event %q", e)
			}
		}
	}
	if c.Bounces.Domain != "" && c.Bounces.SecretFile == "" {
		bad("bounces.secret_file", "VERP tokens need a secret (a file of random bytes)")
	}
	if len(c.Bounces.Listen) > 0 && c.Bounces.Domain == "" {
		bad("bounces.domain", "the bounce listener needs the domain it accepts mail for")
	}
	if cl := c.Cluster; cl != nil {
		if len(cl.Redis) == 0 {
			bad("cluster.redis", "at least one Redis address (host:port) is needed")
		}
		for _, a := range cl.Redis {
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad("cluster.redis", "bad address %q: want host:port", a)
			}
		}
		if strings.TrimSpace(cl.Node) == "" || strings.ContainsAny(cl.Node, " \t\r\n:") {
			// Two nodes with one name would share one heartbeat and
			// release each other's connection leases.
			bad("cluster.node", "each node needs its own name (no blanks or colons), got %q", cl.Node)
		}
		if cl.Prefix == "" {
			bad("cluster.prefix", "must not be empty (it keeps facteur's keys apart in a shared Redis)")
		}
		if cl.Lease < Duration(3*time.Second) {
			bad("cluster.lease", "must be at least 3s (leases are renewed every third of it), got %s", FormatDuration(time.Duration(cl.Lease)))
		}
		if cl.Timeout <= 0 || cl.Timeout > Duration(10*time.Second) {
			// A call that may wait longer than a heartbeat's worth of
			// leases would hold mail behind a hung Redis.
			bad("cluster.timeout", "must be positive and at most 10s, got %s", FormatDuration(time.Duration(cl.Timeout)))
		}
		if cl.PasswordFile != "" {
			if _, err := os.ReadFile(cl.PasswordFile); err != nil {
				bad("cluster.password_file", "cannot read it: %v", err)
			}
		}
	}
	if b := c.Breaker; b != nil {
		if b.Window <= 0 {
			bad("breaker.window", "must be positive")
		}
		if b.MinRecipients < 1 {
			bad("breaker.min_recipients", "must be at least 1")
		}
		if b.MaxFailed <= 0 || b.MaxFailed > 1 {
			bad("breaker.max_failed", "want a share of the recipients in (0, 1], e.g. 0.25, got %v", b.MaxFailed)
		}
		if b.MaxDeferred <= 0 || b.MaxDeferred > 1 {
			bad("breaker.max_deferred", "want a share of the recipients in (0, 1], e.g. 0.5, got %v", b.MaxDeferred)
		}
		switch b.Action {
		case "hold", "refuse":
		default:
			bad("breaker.action", "want hold or refuse, got %q", b.Action)
		}
		for _, a := range b.Notify {
			if !plausibleAddress(a) {
				bad("breaker.notify", "bad address %q", a)
			}
		}
		if len(b.Per) == 0 {
			bad("breaker.per", "name at least one of user, sender_domain")
		}
		for _, p := range b.Per {
			switch p {
			case "user", "sender_domain":
			default:
				bad("breaker.per", "want user or sender_domain, got %q", p)
			}
		}
	}
	switch c.Suppression.OnRcpt {
	case "refuse", "drop":
	default:
		bad("suppression.on_rcpt", "want refuse or drop, got %q", c.Suppression.OnRcpt)
	}
	c.validatePools(bad)
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// Warnings are what is valid but likely wrong, for the log at start and
// `facteur config check`: they never stop the daemon.
func (c *Config) Warnings() []string {
	var w []string
	h := strings.ToLower(strings.TrimSuffix(c.Hostname, "."))
	if !strings.Contains(h, ".") || h == "localhost" || strings.HasSuffix(h, ".localhost") {
		w = append(w, fmt.Sprintf("%s: hostname %q is not a fully qualified domain name: receivers check the EHLO name, and mail to root@%s cannot be answered; set hostname: web1.example.com (facteur install --hostname FQDN)", c.fileName(), c.Hostname, c.Hostname))
	}
	return w
}

// errorf is a problem with the setting at key, placed at the line of the
// key (or of its closest parent) when the file sets it; a value that comes
// from the defaults has no line.
func (c *Config) errorf(key, format string, args ...any) *Error {
	if c.doc == nil {
		return &Error{File: c.fileName(), Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	e := c.doc.Errorf(key, format, args...)
	e.File = c.fileName()
	return e
}

func (c *Config) fileName() string {
	if c.File == "" {
		return "(defaults)"
	}
	return c.File
}

func loopback(hostport string) bool {
	host, _, err := splitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func plausibleAddress(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n<>,;") {
		return false
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return i > 0 && i < len(s)-1
	}
	return true
}

// PostmasterAddress is where double bounces go: the config's postmaster, or
// the alias of root, as Postfix does.
func (c *Config) PostmasterAddress() string {
	if c.Postmaster != "" {
		return c.Postmaster
	}
	if a, ok := c.Aliases["postmaster"]; ok {
		return a
	}
	if a, ok := c.Aliases["root"]; ok {
		return a
	}
	if c.LocalDomain != "" {
		return "postmaster@" + c.LocalDomain
	}
	return "postmaster@" + c.Hostname
}
