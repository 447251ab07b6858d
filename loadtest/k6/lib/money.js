// @ts-check
// Exact sums of decimal amounts ("1000.00", "12.50000000"). Balances are NUMERIC(20,8) on
// the server; adding them as floats could hide or invent a one-cent difference, which is
// exactly what the conservation check must not do.

const SCALE = 8;

/**
 * "12.5" → "1250000000": the amount in units of 10^-8, as a string of digits.
 * @param {string} amount a non-negative decimal string
 */
function toUnits(amount) {
  const m = /^(\d+)(?:\.(\d{1,8}))?$/.exec(String(amount));
  if (!m) {
    throw new Error(`not a non-negative decimal with at most ${SCALE} places: ${amount}`);
  }
  return strip(m[1] + (m[2] || '').padEnd(SCALE, '0'));
}

/** @param {string} digits */
function strip(digits) {
  return digits.replace(/^0+(?=\d)/, '');
}

/**
 * @param {string} a digits
 * @param {string} b digits
 */
function addDigits(a, b) {
  let out = '';
  let carry = 0;
  for (let i = a.length - 1, j = b.length - 1; i >= 0 || j >= 0 || carry > 0; i--, j--) {
    const d = (i >= 0 ? Number(a[i]) : 0) + (j >= 0 ? Number(b[j]) : 0) + carry;
    out = String(d % 10) + out;
    carry = d >= 10 ? 1 : 0;
  }
  return strip(out || '0');
}

/**
 * The exact sum of decimal amounts, with eight places ("0.00000000" for none).
 * @param {string[]} amounts
 */
export function sumDecimals(amounts) {
  let total = '0';
  for (const a of amounts) {
    total = addDigits(total, toUnits(a));
  }
  const padded = total.padStart(SCALE + 1, '0');
  return `${padded.slice(0, -SCALE)}.${padded.slice(-SCALE)}`;
}

/**
 * Whether two decimal strings are the same amount ("1.5" and "1.50").
 * @param {string} a
 * @param {string} b
 */
export function sameAmount(a, b) {
  return toUnits(a) === toUnits(b);
}
