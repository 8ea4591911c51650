// Repo paths for tests, found from the compiled file's location (dist/test/lib → repo root).
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
