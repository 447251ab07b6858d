// @ts-check
// The 7awel API as the load scripts use it (shared/spec/api.md): sign-up through OTP in
// development mode, login, operator cash-in, transfers, balances and history. Requests are
// built as http.batch entries so that setup can send many at once, and tagged with a
// `name` (the route, not the URL) and an `op` so thresholds and dashboards can split them.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import { BASE_URL, OPS_KEY, PIN } from './config.js';

/** Retries the server made inside its database transaction (response header X-Tx-Retries). */
export const txRetries = new Counter('wallet_tx_retries');
/** Answers that were idempotent replays (response header Idempotent-Replayed: true). */
export const replays = new Counter('wallet_replays');
/** Latency of POST /transactions/send, first sends only. */
export const transferDuration = new Trend('wallet_transfer_duration', true);
/** Transfers the server committed (201). */
export const transfersCommitted = new Counter('wallet_transfers');
/** The whole sign-up journey, OTP to first profile read. */
export const signupDuration = new Trend('wallet_signup_duration', true);

/**
 * @typedef {{method: string, url: string, body: string | null, params: import('k6/http').Params}} Req
 * @typedef {{id: string, phone: string, token: string}} User
 */

/**
 * @param {string} method
 * @param {string} path
 * @param {object | null} body sent as JSON
 * @param {{token?: string, name: string, op: string, headers?: Record<string, string>}} o
 * @returns {Req}
 */
export function req(method, path, body, o) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' };
  if (body !== null) headers['Content-Type'] = 'application/json';
  if (o.token) headers.Authorization = `Bearer ${o.token}`;
  Object.assign(headers, o.headers || {});
  return {
    method,
    url: BASE_URL + path,
    body: body === null ? null : JSON.stringify(body),
    params: { headers, tags: { name: o.name, op: o.op } },
  };
}

/** @param {Req} r */
export function send(r) {
  return http.request(r.method, r.url, r.body, r.params);
}

/**
 * The JSON body, or null when there is none or it is not JSON: never throws, so that a
 * broken answer fails a check instead of ending the iteration.
 * @param {import('k6/http').RefinedResponse<any>} res
 * @returns {any}
 */
export function body(res) {
  try {
    return res.json();
  } catch (e) {
    return null;
  }
}

/**
 * A short description of an unexpected answer, for failure messages.
 * @param {import('k6/http').RefinedResponse<any>} res
 */
export function describe(res) {
  const b = body(res);
  const code = b && b.code ? ` ${b.code}` : '';
  return `${res.request.method} ${res.url} → ${res.status}${code}${res.error ? ` (${res.error})` : ''}`;
}

// --- auth ---------------------------------------------------------------------------------

/**
 * @param {string} phone
 * @param {'register' | 'login' | 'reset_pin'} purpose
 */
export function otpSend(phone, purpose) {
  return req('POST', '/auth/otp/send', { phone, purpose }, { name: 'POST /auth/otp/send', op: purpose });
}

/**
 * @param {string} phone
 * @param {string} purpose
 * @param {string} code
 */
export function otpVerify(phone, purpose, code) {
  return req('POST', '/auth/otp/verify', { phone, purpose, code }, { name: 'POST /auth/otp/verify', op: purpose });
}

/**
 * @param {string} verificationToken
 * @param {string} firstName
 * @param {string} lastName
 * @param {string} deviceId
 */
export function signUpReq(verificationToken, firstName, lastName, deviceId) {
  return req('POST', '/user', {
    verification_token: verificationToken, first_name: firstName, last_name: lastName, pin: PIN, device_id: deviceId,
  }, { name: 'POST /user', op: 'signup' });
}

/**
 * @param {string} phone
 * @param {string} verificationToken
 * @param {string} deviceId
 */
export function loginReq(phone, verificationToken, deviceId) {
  return req('POST', '/auth/login', { phone, pin: PIN, device_id: deviceId, verification_token: verificationToken },
    { name: 'POST /auth/login', op: 'login' });
}

/**
 * The OTP dance: send a code for the purpose, read it from dev_code (development mode
 * only), verify it. Returns the verification token, or null after a failed check.
 * @param {string} phone
 * @param {'register' | 'login'} purpose
 */
export function verifyPhone(phone, purpose) {
  const sent = send(otpSend(phone, purpose));
  const code = body(sent) && body(sent).dev_code;
  if (!check(sent, {
    'otp sent (202)': (r) => r.status === 202,
    'otp has dev_code (server in development mode)': () => typeof code === 'string' && code !== '',
  })) {
    return null;
  }
  const verified = send(otpVerify(phone, purpose, code));
  const token = body(verified) && body(verified).verification_token;
  if (!check(verified, {
    'otp verified (200)': (r) => r.status === 200,
    'verification_token given': () => typeof token === 'string' && token !== '',
  })) {
    return null;
  }
  return token;
}

/**
 * Signs a new user up: OTP for register, then POST /user. Returns the user, or null after a
 * failed check.
 * @param {string} phone
 * @param {string} firstName
 * @param {string} lastName
 * @param {string} deviceId
 * @returns {User | null}
 */
export function signUp(phone, firstName, lastName, deviceId) {
  const vt = verifyPhone(phone, 'register');
  if (vt === null) return null;
  const res = send(signUpReq(vt, firstName, lastName, deviceId));
  return userFrom(res, 'signed up (201)', 201, phone);
}

/**
 * Logs an existing user in: OTP for login, then POST /auth/login.
 * @param {string} phone
 * @param {string} deviceId
 * @returns {User | null}
 */
export function login(phone, deviceId) {
  const vt = verifyPhone(phone, 'login');
  if (vt === null) return null;
  const res = send(loginReq(phone, vt, deviceId));
  return userFrom(res, 'logged in (200)', 200, phone);
}

/**
 * @param {import('k6/http').RefinedResponse<any>} res
 * @param {string} name
 * @param {number} status
 * @param {string} phone
 * @returns {User | null}
 */
export function userFrom(res, name, status, phone) {
  const b = body(res);
  const ok = check(res, {
    [name]: (r) => r.status === status,
    'tokens.access_token given': () => !!(b && b.tokens && b.tokens.access_token),
    'user.id given': () => !!(b && b.user && b.user.id),
  });
  return ok ? { id: b.user.id, phone, token: b.tokens.access_token } : null;
}

// --- operators ----------------------------------------------------------------------------

/**
 * POST /ops/cash-in, the operator's way to put money in a wallet (idempotent by reference).
 * @param {string} userId
 * @param {string} amount
 * @param {string} asset
 * @param {string} reference
 */
export function cashInReq(userId, amount, asset, reference) {
  return req('POST', '/ops/cash-in', { user_id: userId, amount, asset, reference },
    { name: 'POST /ops/cash-in', op: 'cash_in', headers: { 'X-Ops-Key': OPS_KEY } });
}

// --- wallet and transactions --------------------------------------------------------------

/** @param {string} token */
export function balancesReq(token) {
  return req('GET', '/wallet/balances', null, { token, name: 'GET /wallet/balances', op: 'balance' });
}

/**
 * The caller's balances by asset (the `total` of each), or null after a failed check.
 * @param {string} token
 * @returns {Record<string, string> | null}
 */
export function balances(token) {
  return balancesFrom(send(balancesReq(token)));
}

/**
 * @param {import('k6/http').RefinedResponse<any>} res
 * @returns {Record<string, string> | null}
 */
export function balancesFrom(res) {
  const b = body(res);
  if (!check(res, {
    'balances read (200)': (r) => r.status === 200,
    'balances listed': () => !!(b && Array.isArray(b.balances)),
  })) {
    return null;
  }
  /** @type {Record<string, string>} */
  const out = {};
  for (const item of b.balances) out[item.asset] = item.total;
  return out;
}

/**
 * GET /transactions: the newest page of the caller's history.
 * @param {string} token
 * @param {number} limit
 */
export function history(token, limit) {
  const res = send(req('GET', `/transactions?limit=${limit}`, null, { token, name: 'GET /transactions', op: 'history' }));
  const b = body(res);
  return check(res, {
    'history read (200)': (r) => r.status === 200,
    'history has items': () => !!(b && Array.isArray(b.items) && b.items.length <= limit),
  });
}

/**
 * A reference unique in the test, from the execution context: the run, the scenario, its
 * iteration and the VU. A retry of the same iteration reuses it, which is what makes the
 * server answer with the stored transaction instead of paying twice.
 * @param {number} runId
 */
export function transferReference(runId) {
  return `k6-${runId}-${exec.scenario.name}-${exec.scenario.iterationInTest}-${exec.vu.idInTest}`;
}

/**
 * The transaction in a money answer, whether it is the body or under `transaction`.
 * @param {any} b
 */
function txOf(b) {
  return b && b.transaction ? b.transaction : b;
}

/**
 * Counts what the server says about its own work on a money call.
 * @param {import('k6/http').RefinedResponse<any>} res
 */
function recordServerCounts(res) {
  const retries = Number(res.headers['X-Tx-Retries'] || 0);
  if (retries > 0) txRetries.add(retries);
  if (res.headers['Idempotent-Replayed'] === 'true') replays.add(1);
}

/**
 * Pays `amount` of `asset` from payer to recipient; with `replay`, sends the very same
 * request again and checks that the repeat is answered as a replay of the same
 * transaction. Returns whether the transfer was created.
 * @param {User} payer
 * @param {User} recipient
 * @param {{amount: string, asset: string, reference: string, byPhone: boolean, replay: boolean}} t
 */
export function transfer(payer, recipient, t) {
  /** @type {Record<string, string>} */
  const payload = { amount: t.amount, asset: t.asset, reference: t.reference, pin: PIN };
  if (t.byPhone) payload.recipient_phone = recipient.phone;
  else payload.recipient_id = recipient.id;
  const r = req('POST', '/transactions/send', payload,
    { token: payer.token, name: 'POST /transactions/send', op: 'transfer' });

  const res = send(r);
  recordServerCounts(res);
  transferDuration.add(res.timings.duration);
  const created = txOf(body(res));
  const ok = check(res, {
    'transfer created (201)': (x) => x.status === 201,
    'transfer has id and reference': () => !!(created && created.id && created.reference === t.reference),
  });
  if (!ok) {
    console.warn(`transfer failed: ${describe(res)}`);
    return false;
  }
  transfersCommitted.add(1);
  if (t.replay) {
    const again = send(r);
    recordServerCounts(again);
    const replayed = txOf(body(again));
    check(again, {
      'replay answered 200': (x) => x.status === 200,
      'replay marked Idempotent-Replayed': (x) => x.headers['Idempotent-Replayed'] === 'true',
      'replay is the same transaction': () => !!(replayed && replayed.id === created.id),
    });
  }
  return true;
}

/**
 * GET /user: the profile of the token's owner.
 * @param {string} token
 */
export function me(token) {
  const res = send(req('GET', '/user', null, { token, name: 'GET /user', op: 'profile' }));
  return { res, user: body(res) };
}
