// Exercises every part of the k6 life cycle and module surface that k6run provides.
import http from 'k6/http';
import { check, group, sleep, fail } from 'k6';
import { Counter, Trend, Rate, Gauge } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';
import { postJSON } from './lib/helper.js';

const BASE = __ENV.BASE_URL;
const people = new SharedArray('people', () => JSON.parse(open('./data.json')));
const retries = new Counter('test_retries');
const latency = new Trend('test_latency', true);
const okRate = new Rate('test_ok');
const last = new Gauge('test_last');

export const options = {
  scenarios: {
    writes: {
      executor: 'constant-arrival-rate', rate: 10, timeUnit: '1s', duration: '1s',
      preAllocatedVUs: 2, exec: 'write', tags: { kind: 'write' },
    },
    reads: {
      executor: 'ramping-arrival-rate', startRate: 1, preAllocatedVUs: 2,
      stages: [{ target: 5, duration: '1s' }], exec: 'read',
    },
  },
  thresholds: {
    http_req_duration: ['p(99)<5000'],
    'test_latency{kind:write}': [{ threshold: 'max<5000', abortOnFail: true }],
    test_retries: ['count>0'],
    test_ok: ['rate>0.9'],
    checks: ['rate==1'],
  },
  summaryTrendStats: ['avg', 'p(99)'],
};

export function setup() {
  const res = http.get(`${BASE}/status/200`);
  if (res.status !== 200) fail('server not up');
  return { token: 'tok-' + people.length, names: people.map((p) => p.name) };
}

export function write(data) {
  group('pay', () => {
    const ref = `${exec.scenario.name}-${exec.scenario.iterationInTest}-${exec.vu.idInTest}`;
    const res = postJSON(`${BASE}/echo`, { ref, token: data.token, iter: __ITER, vu: __VU }, { name: 'POST /echo' });
    const body = res.json();
    check(res, {
      'status is 200': (r) => r.status === 200,
      'token passed': () => body.body.token === 'tok-2',
      'header sent': () => body.headers['X-Test'] === 'yes',
    });
    check(exec.scenario.iterationInTest, { 'iteration is even': (i) => i % 2 === 0 });
    retries.add(Number(res.headers['X-Tx-Retries']));
    latency.add(res.timings.duration);
    okRate.add(res.status === 200);
    last.add(exec.scenario.iterationInTest);
  });
  sleep(1);
}

export function read() {
  const responses = http.batch([
    ['GET', `${BASE}/status/404`, null, { tags: { name: 'missing' } }],
    { method: 'GET', url: `${BASE}/status/409`, params: { responseCallback: http.expectedStatuses(409) } },
  ]);
  check(responses, {
    'batch 404': (rs) => rs[0].status === 404,
    'batch 409': (rs) => rs[1].status === 409,
  });
}

export function teardown(data) {
  http.post(`${BASE}/teardown`, JSON.stringify(data), { headers: { 'Content-Type': 'application/json' } });
}

export function handleSummary(data) {
  return {
    'summary.json': JSON.stringify(data),
    stdout: `checks: ${data.metrics.checks.values.passes} passed\n`,
  };
}
