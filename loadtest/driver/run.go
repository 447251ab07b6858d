package driver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"

	"github.com/7awel/wallet/loadtest/scenarios"
)

// Modes of the load phase.
const (
	// Open is a fixed (or ramping) arrival rate: iterations start on schedule whether or not
	// earlier ones have finished; one that finds every worker busy is dropped.
	Open = "open"
	// Closed is a fixed number of workers, each starting its next iteration when the last
	// one ends: the throughput is whatever the server sustains at that concurrency.
	Closed = "closed"
)

// Config says what to run, against what, and how hard. Zero values take the scenario's.
type Config struct {
	// BaseURL is the API, e.g. http://127.0.0.1:8080.
	BaseURL string
	// OpsKey is the server's OPS_API_KEY, for cash-ins.
	OpsKey string
	// PIN of every user the run creates (4-6 digits, not weak).
	PIN string
	// Scenario names one of loadtest/scenarios; Def, when set, is used instead of the
	// embedded definition (tests give smaller ones).
	Scenario string
	Def      *scenarios.Scenario
	// Mode is Open or Closed; empty is Open for arrival-rate executors, Closed otherwise.
	Mode string
	// Workers is the concurrency of a closed run, and the most iterations in flight in an
	// open run (default: the scenario's vus, or maxVUs / preAllocatedVUs).
	Workers int
	// Rate, when positive, is a constant arrival rate per second for an open run.
	Rate float64
	// Duration, when positive, replaces the scenario's (ramping stages are scaled).
	Duration time.Duration
	// Users, when positive, replaces the scenario's number of payers (at most 9,999).
	Users int
	// RunID picks the run's phone numbers (+971 52 RRR NNNN for users, +971 58 RRR NNNN for
	// sign-up journeys); negative picks one at random.
	RunID int
	// SetupWorkers is how many users are created at once (default 8).
	SetupWorkers int
	// ServerPID, when positive, is the server's process id: its VmRSS is sampled from
	// /proc during the load and its VmHWM read at the end (same machine only).
	ServerPID int
	// MetricsURL, when set and ServerPID is not, is the server's Prometheus endpoint, whose
	// process_resident_memory_bytes is sampled instead.
	MetricsURL string
	// Progress receives the progress bar and status lines (stderr in the command); nil
	// discards them.
	Progress io.Writer
	// Timeout bounds one HTTP request (default 30 s).
	Timeout time.Duration
	// AllowRemote permits a BaseURL that is not loopback.
	AllowRemote bool
	// Clock paces open runs; nil is the real clock.
	Clock Clock
	// Reconcile, when set, is called at teardown to prove the books of the whole database
	// (e.g. storage.DB.Reconcile, which needs database access the driver does not have);
	// an error fails the run. summary says what was checked.
	Reconcile func(ctx context.Context) (summary string, err error)
	// Warmup makes every payer send one transfer after setup, before the load phase, with
	// the setup's concurrency and unmeasured: it warms what a returning user would find warm
	// (the server's verified-PIN cache, connections) so the load phase measures the steady
	// state. Its money moves are checked at teardown with the rest.
	Warmup bool
	// Population, when set, is the users of an earlier run of the same shape (same number
	// of payers and merchants, same assets, funded the same way) against the same server:
	// setup only reads their balances instead of signing them up and funding them again.
	// Report.Population gives it. Tokens are not refreshed, so reuse within minutes.
	Population *Population
	// BeforeLoad, when set, runs after setup, before the warm-up and the load phase (the
	// bench analyzes the freshly filled database and checkpoints here, so that the warm-up,
	// not the load, pays the first writes after the checkpoint); an error stops the run.
	BeforeLoad func(ctx context.Context) error
	// OnLoad, when set, is called as the load phase starts (after setup), e.g. to start a
	// CPU profile of the server that leaves setup out.
	OnLoad func()
	// AfterLoad, when set, is called as soon as the load phase ends, before the teardown's
	// reads (the bench reads the database's WAL position here).
	AfterLoad func()
}

// maxUsers is what the phone numbering gives a run: NNNN.
const maxUsers = 9999

// plan is a Config resolved against its scenario.
type plan struct {
	cfg      Config
	def      scenarios.Scenario
	mode     string
	workers  int
	duration time.Duration
	sched    Schedule
	users    int
	runID    int
	nonce    string
}

func resolve(cfg Config) (*plan, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("driver: no BaseURL")
	}
	if !cfg.AllowRemote && !IsLoopback(cfg.BaseURL) {
		return nil, fmt.Errorf("driver: %s is not a loopback address; the driver creates users and moves money, so pass AllowRemote (-allow-remote) to run it against another machine", cfg.BaseURL)
	}
	p := &plan{cfg: cfg}
	if cfg.Def != nil {
		p.def = *cfg.Def
	} else {
		def, err := scenarios.Get(cfg.Scenario)
		if err != nil {
			return nil, err
		}
		p.def = def
	}
	if cfg.OpsKey == "" {
		p.cfg.OpsKey = "dev-ops-key"
	}
	if cfg.PIN == "" {
		p.cfg.PIN = "739164"
	}
	if cfg.Timeout <= 0 {
		p.cfg.Timeout = 30 * time.Second
	}
	if cfg.SetupWorkers <= 0 {
		p.cfg.SetupWorkers = 8
	}
	if p.cfg.Clock == nil {
		p.cfg.Clock = realClock{}
	}
	if p.cfg.Progress == nil {
		p.cfg.Progress = io.Discard
	}
	l := p.def.Load
	p.mode = cfg.Mode
	if p.mode == "" {
		p.mode = Closed
		if l.Executor != scenarios.ConstantVUs {
			p.mode = Open
		}
	}
	p.duration = cfg.Duration
	if p.duration <= 0 {
		p.duration = l.TotalDuration()
	}
	p.workers = cfg.Workers
	switch p.mode {
	case Closed:
		if p.workers <= 0 {
			p.workers = max(l.VUs, l.PreAllocatedVUs)
		}
	case Open:
		if p.workers <= 0 {
			p.workers = max(l.MaxVUs, l.PreAllocatedVUs, l.VUs)
		}
		var err error
		if p.sched, err = ScheduleFor(l, cfg.Rate, cfg.Duration); err != nil {
			return nil, err
		}
		p.duration = p.sched.Duration()
	default:
		return nil, fmt.Errorf("driver: mode %q: want %s or %s", p.mode, Open, Closed)
	}
	if p.workers <= 0 {
		return nil, errors.New("driver: no workers: give Workers (-c)")
	}
	p.users = p.def.Users
	if cfg.Users > 0 {
		p.users = cfg.Users
	}
	if p.users+p.def.Merchants > maxUsers {
		return nil, fmt.Errorf("driver: %d users and %d merchants: at most %d in one run", p.users, p.def.Merchants, maxUsers)
	}
	if p.def.Amount != "" && (p.users < 1 || p.users+p.def.Merchants < 2) {
		return nil, errors.New("driver: transfers need at least one payer and two users")
	}
	p.runID = cfg.RunID
	if p.runID < 0 {
		p.runID = mrand.IntN(1000)
	}
	if p.runID > 999 {
		return nil, fmt.Errorf("driver: run id %d: want 0..999", p.runID)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	p.nonce = hex.EncodeToString(b)
	return p, nil
}

func userPhone(runID, n int) string    { return fmt.Sprintf("+97152%03d%04d", runID, n) }
func journeyPhone(runID, n int) string { return fmt.Sprintf("+97158%03d%04d", runID, n%10000) }

// move is a committed transfer, kept to recompute every balance at teardown.
type move struct {
	from, to int32
	asset    uint8
	amount   decimal.Decimal
	fee      decimal.Decimal
}

// pending is a transfer whose outcome the driver does not know (no answer even after
// retries, or a 5xx): teardown sends it again with the same reference to learn it.
type pending struct {
	from, to int32
	asset    uint8
	t        Transfer
}

// stats is one worker's tally, merged at the end so the hot path takes no lock.
type stats struct {
	lat       map[string]*Samples
	ok        map[string]int64
	errors    map[string]int64
	requests  int64
	failed    int64
	committed int64
	txRetries int64
	// retried counts requests whose answer had X-Tx-Retries > 0.
	retried          int64
	transportRetries int64
	replaysSent      int64
	replaysOK        int64
	moves            []move
	pending          []pending
}

func newStats() *stats {
	return &stats{lat: map[string]*Samples{}, ok: map[string]int64{}, errors: map[string]int64{}}
}

func (s *stats) latency(op string, d time.Duration) {
	x := s.lat[op]
	if x == nil {
		x = &Samples{}
		s.lat[op] = x
	}
	x.Add(d)
}

func (s *stats) fail(op, key string) {
	s.failed++
	s.errors[op+" "+key]++
}

func (s *stats) merge(o *stats) {
	for k, v := range o.lat {
		if s.lat[k] == nil {
			s.lat[k] = &Samples{}
		}
		s.lat[k].Merge(v)
	}
	for k, v := range o.ok {
		s.ok[k] += v
	}
	for k, v := range o.errors {
		s.errors[k] += v
	}
	s.requests += o.requests
	s.failed += o.failed
	s.committed += o.committed
	s.txRetries += o.txRetries
	s.retried += o.retried
	s.transportRetries += o.transportRetries
	s.replaysSent += o.replaysSent
	s.replaysOK += o.replaysOK
	s.moves = append(s.moves, o.moves...)
	s.pending = append(s.pending, o.pending...)
}

// errKey classifies a failed call for the error table: "422 insufficient_funds",
// "transport: timeout", ...
func errKey(res *Response, err error) string {
	var te *TransportError
	if errors.As(err, &te) {
		return te.Kind()
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return fmt.Sprintf("%d %s", ae.Status, ae.Code)
	}
	if err != nil {
		return "error: " + err.Error()
	}
	code := res.Code()
	if code == "" {
		code = http.StatusText(res.Status)
	}
	return fmt.Sprintf("%d %s", res.Status, code)
}

// runner holds a run's state.
type runner struct {
	p *plan
	// c sends the load; setup and teardown use its patient twin sc (same connections).
	c, sc     *Client
	payers    []User
	merchants []User
	all       []User
	assets    []string
	amount    decimal.Decimal
	// mixOps are the mixed scenario's operations in a fixed order, mixTotal their weight.
	mixOps   []string
	mixTotal int
	// live counters for the progress line.
	done, errs atomic.Int64
}

// Run sets up, loads and tears down one scenario and returns its report. The error is for
// runs that could not be carried out (bad configuration, setup failed); a run that was
// carried out but broke a check comes back as a report with Passed false.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	p, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	r := &runner{p: p, c: NewClient(p.cfg.BaseURL, p.cfg.OpsKey, p.cfg.PIN, p.workers+p.cfg.SetupWorkers, p.cfg.Timeout),
		assets: p.def.Assets}
	defer r.c.Close()
	r.sc = r.c.Patient()
	if p.def.Amount != "" {
		if r.amount, err = decimal.NewFromString(p.def.Amount); err != nil {
			return nil, err
		}
	}
	for op, w := range p.def.Mix {
		r.mixOps = append(r.mixOps, op)
		r.mixTotal += w
	}
	sort.Strings(r.mixOps)
	if len(r.assets) > math.MaxUint8 {
		return nil, errors.New("driver: too many assets")
	}
	rep := &Report{Scenario: p.cfg.Scenario, Description: p.def.Description, Mode: p.mode, Workers: p.workers,
		RunID: p.runID, Users: p.users, Merchants: p.def.Merchants, Target: p.cfg.BaseURL,
		Started: time.Now().UTC().Format(time.RFC3339)}
	if p.mode == Open {
		rep.ScheduledIterations = p.sched.Total()
		rep.TargetRate = float64(p.sched.Total()) / p.duration.Seconds()
	}

	if p.def.Amount == "" && p.def.Mix == nil {
		rep.Users, rep.Merchants = 0, 0 // the sign-up scenario's users are its load
	}
	setupStart := time.Now()
	var before []map[string]decimal.Decimal
	var fresh []bool
	if pop := p.cfg.Population; pop != nil {
		before, err = r.reuse(ctx, pop)
	} else {
		before, fresh, err = r.setup(ctx)
	}
	if err != nil {
		return rep, fmt.Errorf("driver: setup: %w", err)
	}
	rep.Population = &Population{users: r.all, payers: len(r.payers), assets: r.assets, funding: p.def.Funding}
	rep.SetupSeconds = round3(time.Since(setupStart).Seconds())
	if p.cfg.BeforeLoad != nil {
		if err := p.cfg.BeforeLoad(ctx); err != nil {
			return rep, fmt.Errorf("driver: before the load: %w", err)
		}
	}
	var warm []move
	if p.cfg.Warmup && p.def.Amount != "" {
		warmStart := time.Now()
		if warm, err = r.warmup(ctx); err != nil {
			return rep, fmt.Errorf("driver: warm-up: %w", err)
		}
		rep.WarmupTransfers = len(warm)
		rep.WarmupSeconds = round3(time.Since(warmStart).Seconds())
	}

	mem := newMemSampler(p.cfg.ServerPID, p.cfg.MetricsURL, r.c.http)
	mem.start(ctx)
	cpu0 := markCPU(p.cfg.ServerPID)
	st, elapsed, started, dropped := r.load(ctx)
	cpu1 := markCPU(p.cfg.ServerPID)
	if p.cfg.AfterLoad != nil {
		p.cfg.AfterLoad()
	}
	rep.Memory = mem.stop()
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}

	rep.fill(st, elapsed, started, dropped, p)
	rep.CPU = cpu1.since(cpu0, rep.good)
	st.moves = append(st.moves, warm...)
	r.teardown(ctx, rep, st, before, fresh)
	if p.cfg.Reconcile != nil {
		summary, err := p.cfg.Reconcile(ctx)
		rep.Reconcile = &ReconcileResult{OK: err == nil, Summary: summary}
		if err != nil {
			rep.Reconcile.Error = err.Error()
			rep.Failures = append(rep.Failures, "reconcile: "+err.Error())
		}
	}
	rep.finish(p.def)
	return rep, nil
}

// warmup has every payer pay one transfer (to the next user, or to a merchant), waiting out
// busy answers; anything but a committed transfer stops the run.
func (r *runner) warmup(ctx context.Context) ([]move, error) {
	moves := make([]move, len(r.payers))
	bar := newBar(r.p.cfg.Progress, fmt.Sprintf("warm-up %s: one transfer per payer", r.p.cfg.Scenario), len(r.payers))
	defer bar.finish()
	err := parallel(ctx, r.p.cfg.SetupWorkers, len(r.payers), func(ctx context.Context, i int) error {
		to := (i + 1) % len(r.all)
		if len(r.merchants) > 0 {
			to = len(r.payers) + i%len(r.merchants)
		}
		t := Transfer{Amount: r.p.def.Amount, Asset: r.assets[i%len(r.assets)],
			Reference: fmt.Sprintf("drv-%03d-%s-%s-warm-%d", r.p.runID, r.p.nonce, r.p.cfg.Scenario, i)}
		if r.p.def.Recipient == "phone" {
			t.RecipientPhone = r.all[to].Phone
		} else {
			t.RecipientID = r.all[to].ID
		}
		res, err := r.sc.Send(ctx, r.all[i].Token, t)
		if err != nil {
			return err
		}
		tx, perr := ParseTransaction(res.Body)
		if res.Status != http.StatusCreated || perr != nil || tx.Reference != t.Reference {
			return &APIError{What: "POST /transactions/send", Status: res.Status, Code: res.Code(), Body: string(res.Body)}
		}
		moves[i] = move{int32(i), int32(to), uint8(i % len(r.assets)), r.amount, tx.Fee}
		bar.add(1)
		return nil
	})
	return moves, err
}

// Population is the users a run set up, for another run to reuse (Config.Population).
type Population struct {
	users   []User
	payers  int
	assets  []string
	funding string
}

// reuse takes an earlier run's users, after checking they fit this scenario.
func (r *runner) reuse(ctx context.Context, pop *Population) ([]map[string]decimal.Decimal, error) {
	p := r.p
	if len(pop.users) != p.users+p.def.Merchants || pop.payers != p.users ||
		strings.Join(pop.assets, ",") != strings.Join(r.assets, ",") || pop.funding != p.def.Funding {
		return nil, fmt.Errorf("the population to reuse (%d users, %d payers, %v, funding %q) does not fit scenario %s (%d payers, %d merchants, %v, funding %q)",
			len(pop.users), pop.payers, pop.assets, pop.funding, p.cfg.Scenario, p.users, p.def.Merchants, r.assets, p.def.Funding)
	}
	if p.def.Amount == "" && p.def.Mix == nil {
		return nil, errors.New("the sign-up scenario creates its users as its load; it reuses none")
	}
	r.all = pop.users
	r.payers = r.all[:pop.payers]
	r.merchants = r.all[pop.payers:]
	return r.readBalances(ctx, "setup: balances")
}

// setup creates the scenario's users through the API and reads their balances. fresh says
// which users were signed up now (not logged in again from an earlier run with the same id).
func (r *runner) setup(ctx context.Context) ([]map[string]decimal.Decimal, []bool, error) {
	p := r.p
	total := p.users + p.def.Merchants
	if p.def.Amount == "" && p.def.Mix == nil {
		// The sign-up scenario creates its users as its load.
		total = 0
	}
	users := make([]User, total)
	fresh := make([]bool, total)
	bar := newBar(p.cfg.Progress, fmt.Sprintf("setup %s: users", p.cfg.Scenario), total)
	err := parallel(ctx, p.cfg.SetupWorkers, total, func(ctx context.Context, n int) error {
		phone := userPhone(p.runID, n)
		device := fmt.Sprintf("drv-%03d-%04d", p.runID, n)
		u, err := r.sc.SignUp(ctx, phone, "Load", fmt.Sprintf("Driver%d", n), device)
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == "phone_taken" {
			u, err = r.sc.Login(ctx, phone, device)
		} else if err == nil {
			fresh[n] = true
		}
		if err != nil {
			return fmt.Errorf("user %d (%s): %w", n, phone, err)
		}
		if n < p.users && p.def.Funding != "" {
			for _, a := range r.assets {
				ref := fmt.Sprintf("drv-fund-%03d-%04d-%s", p.runID, n, a)
				if err := r.sc.CashIn(ctx, u.ID, p.def.Funding, a, ref); err != nil {
					return fmt.Errorf("cash-in for user %d: %w", n, err)
				}
			}
		}
		users[n] = u
		bar.add(1)
		return nil
	})
	bar.finish()
	if err != nil {
		return nil, nil, err
	}
	r.all = users
	r.payers = users[:min(p.users, total)]
	r.merchants = users[min(p.users, total):]
	before, err := r.readBalances(ctx, "setup: balances")
	return before, fresh, err
}

// readBalances reads every user's balances, in user order.
func (r *runner) readBalances(ctx context.Context, label string) ([]map[string]decimal.Decimal, error) {
	out := make([]map[string]decimal.Decimal, len(r.all))
	bar := newBar(r.p.cfg.Progress, label, len(r.all))
	defer bar.finish()
	return out, parallel(ctx, r.p.cfg.SetupWorkers, len(r.all), func(ctx context.Context, i int) error {
		b, err := r.sc.Balances(ctx, r.all[i].Token)
		if err != nil {
			return fmt.Errorf("balances of user %d: %w", i, err)
		}
		for _, a := range r.assets {
			if _, ok := b[a]; !ok {
				return fmt.Errorf("user %d has no %s balance", i, a)
			}
		}
		out[i] = b
		bar.add(1)
		return nil
	})
}

// parallel calls fn(0..n-1) on `workers` goroutines and stops at the first error.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// load runs the load phase and returns the merged stats, its wall time, and (open runs) the
// iterations started and dropped.
func (r *runner) load(ctx context.Context) (*stats, time.Duration, int64, int64) {
	p := r.p
	ws := make([]*stats, p.workers)
	var wg sync.WaitGroup
	// The wall clock times the run; the pacer's clock (a fake one in tests) only paces it.
	if p.cfg.OnLoad != nil {
		p.cfg.OnLoad()
	}
	start := time.Now()
	stopProgress := r.progress(start)
	var started, dropped int64
	switch p.mode {
	case Closed:
		deadline := start.Add(p.duration)
		var next atomic.Int64
		for w := range ws {
			ws[w] = newStats()
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := mrand.New(mrand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
				for ctx.Err() == nil && time.Now().Before(deadline) {
					r.iterate(ctx, ws[w], rng, next.Add(1)-1)
				}
			}()
		}
		wg.Wait()
		started = next.Load()
	case Open:
		jobs := make(chan int64)
		for w := range ws {
			ws[w] = newStats()
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := mrand.New(mrand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
				for i := range jobs {
					r.iterate(ctx, ws[w], rng, i)
				}
			}()
		}
		started, dropped = pace(ctx, p.cfg.Clock, p.sched, p.cfg.Clock.Now(), func(i int64) bool {
			select {
			case jobs <- i:
				return true
			default:
				return false
			}
		})
		close(jobs)
		wg.Wait()
	}
	elapsed := time.Since(start)
	stopProgress()
	all := newStats()
	for _, s := range ws {
		all.merge(s)
	}
	return all, elapsed, started, dropped
}

// progress shows the load phase's status until stopped: redrawn every second on a
// terminal, a line every 5 s in a log.
func (r *runner) progress(start time.Time) func() {
	w := r.p.cfg.Progress
	tty := isTTY(w)
	done := make(chan struct{})
	stopped := make(chan struct{})
	line := func() string {
		return fmt.Sprintf("load %s: %5.1fs / %.0fs  ok %d  errors %d", r.p.cfg.Scenario,
			time.Since(start).Seconds(), r.p.duration.Seconds(), r.done.Load(), r.errs.Load())
	}
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for tick := 1; ; tick++ {
			select {
			case <-done:
				if tty {
					fmt.Fprint(w, "\r")
				}
				fmt.Fprintln(w, line())
				return
			case <-t.C:
				if tty {
					fmt.Fprint(w, "\r"+line())
				} else if tick%5 == 0 {
					fmt.Fprintln(w, line())
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// iterate is one iteration of the scenario: one transfer (uniform, hot), one weighted
// operation (mixed) or one sign-up journey (signup).
func (r *runner) iterate(ctx context.Context, s *stats, rng *mrand.Rand, i int64) {
	def := &r.p.def
	switch {
	case def.Mix != nil:
		r.mixed(ctx, s, rng, i)
	case def.Amount != "":
		payer := rng.IntN(len(r.payers))
		var to int
		if len(r.merchants) > 0 {
			to = len(r.payers) + int(i%int64(len(r.merchants)))
		} else {
			to = rng.IntN(len(r.payers) - 1)
			if to >= payer {
				to++ // any payer but the payer itself, uniformly
			}
		}
		replay := def.ReplayEvery > 0 && i%int64(def.ReplayEvery) == 0
		r.transfer(ctx, s, payer, to, int(i%int64(len(r.assets))), i, replay)
	default:
		r.journey(ctx, s, i)
	}
}

func (r *runner) reference(i int64) string {
	return fmt.Sprintf("drv-%03d-%s-%s-%d", r.p.runID, r.p.nonce, r.p.cfg.Scenario, i)
}

func (r *runner) transfer(ctx context.Context, s *stats, from, to, asset int, i int64, replay bool) {
	t := Transfer{Amount: r.p.def.Amount, Asset: r.assets[asset], Reference: r.reference(i)}
	if r.p.def.Recipient == "phone" {
		t.RecipientPhone = r.all[to].Phone
	} else {
		t.RecipientID = r.all[to].ID
	}
	payer := r.all[from]
	res, err := r.c.Send(ctx, payer.Token, t)
	s.requests++
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		s.fail("transfer", errKey(nil, err))
		r.errs.Add(1)
		s.pending = append(s.pending, pending{int32(from), int32(to), uint8(asset), t})
		return
	}
	s.transportRetries += int64(res.TransportRetries)
	r.serverCounts(s, res)
	s.latency("transfer", res.Latency)
	tx, perr := ParseTransaction(res.Body)
	// A first send answered as a replay is right only when a transport retry happened: the
	// lost first attempt committed and the repeat found it.
	committed := (res.Status == http.StatusCreated || (res.Status == http.StatusOK && res.Replayed() && res.TransportRetries > 0)) &&
		perr == nil && tx.Reference == t.Reference
	switch {
	case committed:
		s.committed++
		s.ok["transfer"]++
		r.done.Add(1)
		s.moves = append(s.moves, move{int32(from), int32(to), uint8(asset), r.amount, tx.Fee})
	case res.Status >= 500:
		// The server may or may not have committed: teardown asks again.
		s.fail("transfer", errKey(res, nil))
		r.errs.Add(1)
		s.pending = append(s.pending, pending{int32(from), int32(to), uint8(asset), t})
		return
	case res.Status == http.StatusOK && res.Replayed():
		// A replay of a reference this run never sent before: references collide.
		s.fail("transfer", "200 replay of a reference sent for the first time")
		r.errs.Add(1)
		return
	case res.Status < 300:
		s.fail("transfer", fmt.Sprintf("%d with an unexpected body", res.Status))
		r.errs.Add(1)
		return
	default:
		s.fail("transfer", errKey(res, nil))
		r.errs.Add(1)
		return
	}
	if !replay {
		return
	}
	// The very same request again must be answered with the stored transaction.
	s.replaysSent++
	again, err := r.c.Send(ctx, payer.Token, t)
	s.requests++
	if err != nil {
		if ctx.Err() == nil {
			s.fail("replay", errKey(nil, err))
			r.errs.Add(1)
		}
		return
	}
	r.serverCounts(s, again)
	s.latency("replay", again.Latency)
	rtx, perr := ParseTransaction(again.Body)
	if again.Status == http.StatusOK && again.Replayed() && perr == nil && rtx.ID == tx.ID {
		s.replaysOK++
		s.ok["replay"]++
		return
	}
	s.fail("replay", fmt.Sprintf("%d not a replay of the same transaction (%s)", again.Status, again.Code()))
	r.errs.Add(1)
}

func (r *runner) serverCounts(s *stats, res *Response) {
	if n := res.TxRetries(); n > 0 {
		s.txRetries += n
		s.retried++
	}
}

func (r *runner) mixed(ctx context.Context, s *stats, rng *mrand.Rand, i int64) {
	mix, ops := r.p.def.Mix, r.mixOps
	x := rng.IntN(r.mixTotal)
	op := ops[len(ops)-1]
	for _, o := range ops {
		if x < mix[o] {
			op = o
			break
		}
		x -= mix[o]
	}
	n := len(r.all)
	u := int(i % int64(n))
	switch op {
	case "transfer":
		to := int((i*7 + 1) % int64(n))
		if to == u {
			to = (u + 1) % n
		}
		replay := r.p.def.ReplayEvery > 0 && i%int64(r.p.def.ReplayEvery) == 0
		r.transfer(ctx, s, u, to, int(i%int64(len(r.assets))), i, replay)
	case "balance":
		r.read(ctx, s, "balance", func() (*Response, error) { return r.c.BalancesRaw(ctx, r.all[u].Token) })
	case "history":
		r.read(ctx, s, "history", func() (*Response, error) { return r.c.History(ctx, r.all[u].Token, 20) })
	}
}

func (r *runner) read(ctx context.Context, s *stats, op string, call func() (*Response, error)) {
	res, err := call()
	s.requests++
	if err != nil {
		if ctx.Err() == nil {
			s.fail(op, errKey(nil, err))
			r.errs.Add(1)
		}
		return
	}
	s.transportRetries += int64(res.TransportRetries)
	s.latency(op, res.Latency)
	if res.Status != http.StatusOK {
		s.fail(op, errKey(res, nil))
		r.errs.Add(1)
		return
	}
	s.ok[op]++
	r.done.Add(1)
}

// journey is the sign-up scenario's iteration: OTP, sign-up, OTP, login, profile.
func (r *runner) journey(ctx context.Context, s *stats, i int64) {
	phone := journeyPhone(r.p.runID, int(i))
	device := fmt.Sprintf("drv-journey-%03d-%d", r.p.runID, i)
	start := time.Now()
	s.requests++
	created, err := r.c.SignUp(ctx, phone, "Journey", fmt.Sprintf("User%d", i), device)
	if err == nil {
		var again User
		if again, err = r.c.Login(ctx, phone, device); err == nil {
			var res *Response
			if res, err = r.c.Me(ctx, again.Token); err == nil {
				var me User
				if err = expect("GET /user", res, &me, http.StatusOK); err == nil && (me.ID != created.ID || me.Phone != phone) {
					err = fmt.Errorf("GET /user: profile %s/%s is not the signed-up user %s/%s", me.ID, me.Phone, created.ID, phone)
				}
			}
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			s.fail("signup", errKey(nil, err))
			r.errs.Add(1)
		}
		return
	}
	s.latency("signup", time.Since(start))
	s.ok["signup"]++
	r.done.Add(1)
}
