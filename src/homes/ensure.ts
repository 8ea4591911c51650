// src/sessions/registry.ts imports ensureHome from here; the implementation is in home.ts.
export { ensureHome, homePath, type HomeUser, type HomeResult } from './home.js';
