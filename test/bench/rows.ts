// Every row of the `make bench` table, in order: run.ts fills them, the smoke test checks that
// each one is present in the printed table and in the JSON (test/integration/bench-smoke.test.ts).
export const ROW_IDS = [
  'fill',
  'getpwnam_first', 'getpwnam_middle', 'getpwnam_last', 'getpwnam_miss',
  'getpwuid_first', 'getpwuid_middle', 'getpwuid_last', 'getpwuid_miss',
  'pin_same', 'pin_cross',
  'tput_1', 'tput_2', 'tput_8',
  'getent_one', 'getent_floor',
  'enum',
  'cold_0ms', 'cold_over_0ms', 'cold_1ms', 'cold_over_1ms',
  'storm_base', 'storm', 'storm_logins',
  'mem_idle', 'mem_n', 'cache_n', 'mem_full', 'cache_full',
  'sss', 'nscd',
] as const;
export type RowId = typeof ROW_IDS[number];
