// The log half of a session event: one structured line, `session.<event>` (session.open,
// session.close, session.replaced, session.expired, session.revoked), with the event's fields.
import { log } from '../log.js';
import type { SessionEvent } from './types.js';

export function logSessionEvent(e: SessionEvent): void {
  const { event, session_id, ...fields } = e;
  log('info', `session.${event}`, { id: session_id, ...fields });
}
