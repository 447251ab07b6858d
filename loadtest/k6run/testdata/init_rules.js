import { Counter } from 'k6/metrics';
// The default function breaks two init-only rules; each must throw.
export default function () {
  let errs = [];
  try { open('./data.json'); } catch (e) { errs.push(String(e)); }
  try { new Counter('late'); } catch (e) { errs.push(String(e)); }
  if (errs.length !== 2) throw new Error('init-only rules not enforced: ' + errs.join('; '));
}
