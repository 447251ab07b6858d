import { fail } from 'k6';
export function setup() {
  fail('no users could be created');
}
export default function () {}
