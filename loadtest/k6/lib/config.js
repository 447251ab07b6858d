// @ts-check
// Settings from the environment (k6 run -e NAME=value) and the k6 options built from a
// scenario of loadtest/scenarios/scenarios.json, the file the Go driver reads too.

/** Base URL of the API, without a trailing slash. */
export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
/** The operator key (X-Ops-Key) for cash-in; the server's OPS_API_KEY. */
export const OPS_KEY = __ENV.OPS_KEY || 'dev-ops-key';
/** The PIN of every user the scripts create: 4 to 6 digits, not weak. */
export const PIN = __ENV.PIN || '739164';

/**
 * A scenario as scenarios.json defines it (see loadtest/scenarios/scenarios.go).
 * @typedef {object} ScenarioDef
 * @property {string} description
 * @property {string} script
 * @property {number} users
 * @property {number} merchants
 * @property {string[]} assets
 * @property {string} funding
 * @property {string} amount
 * @property {string} recipient
 * @property {number} replay_every
 * @property {Record<string, number>} [mix]
 * @property {Record<string, string>} tags
 * @property {Record<string, any>} load
 * @property {Record<string, string[]>} thresholds
 */

/**
 * Picks one scenario out of the parsed scenarios.json and makes sure this script runs it.
 * @param {any} file the parsed scenarios.json
 * @param {string} name
 * @param {string} script this script's file name
 * @returns {ScenarioDef}
 */
export function scenarioDef(file, name, script) {
  const def = file.scenarios[name];
  if (!def) {
    throw new Error(`unknown scenario ${name}; scenarios.json has ${Object.keys(file.scenarios).join(', ')}`);
  }
  if (def.script !== script) {
    throw new Error(`scenario ${name} is run by ${def.script}, not ${script}`);
  }
  return def;
}

/**
 * How many users setup creates: USERS from the environment, else the scenario's.
 * @param {ScenarioDef} def
 */
export function userCount(def) {
  const n = Number(__ENV.USERS || def.users);
  if (!Number.isInteger(n) || n < 0 || n > 9999) {
    throw new Error(`USERS=${__ENV.USERS}: want 0..9999 (phone numbers give each run 10,000)`);
  }
  return n;
}

/**
 * The k6 options for one scenario. RATE, DURATION and VUS in the environment override the
 * scenario's load, for a short run against any region; the thresholds stay as defined.
 * @param {string} name
 * @param {ScenarioDef} def
 * @param {string} exec the exported function each iteration calls
 * @returns {import('k6/options').Options}
 */
export function optionsFor(name, def, exec) {
  const load = Object.assign({}, def.load);
  if (__ENV.RATE && load.executor === 'constant-arrival-rate') load.rate = Number(__ENV.RATE);
  if (__ENV.DURATION && load.duration) load.duration = __ENV.DURATION;
  if (__ENV.VUS && load.executor === 'constant-vus') load.vus = Number(__ENV.VUS);
  const scenario = Object.assign(load, {
    exec,
    tags: Object.assign({}, def.tags),
    gracefulStop: '10s',
  });
  return {
    scenarios: { [name]: /** @type {any} */ (scenario) },
    thresholds: def.thresholds,
    // Sign-ups hash PINs: creating hundreds of users takes longer than k6's default 60 s.
    setupTimeout: __ENV.SETUP_TIMEOUT || '10m',
    teardownTimeout: '5m',
    summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
  };
}

/**
 * A run id, chosen once in setup and handed to every VU through setup's data: RUN_ID from
 * the environment, else three random digits. Phones and references are built from it, so
 * that runs against one database do not collide.
 */
export function newRunId() {
  const fromEnv = __ENV.RUN_ID;
  const id = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : Math.floor(Math.random() * 1000);
  if (!Number.isInteger(id) || id < 0 || id > 999) {
    throw new Error(`RUN_ID=${fromEnv}: want an integer 0..999`);
  }
  return id;
}

/**
 * A UAE mobile number (+971 50 xxx xxxx) for the n-th user that setup creates in a run.
 * @param {number} runId 0..999
 * @param {number} n 0..9999
 */
export function fixturePhone(runId, n) {
  return `+97150${pad(runId, 3)}${pad(n, 4)}`;
}

/**
 * A UAE mobile number (+971 56 xxx xxxx) for the n-th sign-up journey of a run; another
 * operator prefix, so journeys never collide with the users setup makes.
 * @param {number} runId
 * @param {number} n
 */
export function journeyPhone(runId, n) {
  return `+97156${pad(runId, 3)}${pad(n % 10000, 4)}`;
}

/**
 * @param {number} n
 * @param {number} width
 */
function pad(n, width) {
  return String(n).padStart(width, '0');
}
