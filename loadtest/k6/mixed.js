// @ts-check
// What the app does all day, on a ramping arrival rate: mostly balance and history reads,
// some transfers by phone number, in the weights of the `mixed` scenario.
//
//   k6 run -e BASE_URL=https://api.eu-west1.example -e OPS_KEY=... loadtest/k6/mixed.js
import exec from 'k6/execution';
import { newRunId, optionsFor, scenarioDef, userCount } from './lib/config.js';
import { balances, history, transfer, transferReference } from './lib/api.js';
import { checkConservation, createUsers, totals } from './lib/fixtures.js';
import { summaryHandler } from './lib/summary.js';

const NAME = 'mixed';
const def = scenarioDef(JSON.parse(open('../scenarios/scenarios.json')), NAME, 'mixed.js');

export const options = optionsFor(NAME, def, 'use');

// The operations and their cumulative weights, for one random draw per iteration.
const mix = def.mix || {};
const ops = Object.keys(mix).sort();
const totalWeight = ops.reduce((sum, op) => sum + mix[op], 0);

/** @typedef {{runId: number, users: import('./lib/api.js').User[], before: Record<string, string>}} Data */

/** @returns {Data} */
export function setup() {
  const runId = newRunId();
  const users = createUsers({
    runId, first: 0, count: userCount(def), assets: def.assets, funding: def.funding, label: NAME,
  });
  if (users.length < 2) throw new Error('mixed needs at least two users');
  return { runId, users, before: totals(users, def.assets) };
}

/** @returns {string} */
function draw() {
  let x = Math.random() * totalWeight;
  for (const op of ops) {
    x -= mix[op];
    if (x < 0) return op;
  }
  return ops[ops.length - 1];
}

/** @param {Data} data */
export function use(data) {
  const i = exec.scenario.iterationInTest;
  const user = data.users[i % data.users.length];
  switch (draw()) {
    case 'balance':
      balances(user.token);
      break;
    case 'history':
      history(user.token, 20);
      break;
    case 'transfer': {
      let recipient = data.users[(i * 7 + 1) % data.users.length];
      if (recipient.id === user.id) recipient = data.users[(i + 1) % data.users.length];
      transfer(user, recipient, {
        amount: def.amount,
        asset: def.assets[i % def.assets.length],
        reference: transferReference(data.runId),
        byPhone: def.recipient === 'phone',
        replay: def.replay_every > 0 && i % def.replay_every === 0,
      });
      break;
    }
  }
}

/** @param {Data} data */
export function teardown(data) {
  checkConservation(data.before, totals(data.users, def.assets));
}

export const handleSummary = summaryHandler(NAME);
