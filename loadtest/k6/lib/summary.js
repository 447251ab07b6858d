// @ts-check
// handleSummary: the end-of-test summary as JSON (for machines and the RESULTS file) and as
// text. k6's own textSummary is a remote jslib import, which this project does not load.

/**
 * Makes a handleSummary for a scenario: writes summary-<scenario>.json and .txt (into
 * SUMMARY_DIR when set) and prints the text.
 * @param {string} scenario
 * @returns {(data: any) => Record<string, string>}
 */
export function summaryHandler(scenario) {
  return (data) => {
    const dir = __ENV.SUMMARY_DIR ? `${__ENV.SUMMARY_DIR.replace(/\/+$/, '')}/` : '';
    const text = textSummary(scenario, data);
    return {
      stdout: text,
      [`${dir}summary-${scenario}.json`]: JSON.stringify(data, null, 2),
      [`${dir}summary-${scenario}.txt`]: text,
    };
  };
}

/**
 * @param {number} v
 * @param {boolean} isTime values in milliseconds
 */
function fmt(v, isTime) {
  if (typeof v !== 'number') return String(v);
  if (isTime) return v >= 1000 ? `${(v / 1000).toFixed(2)}s` : `${v.toFixed(2)}ms`;
  return Number.isInteger(v) ? String(v) : v.toFixed(4);
}

/**
 * @param {any} group
 * @param {string[]} lines
 */
function checkLines(group, lines) {
  for (const c of group.checks || []) {
    const total = c.passes + c.fails;
    const where = String(c.path || c.name).replace(/^::/, '').split('::').join(' > ');
    lines.push(`  ${c.fails === 0 ? 'ok  ' : 'FAIL'} ${where}: ${c.passes}/${total}`);
  }
  for (const g of group.groups || []) checkLines(g, lines);
}

/**
 * @param {string} scenario
 * @param {any} data k6's summary data
 */
export function textSummary(scenario, data) {
  const lines = [`7awel load test: scenario ${scenario}, ${fmt(data.state.testRunDurationMs, true)}`, '', 'checks:'];
  checkLines(data.root_group, lines);
  lines.push('', 'thresholds:');
  const names = Object.keys(data.metrics).sort();
  let failed = 0;
  for (const name of names) {
    const th = data.metrics[name].thresholds || {};
    for (const expr of Object.keys(th)) {
      if (!th[expr].ok) failed++;
      lines.push(`  ${th[expr].ok ? 'ok  ' : 'FAIL'} ${name} ${expr}`);
    }
  }
  lines.push('', 'metrics:');
  for (const name of names) {
    const m = data.metrics[name];
    const isTime = m.contains === 'time';
    const values = Object.keys(m.values).map((k) => `${k}=${fmt(m.values[k], isTime && k !== 'count')}`);
    lines.push(`  ${name.padEnd(48, '.')} ${values.join(' ')}`);
  }
  lines.push('', failed === 0 ? 'all thresholds passed' : `${failed} threshold(s) FAILED`, '');
  return lines.join('\n');
}
