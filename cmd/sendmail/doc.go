// Command sendmail is facteur's sendmail-compatible shim, installed as
// /usr/sbin/sendmail, /usr/bin/mailq and /usr/bin/newaliases, for cron,
// PHP mail() (`sendmail -t -i`), mailx, logwatch and Debian's tools.
//
// It owns the command line of sendmail(8) and the message preparation a
// sendmail owes (line ends, "." handling, -t, Bcc removal, From:), then
// submits to the daemon over SMTP at the first `listen` address (EHLO with
// the machine's host name, no STARTTLS). If the daemon is unreachable or
// answers 4xx, it writes the message into DATA_DIR/maildrop (package
// queue/maildrop) and exits 0: the daemon ingests it at start and while
// running. A 5xx is printed and mapped to a sysexits code (550 5.1.1, a
// suppressed or unknown recipient, is EX_NOUSER 67).
//
// Supported: -t, -i, -oi, -f/-r ADDR, -F NAME, -B8BITMIME/-B7BIT, -bm
// (default), -bp (mailq: the listing from the daemon's read-only showq
// socket in data_dir/public/, with no credential), -bs (SMTP on
// stdin/stdout, relayed to the daemon),
// -bi/-bI/-I (newaliases: succeeds, aliases live in the config), -v, -m,
// -oem -oee -oep -oeq -oew -odi -odb -odq (accepted, ignored), -N/-R/-V
// (DSN options, accepted and ignored; -v says so), recipients as arguments,
// and "--". Options combine as getopt allows ("-ti", "-tif addr").
//
// Refused with EX_USAGE (64), because a PHP application may pass
// attacker-chosen words (CVE-2016-10033): -C, -X, -O, -oQ, -oA, -q, -bd and
// any unknown option; a -f/-r that is not one valid address (RFC 5321
// mailbox without whitespace, a bare local part, or <>), that starts with
// "-", or that is given twice.
//
// Envelope: the sender is -f, else the login name of the real uid. A bare
// local part (root, www-data) gets local_domain (else hostname), because
// go-smtp, and so the daemon's listener, takes only addresses with a domain;
// the daemon then applies `aliases` and `senders` to addresses in its
// local domain, exactly as for a bare local part. With -t the recipients are
// those of To:, Cc: and Bcc: plus the arguments (as Postfix does), and Bcc:
// is always removed. A From: field is added when missing, from -F (else the
// GECOS name) and the sender after `senders` rewriting; Date: and
// Message-ID: are the daemon's.
//
// Config: FACTEUR_CONFIG or /etc/facteur/facteur.yaml (missing = defaults),
// never an argument. When set-group-ID (getegid != getgid) and not called
// by root, FACTEUR_CONFIG is ignored. The installed config must be readable
// by the group facteur-drop (mode 0640, root:facteur-drop) since the shim
// reads it as the caller plus that group. See queue/maildrop for the
// permission model.
//
// Exit codes (sysexits.h): 0 ok or stored in the maildrop; 64 usage; 65
// bad input; 67 recipient refused; 69 daemon refused or (mailq, -bs) down;
// 70 internal; 73 maildrop missing; 74 input unreadable; 75 could not store
// anywhere, or (mailq) no listing slot free; 77 maildrop not writable; 78
// config error.
package main
