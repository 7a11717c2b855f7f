package queue

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"github.com/golang/snappy"
	"math"
	"strings"
	"time"
)

// Top-level buckets. Keys are described on each.
var (
	// bucketMsgs: ID -> JSON record (metadata and recipients).
	bucketMsgs = []byte("messages")
	// bucketBodies: ID -> message bytes as accepted (after DKIM signing).
	bucketBodies = []byte("bodies")
	// bucketDue: 8-byte big-endian Unix nanos of NextAttempt | ID | 0x00 | recipient -> "".
	bucketDue = []byte("due")
	// bucketAddrs: lower-cased recipient | 0x00 | ID -> "". One key per distinct
	// lower-cased recipient of each stored message, final or not.
	bucketAddrs = []byte("addrs")
	// bucketSupp: lower-cased address -> JSON Suppression.
	bucketSupp = []byte("suppressions")
	// bucketState: caller's key -> caller's bytes.
	bucketState = []byte("state")
	// bucketMeta: schema version and counters (8-byte big-endian).
	bucketMeta = []byte("meta")

	allBuckets = [][]byte{bucketMsgs, bucketBodies, bucketDue, bucketAddrs, bucketSupp, bucketState, bucketMeta, bucketCounts, bucketZBodies, bucketSenders}
)

var (
	metaVersion  = []byte("version")
	metaMessages = []byte("count/messages")
)

const schemaVersion = 1

func metaStatusKey(s Status) []byte { return []byte("count/rcpt/" + string(s)) }

// record is the stored form of a message. It is kept apart from Message so that the
// CLI's JSON can change without migrating the database and the other way round.
type record struct {
	Sender   string     `json:"sender"`
	Size     int64      `json:"size"`
	Created  time.Time  `json:"created"`
	ClientIP string     `json:"client_ip,omitempty"`
	Helo     string     `json:"helo,omitempty"`
	AuthUser string     `json:"auth_user,omitempty"`
	User     string     `json:"user,omitempty"`
	UID      int        `json:"uid,omitempty"`
	SMTPUTF8 bool       `json:"smtputf8,omitempty"`
	EightBit bool       `json:"eightbit,omitempty"`
	IsDSN    bool       `json:"dsn,omitempty"`
	Expires  time.Time  `json:"expires,omitzero"`
	Rcpts    []rcptSlot `json:"rcpts"`

	// HoldReason: see Message.HoldReason. Absent in records written
	// before it existed, which read as "" (held by an operator, if held).
	HoldReason string `json:"hold_reason,omitempty"`
}

type rcptSlot struct {
	Address      string    `json:"a"`
	Status       Status    `json:"s"`
	Provider     string    `json:"p,omitempty"`
	Attempts     int       `json:"n,omitempty"`
	NextAttempt  time.Time `json:"next,omitzero"`
	LastAttempt  time.Time `json:"last,omitzero"`
	LastResponse string    `json:"resp,omitempty"`
	Class        string    `json:"class,omitempty"`
	History      []Attempt `json:"h,omitempty"`
	TLS          string    `json:"tls,omitempty"`
	TLSCipher    string    `json:"tlsc,omitempty"`
	TLSDN        string    `json:"tlsdn,omitempty"`
}

// recordSnappy starts a record stored Snappy-compressed; a JSON record starts
// with '{'. A deferred recipient's record carries its last response twice (as the
// last response and in the attempt history) and the field names of every slot:
// compressed, a million deferred messages' records took 40 % of what they did
// (issue 19 §5).
const (
	recordSnappy   = 0x01
	recordZipMin   = 192
	recordZipSaves = 8 // stored compressed only when that saves an eighth
)

// encodeRecord is the stored form of r: its JSON, compressed when that pays.
func encodeRecord(r *record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil || len(b) < recordZipMin {
		return b, err
	}
	z := make([]byte, 1+snappy.MaxEncodedLen(len(b)))
	z[0] = recordSnappy
	n := len(snappy.Encode(z[1:], b))
	if 1+n > len(b)-len(b)/recordZipSaves {
		return b, nil
	}
	return z[:1+n], nil
}

// recordJSON is a stored record's JSON, decompressed if it was stored so.
func recordJSON(id ID, b []byte) ([]byte, error) {
	if len(b) == 0 || b[0] != recordSnappy {
		return b, nil
	}
	plain, err := snappy.Decode(nil, b[1:])
	if err != nil {
		return nil, fmt.Errorf("message %s: corrupt record: %w", id, err)
	}
	return plain, nil
}

func decodeRecord(id ID, b []byte) (*record, error) {
	b, err := recordJSON(id, b)
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("message %s: corrupt record: %w", id, err)
	}
	return &r, nil
}

func (r *record) message(id ID) Message {
	m := Message{
		ID: id, Sender: r.Sender, Size: r.Size, Created: r.Created, ClientIP: r.ClientIP,
		Helo: r.Helo, AuthUser: r.AuthUser, SMTPUTF8: r.SMTPUTF8, EightBit: r.EightBit,
		IsDSN: r.IsDSN, Expires: r.Expires, Recipients: make([]Recipient, len(r.Rcpts)),
		User: r.User, HoldReason: r.HoldReason,
	}
	if r.User != "" {
		uid := r.UID
		m.UID = &uid
	}
	for i, s := range r.Rcpts {
		m.Recipients[i] = Recipient{
			Address: s.Address, Status: s.Status, Provider: s.Provider, Attempts: s.Attempts,
			NextAttempt: s.NextAttempt, LastAttempt: s.LastAttempt, LastResponse: s.LastResponse,
			Class: s.Class, History: append([]Attempt(nil), s.History...),
			TLS: s.TLS, TLSCipher: s.TLSCipher, TLSDN: s.TLSDN,
		}
	}
	return m
}

func (r *record) allFinal() bool {
	for _, s := range r.Rcpts {
		if !s.Status.Final() {
			return false
		}
	}
	return true
}

// norm strips the monotonic reading and the location, so that a time read back from the
// store equals (==, not only Equal) what was written.
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Round(0).UTC()
}

// dueNanos maps a time onto the due index's 8-byte key prefix. Times before 1970 sort
// first and times after 2262 last; the record keeps the exact time.
func dueNanos(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

func dueKey(at time.Time, id ID, rcpt string) []byte {
	k := make([]byte, 8, 8+len(id)+1+len(rcpt))
	binary.BigEndian.PutUint64(k, dueNanos(at))
	k = append(k, id...)
	k = append(k, 0)
	return append(k, rcpt...)
}

func parseDueKey(k []byte) (Due, error) {
	if len(k) < 8+idLen+1 || k[8+idLen] != 0 {
		return Due{}, fmt.Errorf("malformed due key %q", k)
	}
	n := binary.BigEndian.Uint64(k)
	return Due{
		At:   time.Unix(0, int64(n)).UTC(),
		ID:   ID(k[8 : 8+idLen]),
		Rcpt: string(k[8+idLen+1:]),
	}, nil
}

// addrNorm is the form of an address used as a suppression key and in the address
// index: trimmed and lower-cased as a whole. RFC 5321 §2.4 lets a local part be case
// sensitive, but no mailbox provider facteur sends to uses that, and treating
// Bob@x and bob@x as one address errs on the side of not mailing someone who asked us
// to stop.
func addrNorm(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

func addrKey(a string, id ID) []byte {
	n := addrNorm(a)
	k := make([]byte, 0, len(n)+1+len(id))
	k = append(k, n...)
	k = append(k, 0)
	return append(k, id...)
}

func addrPrefix(a string) []byte { return append([]byte(addrNorm(a)), 0) }

// maxAddrLen bounds an address: RFC 5321 §4.5.3.1.3 limits a path to 256 octets; we
// allow more (SMTPUTF8, sloppy clients) but keep keys far below bbolt's MaxKeySize.
const maxAddrLen = 1024

func checkAddr(what, a string, allowEmpty bool) error {
	switch {
	case a == "" && !allowEmpty:
		return fmt.Errorf("%s is empty: %w", what, ErrInvalid)
	case len(a) > maxAddrLen:
		return fmt.Errorf("%s is %d bytes, more than %d: %w", what, len(a), maxAddrLen, ErrInvalid)
	case strings.ContainsAny(a, "\x00\r\n"):
		return fmt.Errorf("%s %q contains NUL, CR or LF: %w", what, a, ErrInvalid)
	}
	return nil
}

func putU64(v int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(v))
	return b
}

func getU64(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}
