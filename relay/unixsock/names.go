package unixsock

import (
	"errors"
	"os/user"
	"strconv"
	"sync"
)

// Names caches uid → account name: a lookup reads /etc/passwd (or NSS), and
// every local connection and maildrop file needs one. A uid without an
// account is named by its decimal form, the queue's convention. The zero
// value is ready to use.
type Names struct {
	mu sync.Mutex // guards m
	m  map[int]string
}

// Lookup returns the account name of uid.
func (n *Names) Lookup(uid int) string {
	n.mu.Lock()
	name, ok := n.m[uid]
	n.mu.Unlock()
	if ok {
		return name
	}
	name = strconv.Itoa(uid)
	u, err := user.LookupId(name)
	switch {
	case err == nil && u.Username != "":
		name = u.Username
	case err == nil, errors.As(err, new(user.UnknownUserIdError)):
		// No account: the decimal form, for good.
	default:
		// The lookup itself failed (EMFILE reading /etc/passwd, NSS
		// down): the decimal form this once, not cached, or www-data
		// would be "33" until a restart, a name with a budget of its own.
		return name
	}
	n.mu.Lock()
	// Bounded: a host has few accounts, but the uids come from clients.
	if n.m == nil || len(n.m) > 10000 {
		n.m = map[int]string{}
	}
	n.m[uid] = name
	n.mu.Unlock()
	return name
}
