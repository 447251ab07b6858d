package storage

// The transfer hot path on PostgreSQL: coalesced, pipelined, READ COMMITTED with explicit locks.
//
// What it replaces and why (issue 7; measured with BenchmarkTransfer and server's
// BenchmarkSend*): a transfer used to cost, through the API, four transactions and eleven round
// trips: the session-live check (BEGIN, SELECT, UPDATE, COMMIT), the PIN state (BEGIN, SELECT,
// COMMIT), and the movement (BEGIN, read batch, write batch, COMMIT), all behind a pool of four
// connections, as one SERIALIZABLE transaction per transfer. On a hot recipient every transfer
// then aborted with 40001 whenever another one committed first.
//
// What pprof showed (CPU and block profiles of BenchmarkTransfer and server's
// BenchmarkSendUniform/Hot, 16 clients, 2 cores shared with PostgreSQL), in order:
//   - 81 % of goroutine wait time was in pgxpool.Acquire: four connections, each held for a
//     4-round-trip transaction, while the CPU was 26 % busy. Batching: one connection carries
//     many transfers.
//   - Round trips and statements: 11 round trips and ~20 statements per API transfer. Now two
//     round trips per batch, and per transfer two reads (transferSenderSQL, the recipient) and
//     five writes (the transaction, two entries, the activity row, a share of the balance
//     UPDATEs); the caller's answer is built from what was written (transferView) instead of
//     the history query (+19 % uniform throughput alone).
//   - Hot row: 40001 on every concurrent credit under SERIALIZABLE; then, with 8 batches in
//     flight, 1.4 transfers per batch queued on the row (hot/uniform 0.57). READ COMMITTED with
//     locks has no retries, and 2 batches in flight made batches big (hot/uniform 0.74–0.97 over
//     six same-run rounds on this shared machine, median about 0.9). One batch in flight makes
//     them bigger still (newTransferBatcher): hot/uniform 1.14 in `make bench`.
//   - The daily limit's sum over today's outgoing transactions: a per-sender scan that grew
//     with the sender's transfers of the day (about 25 % of uniform throughput in the benchmark,
//     whose users send dozens each, and the long tail of the half-rate run, which reuses them).
//     Now a counter on the sender's balance row (migrations/000014_daily_spent), read in the
//     same row as the balance and written by the same UPDATE that moves it.
//   - PostgreSQL side (pg_stat_statements on a private instance under the driver's uniform
//     scenario, ~1,470 transfers/s): per transfer, the write statement (writeTransferSQL) 226 µs
//     and 18 WAL records (2.4 KB), the recipient's read and lock 108 µs, the sender's read 78 µs,
//     the two balance UPDATEs 95 µs, the sender's lock 46 µs; planning was re-done on some calls
//     until the batch asked for generic plans (genericPlansSQL, +10 %).
//   - Statements per item. A system-wide perf profile of PostgreSQL under the same scenario
//     (perf record -a -g, postgres's exported symbols) showed what pg_stat_statements hides:
//     a third of its CPU went to work done once per statement whatever its rows: executor
//     start-up of the multi-join plans (standard_ExecutorStart, ExecInitNode: 13 % of the
//     machine), portals, re-parsing and planning the CHECK constraints of every table a
//     statement writes (ExecConstraints → stringToNode, expression_planner: 6 %), plan-cache
//     validation. The batch had five to six statements per item; now it has one statement per
//     kind for the whole batch (lockSendersSQL, transferSendersSQL, recipientsLocked*,
//     applyDeltasSQL, writeTransfersSQL), whose arrays hold one element per item, so that work
//     is paid once per batch: uniform transfers/s 1.08–1.77 times the per-item batch in three
//     alternated rounds, executor start-up down to 6 % of the machine, and `make bench`'s
//     uniform/pgbench ratio from 0.33 to 0.48. The array arguments are []string and [16]byte
//     slices or pgtype.FlatArray, never []*string or numeric[] from strings: pgx tried the
//     binary format first for those, built an error (fmt.Errorf) and fell back to text, per
//     argument (7 % of the server's CPU).
//     What is left is the rows and index entries themselves, about 8 times pgbench's WAL per transfer.
//   - Go side: argon2id never runs on a cached correct PIN (absent from the timed profile);
//     Ed25519 verification and JWT decoding (~10 % of a request) are skipped for a token already
//     verified (server/tokens.go); pgx's driver.Valuer path for uuid.UUID and decimal.Decimal
//     arguments was 12 % of the process's CPU (pgUUID and decimal strings below).
//
// Now a transfer is one item in a batch, and a batch is one database transaction of two round
// trips:
//
//  1. BEGIN ISOLATION LEVEL READ COMMITTED; lock the wallet row of every sender in the batch
//     (SELECT … FOR NO KEY UPDATE, in (region, user_id) order) and hold every party's user row
//     KEY SHARE (relocations wait; nothing else does); then, for every item (one statement
//     for all of them, and one for the recipients), the idempotency
//     key, the sender's state (wallet, asset rules, what was sent today, profile), the sender's
//     available balance, the recipient, and, when the API passes MovementAuth, the session row
//     and the PIN row. Session revocation and PIN locks therefore bite inside the movement's
//     own transaction, without a round trip of their own.
//  2. Every write of every accepted item: one UPDATE of every touched balance row with the
//     batch's net delta per row (a hot merchant's row is written once per batch, not once per
//     transfer), one statement for all the transaction rows, ledger entries and activity rows,
//     the replays' views, and COMMIT, all pipelined in one batch. Nothing is read back before
//     COMMIT: every statement that must touch a known number of rows fails with
//     division_by_zero when it touched fewer (`SELECT 1 / (count(*) = n)::int FROM (… RETURNING
//     1)`), and a debit that would go
//     negative fails the asset_balances_not_negative CHECK; an error anywhere makes PostgreSQL
//     skip the rest of the pipeline, COMMIT included, so a half movement can never commit.
//
// Why READ COMMITTED is as safe here as SERIALIZABLE was (the isolation argument):
//   - Balances change only through single UPDATE statements of the form x = x + delta. Under
//     READ COMMITTED, an UPDATE that waits for a row lock re-evaluates on the newest committed
//     version (EvalPlanQual), so no update is lost, and the CHECK constraints are evaluated on
//     the row actually written.
//   - Every movement that debits a user's available balance (transfer, cash-out, exchange)
//     first takes that user's wallet row lock; it is held until COMMIT. So debits of one user
//     are serialized, and a statement that runs after the lock (a fresh snapshot per statement
//     under READ COMMITTED) sees every earlier debit committed. The available balance read after
//     the lock can only grow before our write (credits do not take the lock, and only add), so
//     the pre-validation below is conservative; the CHECK stays the last line.
//   - The daily limit (the counter of today's outgoing movements on the sender's balance row)
//     is read after the lock, for the same reason: two concurrent movements of one sender cannot
//     both pass on a stale counter (the write skew SERIALIZABLE used to catch). Only debits,
//     which hold the lock, raise it; a released cash-out hold lowers it, which only makes the
//     read conservative. Items of one sender in one batch are summed in the batch, and the
//     batch adds their total to the counter in the sender's balance UPDATE.
//   - Exactly-once per reference: the unique key (region, sender_id, reference) backs it, the
//     lookup runs after the sender's lock (so a committed twin is seen and replayed), and two
//     items with one key in one batch are never applied together (the second waits for the next
//     batch and replays).
//   - Reads of the recipient, the session and the PIN state are at statement time; a concurrent
//     freeze, revocation or PIN lock that commits after them is ordered after the transfer,
//     which is a valid serial order.
//   - Deadlocks: every transaction takes wallet locks (sorted) before balance locks (sorted),
//     and an FK check's KEY SHARE lock on a wallet does not conflict with NO KEY UPDATE. A
//     40P01 or 40001 is still retried, as everywhere.
//
// Coalescing: the hot account. Requests queue in a per-process batcher; with no batch in flight
// a new request starts one, otherwise it waits for the next one (at most maxTransferBatch
// items), unless the running batch has stalled for transferBatchStall (a lock wait; a timer
// checks for the requests already queued) or a full batch or more waits: then it gets a runner of
// its own, up to `limit` (newTransferBatcher). At low load a batch is one transfer (no added
// latency); under load batches grow on their own, the hot row takes one UPDATE and the commit one WAL
// flush per batch. Error isolation: the pipeline cannot survive a failed statement, so items are
// validated in Go against the locked reads before the write batch; refused items (insufficient
// funds, limits, bad recipient, wrong PIN…) are answered without touching the batch. If the
// write batch still fails (a broken invariant, a constraint), the batch is rolled back and every
// item runs again alone, so one bad item never fails another. A replay of a committed reference
// reads the view in the same batch.
//
// On CockroachDB this path is not used: transfers keep one SERIALIZABLE transaction each through
// crdbpgx.ExecuteTx (money.go), with the sender's wallet locked FOR UPDATE in the first batch so
// that one sender's movements queue instead of retrying (reference/cockroachdb.md §7.4, §7.5).
// A hot merchant is worse there: every write to its balance row is serialized through one range
// leaseholder and a Raft round, and a row cannot be split, so its ceiling is about one write per
// consensus round. The same coalescing would apply there (one UPDATE of the hot row per batch),
// with the batch inside ExecuteTx so that a 40001 replays the whole batch. What would shard a
// merchant's balance if one row is still too hot: N sub-balances (buckets) of the merchant, the
// balance read as their sum, credits spread round-robin (or by hash of the payer) over the
// buckets, and debits (payouts) taking a guarded sweep that locks the buckets in order and moves
// what it needs; each bucket is a separate row and may be its own range. That needs a schema
// change (a bucket column in the balance key) and is not built: on PostgreSQL the batch already
// makes the hot row as fast as a cold one.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
)

// MovementAuth is what the API checks before money moves: the access token's session and issue
// time, and the PIN the client sent. Given to a movement, the checks run inside its transaction
// (PostgreSQL) or just before it (CockroachDB), with the same answers as SessionLive and
// VerifyPIN: ErrSessionRevoked, ErrAccountSuspended, ErrInvalidPIN, ErrPINLocked.
type MovementAuth struct {
	SessionID uuid.UUID
	IssuedAt  time.Time
	PIN       string

	pinChecked bool // the slow path verified the PIN in its own transactions
}

const (
	// maxTransferBatch bounds one batch: its pipelines stay well under a megabyte, and a batch
	// still commits in a few milliseconds.
	maxTransferBatch = 64
	// transferBatchTimeout bounds a batch, which runs detached from any one caller's context
	// (a caller that gives up must not fail the others' transfers).
	transferBatchTimeout = 30 * time.Second
)

// transferBatcher queues transfers and runs them in batches: one batch at a time, and a second
// (up to limit) only while the first is stalled or a full batch or more is waiting.
type transferBatcher struct {
	mu      sync.Mutex
	queue   []*transferItem
	runners map[*transferRunner]struct{}
	limit   int
	// stallAfter is how long a batch may run before a queued request gets another runner;
	// timer, when timerArmed, checks after stallAfter for the requests queued behind a batch.
	stallAfter time.Duration
	timer      *time.Timer
	timerArmed bool

	// beforeWrites, set by tests only, runs between a batch's reads and its writes with the
	// number of accepted items (transfers_test.go breaks an invariant there).
	beforeWrites func(accepted int)
}

// transferRunner is one goroutine draining the queue (drain); since is when its batch in
// flight started, zero between two batches. Guarded by transferBatcher.mu.
type transferRunner struct{ since time.Time }

// transferBatchStall is transferBatcher.stallAfter. A batch commits in a few milliseconds even at
// the peak (its transfers' p99 was 7-9 ms end to end in `make bench`), so one still running
// after this is waiting for a lock (another movement of one of its senders, a relocation) or
// for a slow disk, and the requests queued behind it get a runner of their own.
const transferBatchStall = 20 * time.Millisecond

// newTransferBatcher runs one batch at a time and allows a second (up to one per core, at least
// two, at most half the pool) only when the running ones are stalled or a full batch is waiting.
// Why one: a batch's cost is mostly per statement, not per transfer, so the bigger the batch the
// cheaper each transfer, and every runner in flight splits the queue. Measured with the driver's
// uniform scenario (16 clients, 15 s, alternated, 2 cores): one runner, always, did 1.10, 1.01
// and 1.10 times the transfers/s of two always allowed, and this policy 0.98, 1.15 and 1.05,
// both at 63 % of the machine instead of 85 % and with about 28 % less of the server's CPU per
// transfer; three did 0.85-0.93 times. On a hot row the two
// runners queued behind each other as well. The second runner keeps a stalled batch (a lock
// wait) from holding every transfer of the process behind it, and lets a queue longer than one
// batch (many clients) use more connections.
func newTransferBatcher(pool *pgxpool.Pool) *transferBatcher {
	return &transferBatcher{limit: max(2, min(runtime.GOMAXPROCS(0), int(pool.Config().MaxConns)/2)),
		runners: map[*transferRunner]struct{}{}, stallAfter: transferBatchStall}
}

type transferItem struct {
	ctx  context.Context
	req  TransferRequest
	bidx []byte
	done chan struct{}
	res  Result
	err  error
}

// crowded tells whether another runner than self (nil: a new one) is wanted, and why: "queue",
// a full batch or more waits, or "stalled", every other runner's batch has run for longer
// than stallAfter (a runner between two batches is about to take the queue: not stalled); ""
// when not. Called with mu held.
func (b *transferBatcher) crowded(self *transferRunner, now time.Time) string {
	if len(b.queue) >= maxTransferBatch {
		return "queue"
	}
	others := 0
	for r := range b.runners {
		if r == self {
			continue
		}
		if r.since.IsZero() || now.Sub(r.since) <= b.stallAfter {
			return ""
		}
		others++
	}
	if others == 0 {
		return ""
	}
	return "stalled"
}

func (b *transferBatcher) submit(db *DB, items ...*transferItem) {
	b.mu.Lock()
	b.queue = append(b.queue, items...)
	b.startIfWanted(db)
	b.mu.Unlock()
}

// startIfWanted starts a runner when none runs or when one more is wanted (crowded); otherwise,
// with requests queued behind a running batch, it arms the stall timer, so that a batch that
// stalls after the last request arrived still gets a runner beside it. Called with mu held.
func (b *transferBatcher) startIfWanted(db *DB) {
	start, reason := len(b.runners) == 0, ""
	if !start && len(b.runners) < b.limit {
		reason = b.crowded(nil, time.Now())
		start = reason != ""
	}
	switch {
	case start:
		r := &transferRunner{}
		b.runners[r] = struct{}{}
		if reason != "" {
			db.metrics.extraRunners.WithLabelValues(reason).Inc()
		}
		go b.drain(db, r)
	case len(b.queue) > 0 && !b.timerArmed && len(b.runners) < b.limit:
		b.timerArmed = true
		d := max(b.stallAfter, time.Millisecond)
		if b.timer == nil {
			b.timer = time.AfterFunc(d, func() {
				b.mu.Lock()
				b.timerArmed = false
				if len(b.queue) > 0 {
					b.startIfWanted(db)
				}
				b.mu.Unlock()
			})
		} else {
			b.timer.Reset(d)
		}
	}
}

// setStallAfter changes stallAfter (tests), disarming a pending stall timer armed with the old one.
func (b *transferBatcher) setStallAfter(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stallAfter = d
	if b.timer != nil && b.timer.Stop() {
		b.timerArmed = false
	}
}

// drain runs batches until the queue is empty, or, when another runner is left, until this one
// is no longer wanted (crowded). A runner leaves only under the lock that submit appends under,
// and never as the last one with a request queued, so no request is ever left without one.
func (b *transferBatcher) drain(db *DB, self *transferRunner) {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 || (len(b.runners) > 1 && b.crowded(self, time.Now()) == "") {
			delete(b.runners, self)
			if len(b.queue) > 0 {
				b.startIfWanted(db) // the stall timer, for what this runner leaves queued
			}
			b.mu.Unlock()
			return
		}
		n := min(len(b.queue), maxTransferBatch)
		batch := append([]*transferItem(nil), b.queue[:n]...)
		b.queue = append(b.queue[:0:0], b.queue[n:]...)
		self.since = time.Now()
		b.mu.Unlock()
		db.metrics.batchSize.Observe(float64(n))
		later := db.runTransferBatch(batch)
		b.mu.Lock()
		self.since = time.Time{}
		b.queue = append(b.queue, later...)
		b.mu.Unlock()
	}
}

// transferPostgres runs a transfer through the batcher once; errPINSlowPath (the batch could not
// decide the PIN from the cache) goes back to authorized, which verifies it and runs it again.
func (db *DB) transferPostgres(ctx context.Context, req TransferRequest, bidx []byte) (Result, error) {
	it := &transferItem{ctx: ctx, req: req, bidx: bidx, done: make(chan struct{})}
	db.transfers.submit(db, it)
	<-it.done
	return it.res, it.err
}

func (it *transferItem) finish(db *DB, res Result, err error) {
	it.res, it.err = res, err
	if !errors.Is(err, errPINSlowPath) {
		db.metrics.observeTx("transfer", err)
	}
	close(it.done)
}

// runTransferBatch runs one batch with retries, and returns the items that must wait for the
// next batch (a second item with the same idempotency key).
func (db *DB) runTransferBatch(items []*transferItem) (later []*transferItem) {
	live := items[:0:0]
	for _, it := range items {
		if err := it.ctx.Err(); err != nil {
			it.finish(db, Result{}, err)
			continue
		}
		live = append(live, it)
	}
	if len(live) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), transferBatchTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		out, err := db.transferBatchAttempt(ctx, live)
		if err == nil {
			for i, it := range live {
				if out[i].later {
					later = append(later, it)
					continue
				}
				it.finish(db, out[i].res, out[i].err)
			}
			return later
		}
		state := sqlState(err)
		if errors.Is(err, errRecipientMoved) {
			state = codeSerializationFailure
		}
		if (state == codeSerializationFailure || state == codeDeadlock) && attempt < db.maxRetries {
			for _, it := range live {
				db.countRetry(it.ctx, "transfer")
			}
			if sleep(ctx, backoff(attempt)) == nil {
				continue
			}
		}
		switch {
		case state == codeSerializationFailure || state == codeDeadlock:
			db.metrics.giveups.WithLabelValues("transfer").Inc()
			err = fmt.Errorf("%w after %d attempts (transfer): %w", ErrBusy, attempt+1, err)
		case len(live) > 1 && !errors.Is(err, ErrAmbiguousCommit):
			// Error isolation: nothing committed; each item alone finds its own answer.
			for _, it := range live {
				later = append(later, db.runTransferBatch([]*transferItem{it})...)
			}
			return later
		case errors.Is(err, errDuplicateReference):
			// Lost a race on its own reference to a concurrent request (no wallet lock held,
			// e.g. a sender without a wallet row); the next batch replays or refuses it.
			return live
		}
		err = translate(err)
		for _, it := range live {
			it.finish(db, Result{}, err)
		}
		return later
	}
}

var errDuplicateReference = errors.New("duplicate reference")

type itemOutcome struct {
	res   Result
	err   error
	later bool
}

type balKey struct {
	region string
	user   uuid.UUID
	asset  string
}

func (k balKey) less(o balKey) bool {
	if k.region != o.region {
		return k.region < o.region
	}
	if c := bytes.Compare(k.user[:], o.user[:]); c != 0 {
		return c < 0
	}
	return k.asset < o.asset
}

// transferReads is what the read batch returns for one item.
type transferReads struct {
	existing  refState
	sender    senderState
	senderErr error
	available decimal.NullDecimal
	rcpt      recipientState
	rerr      error
	session   sessionRow
	pin       pinRow
}

type sessionRow struct {
	found     bool
	live      bool
	status    *string
	notBefore *time.Time
	stale     bool // last_activity is over a minute old: the write batch refreshes it
}

// check applies the session rules, for SessionLive and for the transfer batch alike.
func (s sessionRow) check(userID, sessionID uuid.UUID, issuedAt time.Time) error {
	switch {
	case !s.found:
		return fmt.Errorf("session %s: %w", sessionID, ErrSessionRevoked)
	case s.status != nil && *s.status == "suspended":
		return fmt.Errorf("user %s: %w", userID, ErrAccountSuspended)
	case !s.live || s.status == nil || *s.status != "active":
		return fmt.Errorf("session %s: %w", sessionID, ErrSessionRevoked)
	// JWT iat has second precision: a token minted in the same second as a revocation is
	// refused too, which errs on the safe side.
	case s.notBefore != nil && !issuedAt.After(s.notBefore.Truncate(time.Second)):
		return fmt.Errorf("session %s: token before tokens_not_before: %w", sessionID, ErrSessionRevoked)
	}
	return nil
}

// plannedTransfer is an accepted item: what the write batch applies.
type plannedTransfer struct {
	idx           int
	id            uuid.UUID
	hash          []byte
	fee, debit    decimal.Decimal
	rcpt          Party
	senderView    []byte
	recipientView []byte
	shown         Counterparty // senderView in the clear, for the answer
	decimals      int
}

// lockWalletSQL serializes the movements that debit one user (see the isolation argument).
// NO KEY UPDATE: foreign-key checks of concurrent credits (KEY SHARE) do not wait for it.
const lockWalletSQL = `SELECT 1 FROM wallets WHERE region = $1 AND user_id = $2 FOR NO KEY UPDATE`

// lockSenderSQL is lockWalletSQL on PostgreSQL plus the sender's user row held KEY SHARE (see
// the recipient locks below).
const lockSenderSQL = `
SELECT 1 FROM users u JOIN wallets w ON w.region = u.region AND w.user_id = u.id
WHERE u.region = $1 AND u.id = $2 FOR KEY SHARE OF u FOR NO KEY UPDATE OF w`

// The user row of each party is held KEY SHARE until COMMIT: credits of many payers share it (a
// hot merchant is not serialized here), but a relocation, whose first statement locks the user
// row FOR UPDATE, waits for the movement instead of moving the rows between its read and its
// write, and a movement that starts during a relocation waits for it and then reads the new home.
// The recipient is read and locked in one statement (recipientColumns with the user row an inner
// join); no row means "not found" or "moved while we waited", which the slow path tells apart.
const recipientLockedColumns = `
SELECT d.user_id, d.home_region::text, u.status, w.id, w.status,
       EXISTS (SELECT 1 FROM asset_balances b WHERE b.region = d.home_region AND b.user_id = d.user_id AND b.asset_symbol = $2),
       p.first_name_enc, p.last_name_enc, u.phone_enc
FROM phone_directory d
JOIN users u ON u.region = d.home_region AND u.id = d.user_id
LEFT JOIN wallets w ON w.region = d.home_region AND w.user_id = d.user_id
LEFT JOIN user_profiles p ON p.region = d.home_region AND p.user_id = d.user_id`

const recipientLockedByPhoneSQL = recipientLockedColumns + `
WHERE d.phone_bidx = $1 FOR KEY SHARE OF u`

const recipientLockedByIDSQL = recipientLockedColumns + `
WHERE d.user_id = $1 LIMIT 1 FOR KEY SHARE OF u`

// transferSenderSQL is everything the batch needs about a sender, in one statement after the
// sender's lock: senderStateSQL's columns, the available balance, the idempotency key's row,
// the session ($6, NULL without MovementAuth) and the PIN state (sessionLiveSQL and pinStateSQL,
// over the same user and user_auth rows). No row: no such user.
const transferSenderSQL = `
SELECT w.status, a.decimals, a.min_amount::text, a.max_amount::text, a.is_active,
       COALESCE(s.daily_limit, a.max_amount), ` + spentTodaySQL + `,
       p.first_name_enc, p.last_name_enc, u.phone_enc,
       b.available,
       r.id IS NOT NULL, r.request_hash, r.recipient_id,
       ` + movementAuthColumns + `
FROM users u
LEFT JOIN wallets w ON w.region = $1 AND w.user_id = $2
LEFT JOIN supported_assets a ON a.symbol = $3
LEFT JOIN user_settings s ON s.region = $1 AND s.user_id = $2
LEFT JOIN user_profiles p ON p.region = $1 AND p.user_id = $2
LEFT JOIN asset_balances b ON b.region = $1 AND b.user_id = $2 AND b.asset_symbol = $3
LEFT JOIN transactions r ON r.region = $1 AND r.sender_id = $2 AND r.reference = $4
LEFT JOIN user_auth ua ON ua.region = $1 AND ua.user_id = $2
LEFT JOIN user_sessions ss ON ss.region = $1 AND ss.id = $5 AND ss.user_id = $2
WHERE u.region = $1 AND u.id = $2`

// The batch's reads, one statement each for all its items (per-statement work, executor start-up
// above all, was most of PostgreSQL's CPU when every item had its own): the arrays hold one
// element per sender or item, and every row starts with its item's 1-based position (ord);
// an item without a row has no such user.
var (
	// lockSendersSQL is lockSenderSQL for every sender of the batch, in the order of their keys
	// (region, then user, bytewise, as partyLess): the locking subquery is LATERAL, so it runs
	// once per sender, in the sorted order of the outer subquery, and always by index.
	lockSendersSQL = `
SELECT 1
FROM (SELECT region::crdb_internal_region AS home_region, user_id FROM unnest($1::text[], $2::uuid[]) AS x(region, user_id)
      ORDER BY x.region COLLATE "C", x.user_id) p
CROSS JOIN LATERAL (` + strings.NewReplacer("$1", "p.home_region", "$2", "p.user_id").Replace(lockSenderSQL) + `) l`

	transferSendersSQL = `
SELECT i.ord, s.*
FROM (SELECT region::crdb_internal_region AS home_region, user_id, asset, reference, session, ord
      FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::uuid[])
           WITH ORDINALITY AS x(region, user_id, asset, reference, session, ord)) i
CROSS JOIN LATERAL (` + strings.NewReplacer("$1", "i.home_region", "$2", "i.user_id", "$3", "i.asset",
		"$4", "i.reference", "$5", "i.session").Replace(transferSenderSQL) + `) s
ORDER BY i.ord`

	// The recipients by phone ($1, blind indexes) and by id ($1, user ids), $2 the assets.
	recipientsLockedByPhoneSQL = recipientsLocked("bytea", "d.phone_bidx = i.key FOR KEY SHARE OF u")
	recipientsLockedByIDSQL    = recipientsLocked("uuid", "d.user_id = i.key LIMIT 1 FOR KEY SHARE OF u")
)

func recipientsLocked(keyType, where string) string {
	return `
SELECT i.ord, r.*
FROM unnest($1::` + keyType + `[], $2::text[]) WITH ORDINALITY AS i(key, asset, ord)
CROSS JOIN LATERAL (` + strings.Replace(recipientLockedColumns, "$2", "i.asset", 1) + `
    WHERE ` + where + `) r
ORDER BY i.ord`
}

// ordRow scans a row of the batch's reads: its position into ord, the rest as a row of the
// single-item statement.
type ordRow struct {
	rows pgx.Rows
	ord  *int64
}

func (r ordRow) Scan(dest ...any) error { return r.rows.Scan(append([]any{r.ord}, dest...)...) }

// noRow is a single-item statement's answer for an item the batch's reads returned no row for.
type noRow struct{}

func (noRow) Scan(...any) error { return pgx.ErrNoRows }

// scanByOrd reads one of the batch's reads for n items: each row, scanned by scan as a row of
// the single-item statement, goes to the item of its position; an item without a row gets what
// scan makes of noRow.
func scanByOrd[T any](rows pgx.Rows, n int, scan func(pgx.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	out := make([]T, n)
	seen := make([]bool, n)
	var ord int64
	for rows.Next() {
		v, err := scan(ordRow{rows, &ord})
		if err != nil {
			return nil, err
		}
		if ord < 1 || ord > int64(n) || seen[ord-1] {
			return nil, fmt.Errorf("%w: batch read: a row for item %d of %d", ErrConstraint, ord, n)
		}
		out[ord-1], seen[ord-1] = v, true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for k := range out {
		if !seen[k] {
			v, err := scan(noRow{})
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
	}
	return out, nil
}

// scanTransferSender reads transferSenderSQL's row into rd.
func scanTransferSender(row pgx.Row, rd *transferReads) error {
	var (
		walletStatus *string
		decimals     *int
		minS, maxS   *string
		active       *bool
		limit        decimal.NullDecimal
		st           = &rd.sender
	)
	err := row.Scan(append([]any{&walletStatus, &decimals, &minS, &maxS, &active, &limit, &st.spent,
		&st.profile.first, &st.profile.last, &st.profile.phone,
		&rd.available,
		&rd.existing.found, &rd.existing.hash, &rd.existing.recipient},
		movementAuthDest(&rd.session, &rd.pin)...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		rd.senderErr = fmt.Errorf("user: %w", ErrNotFound)
		return nil
	}
	if err != nil {
		return err
	}
	if walletStatus == nil {
		rd.senderErr = fmt.Errorf("wallet: %w", ErrNotFound)
		return nil
	}
	st.walletStatus = *walletStatus
	if decimals != nil {
		st.assetFound, st.decimals, st.min, st.max, st.active, st.limit = true, *decimals, *minS, *maxS, *active, limit.Decimal
	}
	return nil
}

// errRecipientMoved: the recipient's user row moved while the batch waited for its lock (a
// relocation committed); the batch is retried like a serialization failure.
var errRecipientMoved = errors.New("recipient relocated during the transfer")

// applyDeltasSQL applies the batch's net delta to every balance row it touches, in one
// statement: $1..$3 the rows' keys, $4 their net deltas, $5 what their owners sent in the batch
// (NULL for a row that was only credited), which goes to today's daily counter (addSpentSQL).
// The rows are locked first, in the order of their keys (region, user, asset, bytewise, as
// balKey.less and every other movement orders them), so that two batches crediting each
// other's senders cannot deadlock whatever join order the planner picks for the UPDATE; it
// must find every row.
var applyDeltasSQL = `
WITH l AS MATERIALIZED (
    SELECT b.region AS home_region, b.id, d.delta, d.spent
    FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[]::numeric[], $5::text[]::numeric[]) AS d(region, user_id, asset, delta, spent)
    JOIN asset_balances b ON b.region = d.region::crdb_internal_region AND b.user_id = d.user_id AND b.asset_symbol = d.asset
    ORDER BY d.region COLLATE "C", d.user_id, d.asset COLLATE "C"
    FOR NO KEY UPDATE OF b),
u AS (
    UPDATE asset_balances b SET available = available + l.delta, total = total + l.delta, last_updated = now(),
        ` + addSpentIfSQL("l.spent") + `
    FROM l WHERE b.region = l.home_region AND b.id = l.id
    RETURNING 1)
SELECT 1 / ((SELECT count(*) FROM u) = cardinality($1::text[]))::int`

// writeTransfersSQL writes every accepted transfer of the batch in one statement, after the
// balance UPDATE: the transaction rows ($1..$10, one element per transfer), the ledger entries
// ($11..$20, one per side: sender, recipient, and the fee account's when there is a fee; each
// pinned to its row's region), and the activity rows ($21 their ids; ids and codes only, never PII). Each CTE
// modifies a different table (reference/cockroachdb.md §11). It returns the transactions'
// timestamp (the database transaction's start, the same for the whole batch), and fails with
// division_by_zero unless every entry found its balance row. Entries take wallet_id and
// balance_after from the row the batch just updated: balance_after = the row's total after the
// batch minus what later items of the batch added to it ($16, the suffix), i.e. the running
// balance in the batch's order.
const writeTransfersSQL = `
WITH i AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::uuid[], $6::uuid[],
        $7::text[]::numeric[], $8::text[], $9::text[]::numeric[], $10::text[], $21::uuid[])
        AS i(id, region, reference, request_hash, sender_id, recipient_id, amount, asset, fee, note, activity_id)),
t AS (
    INSERT INTO transactions (id, region, reference, request_hash, sender_id, recipient_id, type, status,
        amount, asset_symbol, fee, note, completed_at)
    SELECT id, region::crdb_internal_region, reference, request_hash, sender_id, recipient_id, 'transfer', 'completed',
        amount, asset, fee, note, now()
    FROM i
    RETURNING created_at),
e AS (
    INSERT INTO ledger_entries (id, region, wallet_id, user_id, transaction_id, asset_symbol, amount, balance_after,
        tx_type, counterparty_id, counterparty_display, note)
    SELECT x.id, b.region, b.wallet_id, b.user_id, x.tx, b.asset_symbol, x.amount, b.total - x.suffix,
        'transfer', x.cp, x.display, x.note
    FROM unnest($11::uuid[], $12::text[], $13::uuid[], $14::text[], $15::text[]::numeric[], $16::text[]::numeric[],
        $17::uuid[], $18::bytea[], $19::text[], $20::uuid[]) AS x(tx, region, user_id, asset, amount, suffix, cp, display, note, id)
    JOIN asset_balances b ON b.region = x.region::crdb_internal_region AND b.user_id = x.user_id AND b.asset_symbol = x.asset
    RETURNING 1),
a AS (
    INSERT INTO activity_logs (id, region, user_id, action, details)
    SELECT activity_id, region::crdb_internal_region, sender_id, 'transfer_sent',
        jsonb_build_object('transaction_id', id::text, 'type', 'transfer', 'asset', asset)
    FROM i)
SELECT (SELECT min(created_at) FROM t), 1 / ((SELECT count(*) FROM e) = cardinality($11::uuid[]))::int`

// Arguments of the hot path avoid driver.Valuer: pgx encodes a decimal.Decimal or a
// uuid.UUID through its Value method, to a string that it then parses again for the binary
// format, per argument and call (12 % of the API's CPU in the profile). Decimals go as their
// canonical strings, UUIDs as pgtype.UUID.
func pgUUID(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

// newRowID is the id of a row the batch inserts: a UUIDv7 (RFC 9562: a millisecond timestamp,
// then random bits), so that each primary-key index of the transfer's rows grows at its right
// edge like a sequence instead of taking every insert on a random leaf page. Measured under
// the driver's uniform scenario: see the header. PostgreSQL only: on CockroachDB, keys that
// follow time would send every insert to one range; that path keeps random ids (money.go).
func newRowID() uuid.UUID {
	if id, err := uuid.NewV7(); err == nil {
		return id
	}
	return uuid.New() // NewV7 fails only when crypto/rand does, and then so does New (it panics)
}

// optString is s, or NULL when empty, as an element of a text[] argument.
func optString(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// genericPlansSQL makes the batch's prepared statements run their generic plans. Under the
// default plan_cache_mode (auto) PostgreSQL keeps re-planning some of them on every execution
// (a custom plan per call, for instance of transferSenderSQL's nine-table join) when it
// estimates a custom plan cheaper, yet every statement of the batch is a lookup by key whose
// best plan does not depend on the values. Measured with the driver's uniform scenario (16
// clients, 20 s, runs alternated on this machine): 1336 vs 1207 and 1515 vs 1378 transfers/s,
// about 10 % more, all of it PostgreSQL's CPU. LOCAL: it ends with the batch's transaction, so
// the pool's other statements keep the default; within the batch, the history query that reads
// a replay's view (whose best plan may depend on the sender's history) runs after
// defaultPlansSQL.
const (
	genericPlansSQL = "SET LOCAL plan_cache_mode = force_generic_plan"
	defaultPlansSQL = "SET LOCAL plan_cache_mode TO DEFAULT"
)

// last_activity is marked at most once a minute, as SessionLive does.
const touchSessionSQL = `
UPDATE user_sessions SET last_activity = now()
WHERE region = $1 AND id = $2 AND last_activity < now() - INTERVAL '1 minute'`

func partyLess(a, b Party) bool {
	if a.Region != b.Region {
		return a.Region < b.Region
	}
	return bytes.Compare(a.UserID[:], b.UserID[:]) < 0
}

// transferBatchAttempt is one try of a batch. A nil error means the transaction committed (or
// nothing needed writing); each item then has its outcome. An error means nothing committed,
// except ErrAmbiguousCommit.
func (db *DB) transferBatchAttempt(ctx context.Context, items []*transferItem) (out []itemOutcome, err error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			// A failed pipeline leaves the transaction open or aborted; if the ROLLBACK fails
			// too, the pool destroys the connection on release.
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
		conn.Release()
	}()

	// Round trip 1: BEGIN, the senders' locks, the reads.
	var senders []Party
	seen := map[Party]bool{}
	for _, it := range items {
		if s := it.req.Sender; !seen[s] {
			seen[s] = true
			senders = append(senders, s)
		}
	}
	sort.Slice(senders, func(i, j int) bool { return partyLess(senders[i], senders[j]) })
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	b.Queue(genericPlansSQL)
	var lock struct {
		region []string
		user   [][16]byte
	}
	for _, s := range senders {
		lock.region, lock.user = append(lock.region, s.Region), append(lock.user, s.UserID)
	}
	b.Queue(lockSendersSQL, lock.region, lock.user)
	var snd struct {
		region, asset, ref []string
		user               [][16]byte
		session            pgtype.FlatArray[pgtype.UUID]
	}
	var byPhone, byID struct {
		idx   []int
		bidx  pgtype.FlatArray[[]byte]
		id    [][16]byte
		asset []string
	}
	for i, it := range items {
		r, s := it.req, it.req.Sender
		var session pgtype.UUID
		if r.Auth != nil {
			session = pgUUID(r.Auth.SessionID)
		}
		snd.region, snd.user, snd.asset = append(snd.region, s.Region), append(snd.user, s.UserID), append(snd.asset, r.Asset)
		snd.ref, snd.session = append(snd.ref, r.Reference), append(snd.session, session)
		if r.Recipient.UserID != uuid.Nil {
			byID.idx, byID.id, byID.asset = append(byID.idx, i), append(byID.id, r.Recipient.UserID), append(byID.asset, r.Asset)
		} else {
			byPhone.idx, byPhone.bidx, byPhone.asset = append(byPhone.idx, i), append(byPhone.bidx, it.bidx), append(byPhone.asset, r.Asset)
		}
	}
	b.Queue(transferSendersSQL, snd.region, snd.user, snd.asset, snd.ref, snd.session)
	if len(byPhone.idx) > 0 {
		b.Queue(recipientsLockedByPhoneSQL, byPhone.bidx, byPhone.asset)
	}
	if len(byID.idx) > 0 {
		b.Queue(recipientsLockedByIDSQL, byID.id, byID.asset)
	}
	type recipientRead struct {
		rc  recipientState
		err error
	}
	scanRecipients := func(br pgx.BatchResults, idx []int, reads []transferReads) error {
		if len(idx) == 0 {
			return nil
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		got, err := scanByOrd(rows, len(idx), func(row pgx.Row) (recipientRead, error) {
			rc, err := scanRecipient(row)
			if err != nil && !errors.Is(err, ErrRecipientNotFound) {
				return recipientRead{}, err
			}
			return recipientRead{rc, err}, nil
		})
		if err != nil {
			return err
		}
		for k, i := range idx {
			reads[i].rcpt, reads[i].rerr = got[k].rc, got[k].err
		}
		return nil
	}
	var reads []transferReads
	if err := func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for range 3 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		reads, err = scanByOrd(rows, len(items), func(row pgx.Row) (transferReads, error) {
			var rd transferReads
			err := scanTransferSender(row, &rd)
			return rd, err
		})
		if err != nil {
			return err
		}
		if err := scanRecipients(br, byPhone.idx, reads); err != nil {
			return err
		}
		if err := scanRecipients(br, byID.idx, reads); err != nil {
			return err
		}
		return br.Close()
	}(); err != nil {
		return nil, err
	}
	// A recipient the locking read did not find is looked up once more without the lock: if it
	// exists now, it moved while we waited (a relocation), and the batch retries. Only refusals
	// pay this round trip.
	for i, it := range items {
		if rd := &reads[i]; errors.Is(rd.rerr, ErrRecipientNotFound) {
			if _, err := recipientUnlocked(ctx, conn, it.req.Recipient, it.bidx, it.req.Asset); err == nil {
				return nil, errRecipientMoved
			}
		}
	}

	// Decide every item in order against the locked reads.
	out = make([]itemOutcome, len(items))
	var plans []plannedTransfer
	var replays []int
	avail := map[balKey]decimal.Decimal{}
	spent := map[balKey]decimal.Decimal{}
	hasBalance := map[balKey]bool{}
	refs := map[txRef]bool{}
	var ensure []ensureBalance
	for i, it := range items {
		p, replay, err := db.decideTransfer(it, &reads[i], i, avail, spent, hasBalance, refs, &ensure)
		switch {
		case errors.Is(err, errDuplicateReference):
			out[i].later = true
		case err != nil:
			out[i].err = err
		case replay:
			replays = append(replays, i)
		default:
			plans = append(plans, p)
		}
	}
	if len(plans) == 0 && len(replays) == 0 {
		_, err := conn.Exec(ctx, "ROLLBACK")
		return out, err
	}

	if hook := db.transfers.beforeWrites; hook != nil && len(plans) > 0 {
		hook(len(plans))
	}

	// Round trip 2: every write, the views, COMMIT.
	b = &pgx.Batch{}
	for _, e := range ensure {
		b.Queue(ensureBalanceSQL, e.party.Region, pgUUID(e.party.UserID), e.asset)
	}
	type entryRow struct {
		key       balKey
		plan      int
		amount    decimal.Decimal
		cpID      *uuid.UUID
		cpDisplay []byte
		suffix    decimal.Decimal
	}
	var entries []entryRow
	fees := map[string]Party{}
	for pi := range plans {
		p := &plans[pi]
		it := items[p.idx]
		r, s := it.req, it.req.Sender
		sid, rid := s.UserID, p.rcpt.UserID
		entries = append(entries,
			entryRow{key: balKey{s.Region, s.UserID, r.Asset}, plan: pi, amount: p.debit.Neg(), cpID: &rid, cpDisplay: p.senderView},
			entryRow{key: balKey{p.rcpt.Region, p.rcpt.UserID, r.Asset}, plan: pi, amount: r.Amount, cpID: &sid, cpDisplay: p.recipientView})
		if p.fee.Sign() > 0 {
			f, ok := fees[s.Region]
			if !ok {
				f = Party{SystemUserID(s.Region, SystemFees), s.Region}
				fees[s.Region] = f
			}
			entries = append(entries, entryRow{key: balKey{f.Region, f.UserID, r.Asset}, plan: pi, amount: p.fee, cpID: &sid})
		}
	}
	// Net deltas, and each entry's suffix: what later entries add to its row; what each sender
	// sent, for the daily counter.
	net := map[balKey]decimal.Decimal{}
	for i := len(entries) - 1; i >= 0; i-- {
		e := &entries[i]
		e.suffix = net[e.key]
		net[e.key] = net[e.key].Add(e.amount)
	}
	sent := map[balKey]decimal.Decimal{}
	for _, p := range plans {
		r := items[p.idx].req
		k := balKey{r.Sender.Region, r.Sender.UserID, r.Asset}
		sent[k] = sent[k].Add(p.debit)
	}
	keys := make([]balKey, 0, len(net))
	for k := range net {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	bal := struct {
		region, asset []string
		user          [][16]byte
		delta         []string
		spent         pgtype.FlatArray[pgtype.Text]
	}{}
	for _, k := range keys {
		bal.region, bal.user, bal.asset = append(bal.region, k.region), append(bal.user, k.user), append(bal.asset, k.asset)
		var sp pgtype.Text
		if v, ok := sent[k]; ok {
			sp = pgtype.Text{String: v.String(), Valid: true}
		}
		bal.delta, bal.spent = append(bal.delta, net[k].String()), append(bal.spent, sp)
	}
	if len(keys) > 0 {
		b.Queue(applyDeltasSQL, bal.region, bal.user, bal.asset, bal.delta, bal.spent)
	}
	var tx struct {
		id, sender, rcpt   [][16]byte
		activity           [][16]byte
		region, ref, asset []string
		hash               pgtype.FlatArray[[]byte]
		amount, fee        []string
		note               pgtype.FlatArray[pgtype.Text]
	}
	var ent struct {
		tx, user, cp   [][16]byte
		id             [][16]byte
		region, asset  []string
		amount, suffix []string
		display        pgtype.FlatArray[[]byte]
		note           pgtype.FlatArray[pgtype.Text]
	}
	for _, p := range plans {
		s, r := items[p.idx].req.Sender, items[p.idx].req
		tx.id, tx.sender, tx.rcpt = append(tx.id, p.id), append(tx.sender, s.UserID), append(tx.rcpt, p.rcpt.UserID)
		tx.region, tx.ref, tx.asset = append(tx.region, s.Region), append(tx.ref, r.Reference), append(tx.asset, r.Asset)
		tx.hash, tx.amount, tx.fee = append(tx.hash, p.hash), append(tx.amount, r.Amount.String()), append(tx.fee, p.fee.String())
		tx.note = append(tx.note, optString(r.Note))
		tx.activity = append(tx.activity, newRowID())
	}
	for _, e := range entries {
		p := &plans[e.plan]
		ent.tx, ent.user, ent.cp = append(ent.tx, p.id), append(ent.user, e.key.user), append(ent.cp, *e.cpID)
		ent.region, ent.asset, ent.id = append(ent.region, e.key.region), append(ent.asset, e.key.asset), append(ent.id, newRowID())
		ent.amount, ent.suffix = append(ent.amount, e.amount.String()), append(ent.suffix, e.suffix.String())
		ent.display, ent.note = append(ent.display, e.cpDisplay), append(ent.note, optString(items[p.idx].req.Note))
	}
	if len(plans) > 0 {
		b.Queue(writeTransfersSQL, tx.id, tx.region, tx.ref, tx.hash, tx.sender, tx.rcpt, tx.amount, tx.asset, tx.fee, tx.note,
			ent.tx, ent.region, ent.user, ent.asset, ent.amount, ent.suffix, ent.cp, ent.display, ent.note, ent.id, tx.activity)
	}
	for _, p := range plans {
		if a := items[p.idx].req.Auth; a != nil && reads[p.idx].session.stale {
			b.Queue(touchSessionSQL, items[p.idx].req.Sender.Region, pgUUID(a.SessionID))
		}
	}
	// A fresh transfer's answer is built here from what the batch wrote (transferView); only
	// replays read theirs back, through the history query.
	views := replays
	if len(views) > 0 {
		b.Queue(defaultPlansSQL)
	}
	for _, i := range views {
		q, args := historyQuery(items[i].req.Sender, HistoryFilter{Reference: items[i].req.Reference, Limit: 1})
		b.Queue(q, args...)
	}
	b.Queue("COMMIT")

	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for range ensure {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("ensure balance: %w", err)
			}
		}
		var one int
		if len(keys) > 0 {
			if err := br.QueryRow().Scan(&one); err != nil {
				return fmt.Errorf("balances: %w", err)
			}
		}
		if len(plans) > 0 {
			var created time.Time
			if err := br.QueryRow().Scan(&created, &one); err != nil {
				if sqlState(err) == codeUniqueViolation {
					return fmt.Errorf("%w: %w", errDuplicateReference, err)
				}
				return fmt.Errorf("write transfers: %w", err)
			}
			for _, p := range plans {
				out[p.idx].res = Result{Transaction: transferView(items[p.idx].req, p, created)}
			}
		}
		for _, p := range plans {
			if items[p.idx].req.Auth != nil && reads[p.idx].session.stale {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("session activity: %w", err)
				}
			}
		}
		if len(views) > 0 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for _, i := range views {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			txs, err := db.scanHistory(rows, items[i].req.Sender)
			if err != nil {
				return err
			}
			if len(txs) != 1 {
				return fmt.Errorf("%w: view of %q: %d rows", ErrConstraint, items[i].req.Reference, len(txs))
			}
			out[i].res = Result{Transaction: txs[0]}
		}
		if _, err := br.Exec(); err != nil {
			if sqlState(err) == "" {
				return fmt.Errorf("%w: %w", ErrAmbiguousCommit, err)
			}
			return err
		}
		return br.Close()
	}()
	if err != nil {
		return nil, err
	}
	for _, i := range replays {
		out[i].res.Replayed = true
	}
	return out, nil
}

// transferView is a fresh transfer as its sender sees it: what the history query returns for
// it (scanHistory's first branch: the sender's entry joined to the transaction row), built from
// the values the batch wrote and the transaction's timestamp, so that a replay reads the same.
func transferView(req TransferRequest, p plannedTransfer, created time.Time) Transaction {
	created = created.UTC()
	completed := created
	cp := p.shown
	return Transaction{ID: p.id, Reference: req.Reference, Type: TypeTransfer, Status: StatusCompleted,
		Direction: "outgoing", Amount: asStored(req.Amount), Asset: req.Asset, Decimals: p.decimals, Fee: asStored(p.fee),
		Note: req.Note, Counterparty: &cp, CreatedAt: created, CompletedAt: &completed}
}

// asStored is d as a NUMERIC(20,8) column reads back through pgx (eight decimals; zero as a
// bare 0), so that a fresh answer and its replay are equal value for value and digit for digit
// (TestTransferIdempotency compares them whole).
func asStored(d decimal.Decimal) decimal.Decimal {
	if d.IsZero() {
		return decimal.New(0, 0)
	}
	return decimal.RequireFromString(d.StringFixed(8))
}

// decideTransfer checks one item against its reads and the batch so far, in the order and with
// the answers of transferTx. It returns a plan, or replay, or the item's error
// (errDuplicateReference: wait for the next batch).
func (db *DB) decideTransfer(it *transferItem, rd *transferReads, idx int, avail, spent map[balKey]decimal.Decimal,
	hasBalance map[balKey]bool, refs map[txRef]bool, ensure *[]ensureBalance) (plannedTransfer, bool, error) {
	req, s := it.req, it.req.Sender
	if a := req.Auth; a != nil {
		if err := db.checkMovementAuth(s, a, rd.session, rd.pin); err != nil {
			return plannedTransfer{}, false, err
		}
	}
	if rd.senderErr != nil {
		return plannedTransfer{}, false, fmt.Errorf("sender %s: %w", s.UserID, rd.senderErr)
	}
	recipientID := rd.rcpt.userID
	if recipientID == uuid.Nil {
		recipientID = req.Recipient.UserID
	}
	if recipientID == uuid.Nil && rd.existing.recipient != nil {
		recipientID = *rd.existing.recipient
	}
	ref := txRef{s.Region, s.UserID, req.Reference}
	if refs[ref] {
		return plannedTransfer{}, false, errDuplicateReference
	}
	refs[ref] = true
	hash := requestHash(TypeTransfer, req.Asset, req.Amount.String(), recipientID.String(), req.Note)
	if rd.existing.found {
		if !bytes.Equal(rd.existing.hash, hash) {
			return plannedTransfer{}, false, fmt.Errorf("%w: reference %q was used with another request", ErrIdempotencyConflict, req.Reference)
		}
		return plannedTransfer{}, true, nil
	}
	if rd.rerr != nil {
		return plannedTransfer{}, false, rd.rerr
	}
	rc := rd.rcpt
	if rc.userID == s.UserID {
		return plannedTransfer{}, false, fmt.Errorf("%w: cannot send to yourself", ErrInvalidRecipient)
	}
	if !rc.canReceive() {
		return plannedTransfer{}, false, fmt.Errorf("%w: the recipient's wallet cannot receive", ErrInvalidRecipient)
	}
	sender := rd.sender
	if err := sender.check(req.Asset, req.Amount); err != nil {
		return plannedTransfer{}, false, err
	}
	fee := req.Fees.Fee(TypeTransfer, req.Asset, req.Amount, sender.decimals)
	debit := req.Amount.Add(fee)
	sk := balKey{s.Region, s.UserID, req.Asset}
	sender.spent = sender.spent.Add(spent[sk])
	if err := sender.checkLimit(debit); err != nil {
		return plannedTransfer{}, false, err
	}
	cur, ok := avail[sk]
	if !ok {
		if !rd.available.Valid {
			return plannedTransfer{}, false, fmt.Errorf("%w: %s", ErrInsufficientFunds, req.Asset)
		}
		cur = rd.available.Decimal
	}
	if cur.LessThan(debit) {
		return plannedTransfer{}, false, fmt.Errorf("%w: %s", ErrInsufficientFunds, req.Asset)
	}
	shown, senderView, err := db.displayBoth(rc.userID, rc.profile, s.UserID)
	if err != nil {
		return plannedTransfer{}, false, err
	}
	recipientView, err := db.display(s.UserID, sender.profile, rc.userID)
	if err != nil {
		return plannedTransfer{}, false, err
	}
	avail[sk] = cur.Sub(debit)
	spent[sk] = spent[sk].Add(debit)
	rk := balKey{rc.region, rc.userID, req.Asset}
	if v, ok := avail[rk]; ok {
		avail[rk] = v.Add(req.Amount) // a credit earlier in the batch is spendable later in it
	}
	if !rc.hasBalance && !hasBalance[rk] {
		hasBalance[rk] = true
		*ensure = append(*ensure, ensureBalance{party: Party{rc.userID, rc.region}, walletID: rc.walletID, asset: req.Asset})
	}
	return plannedTransfer{idx: idx, id: newRowID(), hash: hash, fee: fee, debit: debit, rcpt: Party{rc.userID, rc.region},
		senderView: senderView, recipientView: recipientView, shown: shown, decimals: sender.decimals}, false, nil
}
