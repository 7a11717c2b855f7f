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
// commit. The price would be a walk of the whole file at Open to rebuild the freelist
// (seconds with a million messages queued); a clean Close therefore writes the freelist
// once, Open reads it back, and its first commit drops it again, so only the Open after a
// crash walks the file.
//
// # Layout and invariants
//
// Buckets: messages (ID -> JSON record: envelope and recipients), bodies (ID -> bytes
// as accepted) or zbodies (ID -> the same, Snappy-compressed, when that saves an
// eighth; body.go), where a body of 64 KiB or more is a bucket of its own holding
// "b" -> bytes (written once, never rewritten with its neighbours' leaf), due (8-byte
// big-endian Unix nanoseconds | ID | 0x00 | recipient), addrs
// (lower-cased recipient | 0x00 | ID), suppressions (lower-cased address -> JSON),
// state (caller's key -> caller's bytes), meta (schema version, counters), counts
// (provider | 0x00 | domain | 0x00 | status -> non-final recipients so placed),
// senders (lower-cased sender, byte-reversed | 0x00 | ID; index.go). The
// ID-keyed buckets grow at their end (IDs sort by arrival), so their pages are filled
// whole rather than split in halves.
//
//   - An ID is 12 characters of [0-9A-Z]: arrival milliseconds and a sequence, so
//     messages sort by arrival; it is drawn before the transaction (see NewID). Its
//     millisecond is within idAhead (idMaxStepBack + 1 ms) after its message's
//     Created: Enqueue replaces a caller's ID that is not, as it does a taken one.
//   - A recipient has one Status. A queued or deferred one has exactly one due entry, at
//     its NextAttempt; held and final (delivered, bounced, suppressed) ones have none
//     and a zero NextAttempt. A final status never changes again.
//   - A message with only final recipients is deleted at once with its body and index
//     entries: the caller logged the outcomes, nothing is left to send. Hence every
//     stored message has a non-final recipient.
//   - The address index has one key per distinct lower-cased recipient of each stored
//     message, so CancelSuppressed finds an address's messages without a scan.
//   - The counters in meta (messages, recipients per status) and in counts (non-final
//     recipients per provider, domain and status; a zero count has no key) change in
//     the same transactions as the records, so Stats and Counts cost no scan. A write
//     path need not say what it moved: the difference between what a record counted
//     when loaded and when saved or removed is applied (counts.go).
//   - A body is in bodies or in zbodies, never both.
//   - Once meta's index/senders/done is set (at creation, or by BuildIndexes on a
//     database made before the index), the sender index has exactly one key per
//     stored message; before, it holds no key of a message not stored.
//
// Check verifies all of the above (and bbolt's own page consistency); every test runs it
// at cleanup.
//
// Due reads the index from its start and stops at the first entry later than now, so
// finding the due work costs O(log n) plus what it returns plus the entries the caller
// skips (those in flight). Each (the streamed `queue list`) and FlushBatch read a page
// per transaction, so neither holds memory nor the write path in proportion to the
// queue. Each, List and the bulk admin operations (DeleteMatching, HoldMatching...)
// read only what a filter's indexes allow (issue 19 §3): OlderThan and YoungerThan
// bound the walk by ID (the ID window above makes the bound exact); a Sender that is
// an address, "<>" or "*" followed by a literal suffix is a prefix scan of the sender
// index, whose IDs are collected (12 bytes each), sorted and read in pages, so the
// order and EachAfter's continuation are the walk's. Any other filter walks the
// records; every record read is matched against the whole filter either way. The bulk
// ones rewrite in transactions of 256 messages so that Enqueue callers never queue
// behind one huge commit.
//
// Addresses are compared as wholes, lower-cased, for suppressions and the address index
// (RFC 5321 lets a local part be case sensitive; no mailbox provider uses that, and the
// error then is on the side of not mailing someone who asked us to stop). Recipients of
// one envelope collapse only when exactly equal.
//
// # Measured
//
// On the development machine (2 cores, virtual disk, Go 1.26), with other builds and
// tests sharing the disk, so numbers wander by 2x and more between runs; each line pairs
// runs made back to back. `go test -run '^$' -bench Enqueue -benchtime 5000x ./queue`,
// 4 KiB messages, fsync on:
//
//	writers  this store                       bbolt-probe "group" (one Put per message)
//	1         1,284 msgs/s  (1.0 msg/commit)   2,521 msgs/s
//	20       11,485 msgs/s (10.5 msgs/commit) 15,148 msgs/s
//	20, NoSync 24,455 msgs/s: the CPU ceiling of the store
//
// For comparison bbolt's Batch with its 10 ms delay made 84 msgs/s for one writer and
// 1,716 msgs/s for 20 in the same session. A message here writes five buckets (record,
// body, due entry, address entry, counters): about 70 KiB of pages per commit against
// the probe's few pages, which is the gap for a lone writer; with 20 writers the
// fsyncs are shared and the gap narrows.
//
// BenchmarkCommitLatency, one writer, Enqueue then Record(delivered) of a 4 KiB message
// (two commits per iteration) in a queue prefilled with N messages of four recipients,
// every other one then deleted so the file is fragmented as a busy queue's is:
//
//	N = 200,000 (106k free pages)    ms/commit  KiB written/commit  Open
//	  map freelist, NoFreelistSync      1.36          70              384 ms
//	  array freelist (bbolt default)    5.06         906               10 ms
//	N = 1,000,000 (507k free pages, -queue.prefill=1000000)
//	  map freelist, NoFreelistSync      0.90          70            1,472 ms
//	  array freelist (bbolt default)    9.91       4,038               76 ms
//
// The default freelist is written whole at every commit and grows with the queue's
// history; with the chosen settings a commit costs the same at any size, and Open pays
// once, at start, to rebuild the freelist (1.5 s for a million messages) when the last
// Close was not clean; after a clean Close it reads the freelist written then.
package queue
