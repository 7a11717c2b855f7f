// Package maildrop owns the maildrop folder (DATA_DIR/maildrop/): the file
// format shared by the sendmail shim, which writes a message there when the
// daemon cannot be reached, and the daemon's pickup, which ingests it. This is
// Postfix's postdrop → maildrop → pickup model: a cron job's mail is never lost
// because the daemon was restarting.
//
// It does not own the queue (package queue), the decision of when to fall back
// to the maildrop (cmd/sendmail) or the ingestion loop (relay/pickup).
//
// # File format (version 1)
//
// One file per message, named TIME-PID-RANDOM where TIME is the submission
// time in UTC as 20060102T150405 followed by nine digits of nanoseconds, so
// names sort by submission time. The file is a text header, a blank line, the
// raw message, and a fixed-length trailer:
//
//	facteur-maildrop 1
//	time 2026-11-22T14:03:08.020000001Z
//	uid 33
//	user www-data
//	sender <noreply@example.com>
//	flags 8BITMIME SMTPUTF8
//	rcpt <ops@example.com>
//	rcpt <root>
//
//	<message bytes, as the shim normalised them>
//	\nfacteur-maildrop-end <body length, 20 digits> <SHA-256, 64 hex>\n
//
// Header lines come in exactly this order (rcpt repeats, at least once); the
// sender <> is the null reverse-path. The SHA-256 covers every byte before
// the trailer, so a truncated file (no trailer), a garbled one (hash
// mismatch) or a header and body that disagree (length mismatch) is reported
// as ErrCorrupt and never half-ingested. A first line with another version
// number is ErrVersion (which also matches ErrCorrupt): a newer shim wrote it.
//
// # Invariants
//
//   - A file whose name starts with "." is being written (or was abandoned by
//     a crash); List never returns it. A file without a leading dot is
//     complete: Write fsyncs the file, renames it into place, then makes the
//     rename durable (fsync of the directory, or syncfs(2) of the file system
//     when the caller may not open the directory for reading).
//   - The daemon removes a file only after its queue commit (Remove fsyncs the
//     directory so a crash cannot bring the file back). At worst a crash
//     between the commit and the remove ingests a message twice; never zero
//     times.
//   - Read checks that the file's owner is the uid named in the envelope (or
//     root): with the permissions below, a user cannot drop a file that claims
//     to come from someone else.
//
// # Permissions (copy into README)
//
// Like Postfix's maildrop and its setgid postdrop:
//
//	groupadd --system facteur-drop
//	useradd --system --home /var/lib/facteur --groups facteur-drop facteur
//	install -d -o facteur -g facteur-drop -m 0710 /var/lib/facteur
//	install -d -o facteur -g facteur-drop -m 1730 /var/lib/facteur/maildrop
//	install -o root -g facteur-drop -m 2755 sendmail /usr/sbin/sendmail
//
// The maildrop directory is owned by the daemon's user with group
// facteur-drop and mode 1730: group write and search but no group read, and
// the sticky bit. The shim is installed setgid facteur-drop, so any user
// (www-data, any user's cron) can create a file there, but nobody can list the
// directory, and the sticky bit stops one user from renaming or deleting
// another's file. Files are created mode 0640, owned by the submitting user
// with group facteur-drop: the daemon reads them as a member of facteur-drop
// and, owning the directory, removes them. The data_dir gives the group
// search only (0710), so the shim can reach the maildrop without seeing the
// queue database. Init prepares the maildrop directory the same way.
//
// Because the shim runs with the group facteur-drop, it ignores
// FACTEUR_CONFIG when it is setgid (getegid != getgid) unless the real uid is
// 0, as Postfix ignores MAIL_CONFIG: a PHP putenv() must not choose the
// config, and with it the data_dir the shim writes into.
package maildrop
