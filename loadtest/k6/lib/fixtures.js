// @ts-check
// Setup and teardown through the real API: users are signed up in development mode (the
// OTP's dev_code), funded with operator cash-ins, and at the end every balance is read
// again to prove that transfers moved money without creating or losing any.
import http from 'k6/http';
import { check, fail } from 'k6';
import { Rate } from 'k6/metrics';
import {
  balancesFrom, balancesReq, body, cashInReq, describe, login, otpSend, otpVerify, signUpReq, userFrom,
} from './api.js';
import { fixturePhone } from './config.js';
import { sameAmount, sumDecimals } from './money.js';

/** One sample per asset at teardown: 1 when the sum of balances did not change. */
export const moneyConserved = new Rate('wallet_money_conserved');

/** Requests setup sends at once (k6 runs a batch in parallel). */
const BATCH = Number(__ENV.SETUP_BATCH || 10);

/**
 * @param {number} from
 * @param {number} to exclusive
 */
function range(from, to) {
  const out = [];
  for (let i = from; i < to; i++) out.push(i);
  return out;
}

/**
 * Fails setup with the answer that broke it; setup cannot go on with half its users.
 * @param {import('k6/http').RefinedResponse<any>} res
 * @param {string} what
 * @param {(r: import('k6/http').RefinedResponse<any>) => boolean} ok
 */
function must(res, what, ok) {
  if (!check(res, { [`setup: ${what}`]: ok })) {
    fail(`setup: ${what}: ${describe(res)}`);
  }
}

/**
 * Signs up `count` users numbered from `first` in this run, and funds each with `funding`
 * of every asset when funding is given. A phone already taken (a run id used before) is
 * logged in instead. Prints a progress bar, since a large setup takes a while.
 * @param {{runId: number, first: number, count: number, assets: string[], funding: string | null, label: string}} o
 * @returns {import('./api.js').User[]}
 */
export function createUsers(o) {
  /** @type {import('./api.js').User[]} */
  const users = [];
  let shown = -1;
  for (let start = 0; start < o.count; start += BATCH) {
    const nums = range(o.first + start, o.first + Math.min(start + BATCH, o.count));
    const phones = nums.map((n) => fixturePhone(o.runId, n));

    const sent = http.batch(phones.map((p) => otpSend(p, 'register')));
    const codes = sent.map((r) => {
      must(r, 'otp sent with dev_code', (x) => x.status === 202 && !!(body(x) && body(x).dev_code));
      return String(body(r).dev_code);
    });
    const verified = http.batch(phones.map((p, i) => otpVerify(p, 'register', codes[i])));
    const vts = verified.map((r) => {
      must(r, 'otp verified', (x) => x.status === 200 && !!(body(x) && body(x).verification_token));
      return String(body(r).verification_token);
    });
    const created = http.batch(nums.map((n, i) => {
      const r = signUpReq(vts[i], 'Load', `Test${n}`, `k6-${o.runId}-${n}`);
      // phone_taken is handled below (by logging in), so it is no failed request.
      r.params.responseCallback = http.expectedStatuses({ min: 200, max: 299 }, 409);
      return r;
    }));
    created.forEach((r, i) => {
      let user = null;
      const b = body(r);
      if (r.status === 409 && b && b.code === 'phone_taken') {
        user = login(phones[i], `k6-${o.runId}-${nums[i]}`);
      } else {
        user = userFrom(r, 'setup: signed up (201)', 201, phones[i]);
      }
      if (user === null) fail(`setup: could not sign up or log in ${phones[i]}: ${describe(r)}`);
      users.push(user);
    });

    if (o.funding) {
      const batch = [];
      for (let i = start; i < users.length; i++) {
        for (const asset of o.assets) {
          batch.push(cashInReq(users[i].id, o.funding, asset, `k6-fund-${o.runId}-${o.first + i}-${asset}`));
        }
      }
      // 200 is a replay of a cash-in an earlier run with this run id already made.
      http.batch(batch).forEach((r) => must(r, 'cash-in accepted', (x) => x.status === 201 || x.status === 200));
    }

    const pct = Math.floor((users.length * 10) / o.count);
    if (pct !== shown) {
      shown = pct;
      console.log(`setup ${o.label}: [${'#'.repeat(pct)}${'.'.repeat(10 - pct)}] ${users.length}/${o.count} users`);
    }
  }
  return users;
}

/**
 * The sum of the balances (`total`) of the users, per asset, exactly.
 * @param {import('./api.js').User[]} users
 * @param {string[]} assets
 * @returns {Record<string, string>}
 */
export function totals(users, assets) {
  /** @type {Record<string, string[]>} */
  const amounts = {};
  for (const a of assets) amounts[a] = [];
  for (let start = 0; start < users.length; start += BATCH) {
    const chunk = users.slice(start, start + BATCH);
    http.batch(chunk.map((u) => balancesReq(u.token))).forEach((r, i) => {
      const b = balancesFrom(r);
      if (b === null) fail(`balances of ${chunk[i].id}: ${describe(r)}`);
      for (const a of assets) {
        if (b[a] === undefined) fail(`user ${chunk[i].id} has no ${a} balance`);
        amounts[a].push(b[a]);
      }
    });
  }
  /** @type {Record<string, string>} */
  const out = {};
  for (const a of assets) out[a] = sumDecimals(amounts[a]);
  return out;
}

/**
 * Compares the money per asset before and after the load and fails the test on any
 * difference: transfers between the test's own users can only move money around.
 * @param {Record<string, string>} before
 * @param {Record<string, string>} after
 */
export function checkConservation(before, after) {
  const broken = [];
  for (const asset of Object.keys(before)) {
    const ok = after[asset] !== undefined && sameAmount(before[asset], after[asset]);
    moneyConserved.add(ok, { asset });
    check(null, { [`money conserved in ${asset}`]: () => ok });
    console.log(`teardown: ${asset} before ${before[asset]} after ${after[asset]} ${ok ? 'conserved' : 'NOT CONSERVED'}`);
    if (!ok) broken.push(`${asset}: before ${before[asset]}, after ${after[asset]}`);
  }
  if (broken.length > 0) {
    fail(`money not conserved: ${broken.join('; ')}`);
  }
}
