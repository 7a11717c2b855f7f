// Package policy is facteur's provider policy (issue 5) and reply classification (issue 7 §1):
// what to send to whom, how fast, and what to do about each reply. It is a decision, not an
// I/O layer: it opens no connection, starts no goroutine, reads no clock (every method takes
// `now`), and imports none of facteur's packages. relay asks, logs the events it returns, and
// stores what it must; cmd/facteur prints what it renders.
//
// # What it owns
//
//   - The policy: the built-in one (default.yaml, compiled in with go:embed; provider data
//     lives there only, never in Go literals) and a file overlaid on it key by key (Load,
//     Parse). Strict: an unknown key, a bad duration or rate, a provider that matches nothing,
//     a rule whose pattern does not compile, an unknown class or action are all reported, each
//     as `FILE:LINE: message` naming the key (Errors, Error).
//   - Recognition of a recipient's provider by domain, then by MX host suffix (Recognize).
//   - Classification of a reply into a Class and an Action (Classify, ParseReply) and the
//     suppression rule of issue 7 §3 (Suppresses, MailboxFullSuppress).
//   - The live shaping state (Engine): connections per provider, x/time/rate limiters,
//     suspensions, backoff and throttle levels, shared by reputation group; the retry
//     schedule and lifetime (NextAttempt, Deadline); the state that survives a restart
//     (MarshalState, RestoreState: bytes relay stores in the queue's database).
//
// It does not own the queue, the log, DNS or the suppression list: callers pass MX hosts in,
// store the state bytes, write the events, and apply Decision.Suppress.
//
// # Invariants
//
//   - A temporary (4xx) reply never bounces and never suppresses. Only a permanent
//     user_unknown or host_unknown that bounces, or a complaint, suppresses; a block, a rate
//     limit or a spam verdict never does (issue 7 §3).
//   - The text beats the code: words of a rate, a policy, a preference, a block, an IP, a
//     reputation or the sender make a reply not user_unknown whatever its code, and a
//     transient DNS failure is not host_unknown. When the caller knows the stage
//     (Reply.Stage), a reply to MAIL FROM or to the greeting never makes a recipient
//     unknown, and an unknown user in reply to DATA is a soft bounce (Decision.Soft): it
//     suppresses only through the repeated-bounce rule (issue 12). Every Decision carries its
//     Evidence.
//   - Suspend, throttle and backoff act on the provider's reputation scope: its group if it
//     has one (orange, sfr and laposte share `vade`), else itself; under the default provider,
//     each destination domain is its own scope and its own budget. With several outbound IPs
//     (issue 17) all that state is per (source IP, provider): keys `SRC|KEY` (SourceKey), the
//     "" source keeping the bare key; a rule with `scope: provider` acts on the bare key,
//     which holds every source IP (the *From methods take the source).
//   - A rate bucket holds one token and starts full: no burst, even after a restart.
//   - A suspension never extends a recipient's lifetime (Deadline); a backoff level only goes
//     back to zero on a delivery; Resume ends a window but keeps the level.
//   - A Policy is immutable once built; Engine.Swap replaces it atomically and keeps all state.
//
// # Policy file
//
// Durations are <n><unit>... with units d, h, m, s, ms (`4h`, `15m`, `1d12h`; a day is 24 h).
// Rates are N/PERIOD (`300/h`, `1/10s`, `10/s`) or `unlimited`. The same writing is used in
// `policy show` and `providers` output (FormatDuration, FormatRate).
//
//	standalone: false          # true in `policy show` output: a complete policy, not an overlay
//	defaults:                  # knobs every provider inherits
//	  connections: 20          # simultaneous connections per source IP
//	  messages_per_connection: 100   # then QUIT and reconnect (0: no limit)
//	  recipients_per_message: 50
//	  rate: unlimited          # messages per period per source IP
//	  retry: [5m, 10m, 20m, 40m, 1h, 2h, 4h]   # the last interval repeats; or {every: 4h, for: 48h}
//	  max_lifetime: 5d
//	  backoff: {initial: 15m, max: 24h}       # the backoff action's windows
//	  throttle: {factor: 2, recover_after: 30m, cooldown: 1m, min: 10/h, from_unlimited: 3600/h}
//	suppression:
//	  mailbox_full: {count: 3, span: 3d, window: 30d}
//	providers:
//	  NAME:
//	    domains: [example.com, yahoo.*]       # exact, or NAME.* for every country variant
//	    mx: [.mail.protection.outlook.com]    # MX host suffixes (or exact hosts)
//	    group: vade                           # reputation group
//	    connections: 5                        # ...any knob of defaults
//	    rules: [...]                          # tried before the top-level rules
//	rules:                                    # tried for every provider, after its own
//	  - name: yahoo-tss-deferral   # logged as the decision's rule; a file replaces a rule by name
//	    code: "421"                # 3 characters, digits or x: 421, 4xx
//	    enhanced: 4.7.0            # each part a number or x: 5.7.x
//	    match: '\bTSS0[459]\b'     # Go regexp, case-insensitive, over `CODE ENHANCED TEXT`
//	    unless: 'block|spam'       # the rule does not apply when this matches
//	    class: rate_limited        # one of Classes
//	    action: suspend            # defer, bounce, suspend, throttle, backoff (empty: 4xx defer, 5xx bounce)
//	    duration: 4h               # for suspend
//	    scope: provider            # ip (default): the sending IP only; provider: every IP
//	    disabled: true             # in a file: remove the rule of this name
//
// Overlay: a provider named in the file changes only the keys it sets; a new name adds a
// provider; a rule with an existing name (in the same scope) replaces it in place, new rules go
// before the existing ones, and `disabled: true` removes one. JSON is accepted too, so
// `policy check` takes what `policy show --json` prints (a standalone policy).
//
// # Built-in policy
//
// The knobs and rules shipped, with the reason for each value, are in default.yaml. In short:
//
//	provider   domains (and MX)                                          limits
//	default    everything else; per destination domain                   20 connections, no rate
//	microsoft  hotmail.*, outlook.*, live.*, msn.com; MX .olc/.mail.protection.outlook.com, .mx.microsoft
//	                                                                     5 conn, 50 msg/conn, 1000/h
//	google     gmail.com, googlemail.com; MX .google.com, .googlemail.com 10 conn
//	yahoo      yahoo.*, ymail.com, rocketmail.com, aol.*; MX .yahoodns.net 5 conn, 20 msg/conn, retry every 4h for 48h
//	orange     orange.fr, wanadoo.fr; MX .orange.fr (group vade)          2 conn, 100 msg/conn
//	sfr        sfr.fr, neuf.fr; MX .sfr.fr (group vade)                   2 conn
//	laposte    laposte.net; MX .laposte.net (group vade)                  2 conn
//	free       free.fr, aliceadsl.fr; MX .free.fr                         1 conn, 1/10s, backoff 15m→24h
//	gmx        gmx.de/.net/.com/.at/.ch/.fr; MX .gmx.net                  5 conn
//	apple      icloud.com, me.com, mac.com; MX .mail.icloud.com           5 conn
//
// Reactions: Yahoo [TSS04]/[TSS05]/[TSS09] suspend yahoo 4 h (never bounce), [TSS06]/[TS03]/
// [TSS1x]/[TSM]/[BL2x] blocks suspend 12 h; Microsoft RP-001..003 and 4.7.650/651 throttle,
// SC-001..004, S3xxx, Spamhaus and banned-IP codes suspend 4 h, 5.7.515 bounces as
// auth_failure naming SPF/DKIM/DMARC, a bare `550 5.5.0 mailbox unavailable` is user_unknown;
// Gmail 4.7.28 throttles, 421 4.7.0 rate/reputation suspends 1 h, 452 4.2.2 defers the
// recipient only; Free's "too many errors/spams from your IP" backs off the whole of free;
// Orange OFR_999/OFR006_xxx suspend the vade group 2 h, OFR_416 is user_unknown, OFR_417
// mailbox_full, OFR_104 throttles; La Poste LPN007_510 suspends vade 2 h. The top-level rules
// classify by RFC 3463 codes and stable tokens in an order that puts TLS, authentication,
// greylisting, full mailboxes, size and rate limits before blocks, and blocks before unknown
// users, so that a block dressed as "mailbox unavailable" or 5.1.1 never suppresses.
package policy
