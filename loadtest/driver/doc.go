// Package driver is the Go load driver for the 7awel API: it runs the scenarios of
// loadtest/scenarios (uniform, hot, mixed, signup) against a live server over HTTP and
// measures what happened.
//
// A run has three phases. Setup goes through the real API only: users sign up with the OTP
// code a development-mode server returns in dev_code, and are funded with operator cash-ins
// (X-Ops-Key), with a progress bar on stderr. The load phase is open-loop (a fixed or ramping
// arrival rate; an iteration that finds no free worker is counted as dropped, as k6 does) or
// closed-loop (a fixed number of workers, each sending as soon as its last answer came back).
// Teardown reads every balance again and checks, per asset and to the last decimal, that the
// money of the scenario's users is what it was minus the fees the committed transfers
// reported, and, when every transfer's outcome is known, that each user's balance is exactly
// what the committed transfers make it. A failed check fails the run.
//
// The report gives throughput, p50/p90/p99/max latency from all samples, errors by status
// and problem code, the server's database retries (X-Tx-Retries) per committed transfer,
// idempotent replays, transport retries (a transfer whose connection broke is sent again with
// the same reference, so it can never apply twice) and the server's resident memory, as text
// and JSON.
//
// It is not k6 and does not run the k6 scripts (loadtest/k6run does, to prove their logic);
// it shares the scenario definitions with them so the two cannot drift. It refuses targets
// that are not loopback unless told otherwise, because it creates users and moves money.
package driver
