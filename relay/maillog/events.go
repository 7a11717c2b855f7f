package maillog

// The event names: the closed set of slog messages facteur logs at Info
// level and above. Every log call names one of these constants (the test
// TestLogCallsUseEvents checks the tree), and README.md lists them all.
// Like the keys, a name is added, never renamed: ops grep for them.
const (
	// A message's life, with its queue ID.
	Received   = "received"
	Deferred   = "deferred"
	Delivered  = "delivered"
	Bounced    = "bounced"
	Suppressed = "suppressed"
	Expired    = "expired"
	Deleted    = "deleted"
	Held       = "held"
	Released   = "released"
	// Note is a remark on one delivery attempt (a TLS or MTA-STS detail).
	Note = "note"

	// A provider's state (policy.EventKind), with "-" as ID.
	Suspended = "suspended"
	Throttled = "throttled"
	Resumed   = "resumed"

	// A warming IP's ramp held a day by a block at a provider (issue 17).
	WarmupHeld          = "warmup held"
	WarmupStateNotSaved = "saving warm-up state"

	// The transport's view of a destination, and of its TLS.
	DestinationDead  = "destination dead"
	DestinationAlive = "destination alive"
	TLSFallback      = "tls fallback"
	MTASTS           = "mta-sts"

	// The cluster (issue 14): the link to the fleet's Redis, and the
	// other nodes' news applied here.
	ClusterUp             = "cluster link up"
	ClusterDown           = "cluster link down"
	ClusterLearned        = "provider state learned from another node"
	ClusterResumed        = "provider resumed by another node"
	ClusterSuppressed     = "suppressed by another node"
	ClusterUnsuppressed   = "unsuppressed by another node"
	ClusterListLoaded     = "cluster suppression list loaded"
	ClusterNotApplied     = "cluster suppression: not applied"
	ClusterCursorNotSaved = "cluster suppression: cursor not saved"
	ClusterPublish        = "cluster publish"
	ClusterBadEntry       = "cluster reputation: bad entry"

	// The circuit breaker.
	BreakerTripped          = "breaker tripped"
	BreakerReset            = "breaker reset"
	BreakerStateNotRestored = "breaker state not restored"
	BreakerStateNotSaved    = "saving breaker state"
	BreakerReadQueue        = "breaker: reading the queue"
	BreakerHold             = "breaker: holding the queue"
	BreakerNotify           = "breaker: queueing the notification"
	BreakerNotified         = "breaker notified"

	// The submission server and the cleanup.
	Refused       = "refused"
	RelayDenied   = "relay denied"
	EnqueueFailed = "enqueue failed"
	AuthFailed    = "auth failed"
	AuthBlocked   = "auth blocked"
	// Data is a DATA transfer that failed on the client's side (warn) or
	// on the relay's (error).
	Data = "data"
	// MaildropWaits: a local user's maildrop message is over its quota
	// and waits in the maildrop.
	MaildropWaits = "maildrop message waits"

	// Asynchronous bounces received on the inbound listener.
	BounceReceived       = "bounce received"
	BounceUnreadable     = "bounce unreadable"
	BounceHandlingFailed = "bounce handling failed"
	// BounceUnverified: a report names an address without a valid VERP
	// token; nothing is suppressed (issue 11 §5).
	BounceUnverified = "bounce unverified"

	// The admin's listeners (issue 11 §4).
	AdminRefused      = "admin refused"
	AdminListenFailed = "admin listen failed"
	AdminListening    = "admin listening"

	// Webhooks.
	WebhookDelivered = "webhook delivered"
	WebhookFailed    = "webhook failed"
	WebhookDropped   = "webhook dropped corrupt outbox entry"
	WebhookOutbox    = "webhook outbox"

	// The daemon.
	Started                = "started"
	Stopped                = "stopped"
	QueueAlarm             = "queue alarm"
	QueueAlarmCleared      = "queue alarm cleared"
	PolicyStateNotRestored = "policy state not restored"
	PolicyStateNotSaved    = "saving policy state"
	PolicyReloaded         = "policy reloaded"
	PolicyReloadRefused    = "policy reload refused"
	QueueFlush             = "queue flush"
	QueueFlushed           = "queue flushed"
	// QueueCompacted: a clean stop compacted queue.db (before=, after= in
	// bytes).
	QueueCompacted = "queue compacted"
	// QueueIndexed: the sender index of a queue.db made before it was
	// built (messages=), in the background after start.
	QueueIndexed = "queue indexed"
	DKIMWarning  = "dkim"
	// ConfigWarning: a config value that is valid but likely wrong (a
	// hostname not fully qualified), at start.
	ConfigWarning = "config"
	// RootNoAlias: root has no alias; its mail stays in the local mailbox.
	RootNoAlias = "root has no alias"
	// AliasRefused: an aliases_file entry facteur cannot honour (|command,
	// :include:, /file), skipped; AliasesFileUnread: the file could not be read.
	AliasRefused      = "alias refused"
	AliasesFileUnread = "aliases_file not read"
	// NotSuppressed: a bounce asked to suppress one of this host's own
	// addresses (root@hostname...), which never are.
	NotSuppressed = "not suppressed"
	DANEOff       = "dane off: the resolver is not on loopback, its AD bit cannot be trusted (set delivery.dane: on to trust it)"

	// The web dashboard (issue 18): who logged in, whose body was read,
	// what an operator removed from the suppression list.
	DashboardLogin        = "dashboard login"
	DashboardLoginRefused = "dashboard login refused"
	DashboardBodyShown    = "dashboard body shown"
	Unsuppressed          = "unsuppressed"

	// Local failures: something facteur could not do, with err=.
	DashboardRender     = "dashboard render"
	QueueList           = "queue list"
	QueueClose          = "closing the queue"
	QueueCompaction     = "queue compaction"
	QueueIndex          = "queue index"
	PickupScan          = "pickup scan"
	MaildropSweep       = "maildrop sweep"
	MaildropQuarantined = "maildrop file quarantined"
	MaildropRefused     = "maildrop message refused"
	MaildropRemove      = "maildrop remove"
	MaildropRecount     = "maildrop quota recount"
	LocalSocket         = "local socket unavailable"
	DSNBuild            = "dsn build"
	DSNEnqueue          = "dsn enqueue"
	Record              = "record"
	ReadBody            = "read body"
	ReadDue             = "scheduler: reading due recipients"
	Suppress            = "suppress"
	CancelSuppressed    = "cancel suppressed"
	SuppressionHistory  = "suppression history"
)

// Events is the closed set of event names, in the order above.
var Events = []string{
	Received, Deferred, Delivered, Bounced, Suppressed, Expired, Deleted, Held, Released, Note,
	Suspended, Throttled, Resumed, WarmupHeld, WarmupStateNotSaved,
	DestinationDead, DestinationAlive, TLSFallback, MTASTS,
	BreakerTripped, BreakerReset, BreakerStateNotRestored, BreakerStateNotSaved,
	BreakerReadQueue, BreakerHold, BreakerNotify, BreakerNotified,
	Refused, RelayDenied, EnqueueFailed, AuthFailed, AuthBlocked, Data, MaildropWaits,
	BounceReceived, BounceUnreadable, BounceHandlingFailed, BounceUnverified,
	AdminRefused, AdminListenFailed, AdminListening,
	WebhookDelivered, WebhookFailed, WebhookDropped, WebhookOutbox,
	Started, Stopped, QueueAlarm, QueueAlarmCleared, PolicyStateNotRestored, PolicyStateNotSaved,
	PolicyReloaded, PolicyReloadRefused, QueueFlush, QueueFlushed, QueueCompacted, QueueIndexed, DKIMWarning,
	ConfigWarning, RootNoAlias, AliasRefused, AliasesFileUnread, NotSuppressed, DANEOff,
	DashboardLogin, DashboardLoginRefused, DashboardBodyShown, Unsuppressed,
	DashboardRender, QueueList, QueueClose, QueueCompaction, QueueIndex, PickupScan, MaildropSweep, MaildropQuarantined, MaildropRefused, MaildropRemove, MaildropRecount, LocalSocket,
	DSNBuild, DSNEnqueue, Record, ReadBody, ReadDue, Suppress, CancelSuppressed, SuppressionHistory,
	ClusterUp, ClusterDown, ClusterLearned, ClusterResumed, ClusterSuppressed, ClusterUnsuppressed,
	ClusterListLoaded, ClusterNotApplied, ClusterCursorNotSaved, ClusterPublish, ClusterBadEntry,
}
