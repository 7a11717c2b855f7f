// Package queue is facteur's durable mail queue: one bbolt file under data_dir holding
// the accepted messages, the delivery state of each recipient, the due-time index the
// scheduler reads, the suppression list, and a small key/value store other packages
// use for state that must survive a restart (policy suspensions, backoff levels).
//
// It owns the bytes on disk and nothing else: it imports none of facteur's packages,
// logs nothing (callers log the outcome they decided), reads no clock (every time is
// an argument) and starts no goroutine. Every method may be called concurrently and
// hands out copies.
//
// # Durability and group commit
//
// Enqueue returns only after the message, its recipients and its index entries are
// committed and fdatasync'd, so an SMTP server may answer 250 as soon as it returns;
// a failed commit is returned (ErrFull when the disk or Options.MaxSize is the cause),
// never dropped. Writes from concurrent callers share commits without a goroutine of
// the store's own: a caller that finds no commit running leads, takes every write
// queued, applies them in one bolt transaction, then wakes the first caller that
// queued meanwhile to lead the next one. A lone writer never waits for a timer (bbolt's
// Batch waits MaxBatchDelay, 10 ms, for company), and under load one commit carries
// many messages. A write function may run more than once: if one write of a group fails
// half-way, the transaction is rolled back and re-run without it, so only its caller
// sees the error; write functions therefore derive everything from the transaction and
// their arguments. A write rejected before it changed anything (an unknown ID) does not
// cost a re-run. If the commit itself fails, each write of the group is retried alone
// so that one message too large for the disk does not fail its neighbours.
//
// Open sets a lock timeout (1 s by default): a second daemon on the same data_dir fails
// with ErrLocked, naming the likely cause, instead of hanging in flock. It opens bbolt
// with the map freelist and NoFreelistSync: a queue deletes what it delivered, so its
// file is mostly free pages, and bbolt's default array freelist is rewritten at every
// commit. The price is a walk of the file at Open to rebuild the freelist.
//
// # Layout and invariants
//
// Buckets: messages (ID -> JSON record: envelope and recipients), bodies (ID -> bytes
// as accepted), due (8-byte big-endian Unix nanoseconds | ID | 0x00 | recipient), addrs
// (lower-cased recipient | 0x00 | ID), suppressions (lower-cased address -> JSON),
// state (caller's key -> caller's bytes), meta (schema version, counters).
//
//   - An ID is 12 characters of [0-9A-Z]: arrival milliseconds and a sequence, so
//     messages sort by arrival; it is drawn before the transaction (see NewID).
//   - A recipient has one Status. A queued or deferred one has exactly one due entry, at
//     its NextAttempt; held and final (delivered, bounced, suppressed) ones have none
//     and a zero NextAttempt. A final status never changes again.
//   - A message with only final recipients is deleted at once with its body and index
//     entries: the caller logged the outcomes, nothing is left to send. Hence every
//     stored message has a non-final recipient.
//   - The address index has one key per distinct lower-cased recipient of each stored
//     message, so CancelSuppressed finds an address's messages without a scan.
//   - The counters in meta (messages, recipients per status) change in the same
//     transactions as the records, so Stats costs no scan.
//
// Check verifies all of the above (and bbolt's own page consistency); every test runs it
// at cleanup.
//
// Due reads the index from its start and stops at the first entry later than now, so
// finding the due work costs O(log n) plus what it returns plus the entries the caller
// skips (those in flight). List and the bulk admin operations (DeleteMatching,
// HoldMatching) read every record: they serve the CLI, not the delivery path, and the
// bulk ones rewrite in transactions of 256 messages so that Enqueue callers never
// queue behind one huge commit.
//
// Addresses are compared as wholes, lower-cased, for suppressions and the address index
// (RFC 5321 lets a local part be case sensitive; no mailbox provider uses that, and the
// error then is on the side of not mailing someone who asked us to stop). Recipients of
// one envelope collapse only when exactly equal.
//
// # Measured
//
// On the development machine (2 cores, virtual disk; other builds were running, so
// absolute numbers wander by 2x between runs), `go test -bench . ./queue`:
//
//	BenchmarkEnqueue/writers=1         579 msgs/s    1.0 msgs/commit  (4 KiB, fsync on)
//	BenchmarkEnqueue/writers=20       2422 msgs/s    9.9 msgs/commit
//	BenchmarkEnqueue/writers=20/nosync 7045 msgs/s   (CPU ceiling of the store, no fsync)
//
// measured back to back with ../shared/bench/bbolt-probe, whose writes are a single Put:
// group 762 msgs/s (1 writer) and 3675 msgs/s (20 writers); bbolt Batch with its 10 ms
// delay 75 msgs/s (1 writer) and 1392 msgs/s (20). Each of our messages writes five
// buckets (record, body, due entry, address entry, counters), about 17 pages per
// commit at 200k queued messages.
//
// BenchmarkCommitLatency, one writer, Enqueue then Record(delivered) of a 4 KiB message
// with 200,000 messages queued and as many deleted (106k free pages):
//
//	map freelist, NoFreelistSync    1.8 ms/commit    70 KiB written/commit
//	array freelist (bbolt default)  1.7 ms/commit   906 KiB written/commit
//
// On this disk a commit's cost is its two fdatasyncs, so the 13x larger writes of the
// array freelist do not show in the latency at 200k; they grow with the free pages (a
// million-message queue is measured below) and would dominate on a faster disk.
package queue
