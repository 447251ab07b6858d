import { textSummary } from 'https://jslib.k6.io/k6-summary/0.0.2/index.js';
export default function () {}
export function handleSummary(data) { return { stdout: textSummary(data) }; }
