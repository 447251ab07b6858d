// Runs the k6 scripts' exact decimal helpers (loadtest/k6/lib/money.js) through k6run.
import { check } from 'k6';
import { sameAmount, sumDecimals } from '../../k6/lib/money.js';

export default function () {
  check(null, {
    'no amounts sum to zero': () => sumDecimals([]) === '0.00000000',
    '0.1 + 0.2 is exact': () => sumDecimals(['0.1', '0.2']) === '0.30000000',
    'carries across the point': () => sumDecimals(['999.99999999', '0.00000001']) === '1000.00000000',
    'beyond 2^53 units': () => sumDecimals(['99999999999.99999999', '99999999999.99999999']) === '199999999999.99999998',
    'places do not matter': () => sameAmount('1.5', '1.50000000') && !sameAmount('1.5', '1.05'),
  });
  let refused = false;
  try { sumDecimals(['-1']); } catch (e) { refused = true; }
  check(refused, { 'negative amounts refused': (r) => r });
}
