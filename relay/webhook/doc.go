// Package webhook posts delivery events (delivered, deferred, bounced,
// expired, suppressed) as signed JSON to the apps' URLs (issue 8 §4), so
// that an app can remove bad addresses from its own database.
//
// It owns, per configured URL, a durable outbox and the goroutine (Run)
// that empties it. It does not own the events' meaning (relay/scheduler
// decides them; relay/daemon converts scheduler.DeliveryEvent into Event and
// calls Add) nor the storage: the outbox lives in the queue's state bucket
// through the Outbox interface, which *queue.Store implements.
//
// # Outbox and invariants
//
// Each event is one key, "webhook/<24 hex of SHA-256(URL)>/<seq>", seq a
// 20-digit zero-padded counter, so that key order is arrival order; the
// value is the event's JSON, posted byte for byte. New restores the counter
// from the highest key.
//
//   - Add returns only when the event is committed (fsync'd): a crash after
//     the scheduler reported an outcome does not lose the event. Concurrent
//     Adds share the queue's group commit. Measured on the development VM
//     (2 cores, virtio disk, fsync on): BenchmarkAdd with one caller at a
//     time pays a whole commit, 0.4 to 0.5 ms (about 2,200 events/s); with
//     20 concurrent callers, as the scheduler's workers are, 0.09 ms per
//     event (about 11,000 events/s), far above what one relay delivers.
//     Buffering in memory and flushing every few ms would cost microseconds
//     but lose the last events on kill -9, which §4's "durable outbox"
//     rules out. BenchmarkDrain empties a backlog of 1,000 events into a
//     loopback receiver at about 25,000 events/s (POSTs of 100, deletes
//     sharing commits).
//   - Run posts events in seq order and deletes them only after a 2xx. It
//     reads only below the lowest seq whose Add has not returned, so that an
//     event committed early never overtakes one still committing.
//   - Nothing is dropped: every failure (network error, timeout, any non-2xx
//     status, 4xx included) retries the same batch after 1s, 2s, 4s … up to
//     MaxBackoff, each wait drawn from its upper half (jitter), or after
//     Retry-After when the receiver sends a longer one. A 4xx other than 408
//     and 429 is logged as an error: the receiver refuses the request itself
//     (wrong secret or path) and someone has to look.
//   - The one exception: an outbox value that is not an event's JSON (a
//     corrupt page, a foreign write) is logged and deleted, since it would
//     make every POST invalid and block the outbox forever.
//   - Batching: a full batch goes at once; a partial one waits batch_wait
//     from the moment Run first sees its oldest event, or until batch_size
//     events are pending. A backlog drains at full speed; a trickle costs
//     one POST per batch_wait.
//   - Delivery is at least once: a crash between the receiver's 2xx and the
//     deletes, or a failed delete, posts those events again after a restart.
//     Receivers should be idempotent (removing an address twice is harmless).
//
// # Request
//
//	POST <url>
//	Content-Type: application/json
//	User-Agent: facteur
//	X-Facteur-Timestamp: 1795356188
//	X-Facteur-Signature: sha256=5f1c…(64 hex digits)
//
//	{"events":[{"event":"bounced","id":"0G3ZK4R2Q8M1","sender":"app@example.com",
//	 "recipient":"bob@example.net","provider":"gmail","class":"user_unknown",
//	 "response":"550 5.1.1 The email account that you tried to reach does not exist",
//	 "timestamp":"2026-11-22T14:03:08Z"}]}
//
// A batch holds at most batch_size events. Every key is always present,
// empty when unknown. timestamp is RFC 3339 in UTC (with fractional seconds
// when the clock has them).
//
// # Signature
//
// X-Facteur-Timestamp is the unix time of this attempt, in decimal seconds.
// X-Facteur-Signature is "sha256=" followed by the lowercase hex
// HMAC-SHA256, keyed with the webhook's secret, of the timestamp, a ".",
// and the exact request body as received (before any JSON parsing):
//
//	signature = "sha256=" + hex(HMAC_SHA256(secret, timestamp + "." + body))
//
// Signing the timestamp lets a receiver refuse replays: reject a timestamp
// more than a few minutes away from its clock. A retry is signed again with
// a fresh timestamp, so a receiver that was down for hours accepts it. Use
// a constant-time comparison.
//
// # Verifying in PHP
//
//	function facteur_verify(string $secret, string $timestamp, string $signature, string $body): bool {
//	    if (!ctype_digit($timestamp) || abs(time() - (int)$timestamp) > 300) {
//	        return false;
//	    }
//	    $expected = 'sha256=' . hash_hmac('sha256', $timestamp . '.' . $body, $secret);
//	    return hash_equals($expected, $signature);
//	}
//
//	$body = file_get_contents('php://input');
//	if (!facteur_verify(getenv('FACTEUR_WEBHOOK_SECRET'),
//	        $_SERVER['HTTP_X_FACTEUR_TIMESTAMP'] ?? '',
//	        $_SERVER['HTTP_X_FACTEUR_SIGNATURE'] ?? '', $body)) {
//	    http_response_code(401);
//	    exit;
//	}
//	foreach (json_decode($body, true)['events'] as $e) { /* ... */ }
//
// # Verifying in Python
//
//	import hashlib, hmac, time
//
//	def facteur_verify(secret: bytes, timestamp: str, signature: str, body: bytes) -> bool:
//	    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
//	        return False
//	    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
//	    return hmac.compare_digest("sha256=" + mac.hexdigest(), signature)
//
// Pass the raw body (Flask: request.get_data(); Django: request.body), not
// re-encoded JSON. The tests run both functions above, as written here,
// against a real request.
package webhook
