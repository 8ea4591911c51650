// Every row and column of the `make bench` table, in order: run.ts fills them, the smoke test checks
// that each one is present in the printed table and in the JSON (test/integration/bench-smoke.test.ts).
export const ROW_IDS = [
  'setup',
  'fill',
  'getpwnam_first', 'getpwnam_middle', 'getpwnam_last', 'getpwnam_miss',
  'getpwuid_first', 'getpwuid_middle', 'getpwuid_last', 'getpwuid_miss',
  'pin_same', 'pin_cross',
  'tput_1', 'tput_2', 'tput_8',
  'getent_one', 'getent_floor',
  'enum',
  'cold_0ms', 'cold_over_0ms', 'cold_1ms', 'cold_over_1ms',
  'storm_base', 'storm', 'storm_logins',
  'mem_idle', 'mem_n', 'cache_n', 'mem_full', 'cache_full', 'mem_growth',
] as const;
export type RowId = typeof ROW_IDS[number];

/** The backends, one column each, measured in the same run with the same users. */
export const BACKENDS = ['map', 'socket', 'sss_mc', 'sss', 'nscd', 'files'] as const;
export type Backend = typeof BACKENDS[number];
export const BACKEND_LABEL: Record<Backend, string> = {
  map: 'latchkey map',
  socket: 'latchkey socket',
  sss_mc: 'SSSD memcache',
  sss: 'SSSD no memcache',
  nscd: 'nscd',
  files: 'files',
};
/** The ratio columns: how many times faster (or more) latchkey's map is than each of these. */
export const VERSUS = ['sss_mc', 'nscd', 'files'] as const;
export type Versus = typeof VERSUS[number];

/** What a column of a backend that is not installed says (--quick never installs anything). */
export const NOT_INSTALLED = 'skipped: not installed (make bench installs them)';
