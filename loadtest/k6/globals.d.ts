// k6 gives scripts a console (log, info, warn, error, debug) that @types/k6 does not declare;
// declaring it here keeps the "dom" library, which k6 does not have, out of the check.
declare const console: {
  log(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
  debug(...args: unknown[]): void;
};
