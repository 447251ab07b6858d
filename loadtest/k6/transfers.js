// @ts-check
// Transfers at a fixed arrival rate: SCENARIO=uniform (random pairs of users) or
// SCENARIO=hot (every payer pays one merchant, so one balance takes every credit).
//
//   k6 run -e BASE_URL=https://api.me-central1.example -e OPS_KEY=... -e SCENARIO=hot loadtest/k6/transfers.js
//
// Setup signs users up and funds them through the API; teardown proves that money was
// conserved per asset. The load, users and thresholds are in loadtest/scenarios/scenarios.json.
import exec from 'k6/execution';
import { newRunId, optionsFor, scenarioDef, userCount } from './lib/config.js';
import { transfer, transferReference } from './lib/api.js';
import { checkConservation, createUsers, totals } from './lib/fixtures.js';
import { summaryHandler } from './lib/summary.js';

const NAME = __ENV.SCENARIO || 'uniform';
// open() is called here, in the entry script, because k6 resolves its path from the script
// that runs, not from the module that calls it.
const def = scenarioDef(JSON.parse(open('../scenarios/scenarios.json')), NAME, 'transfers.js');

export const options = optionsFor(NAME, def, 'pay');

/**
 * @typedef {{runId: number, payers: import('./lib/api.js').User[], merchants: import('./lib/api.js').User[],
 *   before: Record<string, string>}} Data
 */

/** @returns {Data} */
export function setup() {
  const runId = newRunId();
  const payers = createUsers({
    runId, first: 0, count: userCount(def), assets: def.assets, funding: def.funding, label: `${NAME} payers`,
  });
  // Merchants start empty: they only receive.
  const merchants = createUsers({
    runId, first: payers.length, count: def.merchants, assets: def.assets, funding: null, label: `${NAME} merchants`,
  });
  if (payers.length + merchants.length < 2) {
    throw new Error('transfers need at least two users');
  }
  return { runId, payers, merchants, before: totals(payers.concat(merchants), def.assets) };
}

/**
 * @template T
 * @param {T[]} list
 * @returns {T}
 */
function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

/** One iteration is one transfer, so iterations per second are transfers per second. */
/** @param {Data} data */
export function pay(data) {
  const i = exec.scenario.iterationInTest;
  const payer = pick(data.payers);
  let recipient = data.merchants.length > 0 ? data.merchants[i % data.merchants.length] : pick(data.payers);
  while (recipient.id === payer.id) recipient = pick(data.payers);
  transfer(payer, recipient, {
    amount: def.amount,
    asset: def.assets[i % def.assets.length],
    reference: transferReference(data.runId),
    byPhone: def.recipient === 'phone',
    replay: def.replay_every > 0 && i % def.replay_every === 0,
  });
}

/** @param {Data} data */
export function teardown(data) {
  checkConservation(data.before, totals(data.payers.concat(data.merchants), def.assets));
}

export const handleSummary = summaryHandler(NAME);
