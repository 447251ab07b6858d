import exec from 'k6/execution';
export default function () {
  if (exec.scenario.iterationInTest === 1) {
    throw new Error('boom in iteration 1');
  }
}
