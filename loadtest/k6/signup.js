// @ts-check
// The journey of a new user at fixed concurrency: OTP for registration, sign-up, OTP for
// login, login on the same device, then the profile. Needs the server in development mode
// (the OTP answer carries dev_code).
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/signup.js
import exec from 'k6/execution';
import { check } from 'k6';
import { journeyPhone, newRunId, optionsFor, scenarioDef } from './lib/config.js';
import { login, me, signUp, signupDuration } from './lib/api.js';
import { summaryHandler } from './lib/summary.js';

const NAME = 'signup';
const def = scenarioDef(JSON.parse(open('../scenarios/scenarios.json')), NAME, 'signup.js');

export const options = optionsFor(NAME, def, 'journey');

/** @typedef {{runId: number}} Data */

/** @returns {Data} */
export function setup() {
  return { runId: newRunId() };
}

/** @param {Data} data */
export function journey(data) {
  const n = exec.scenario.iterationInTest;
  const phone = journeyPhone(data.runId, n);
  const device = `k6-journey-${data.runId}-${n}`;
  const start = Date.now();

  const created = signUp(phone, 'Journey', `User${n}`, device);
  if (created === null) return;
  const again = login(phone, device);
  if (again === null) return;
  const { res, user } = me(again.token);
  check(res, {
    'profile read (200)': (r) => r.status === 200,
    'profile is the signed-up user': () => !!(user && user.id === created.id && user.phone === phone),
  });
  signupDuration.add(Date.now() - start);
}

export const handleSummary = summaryHandler(NAME);
