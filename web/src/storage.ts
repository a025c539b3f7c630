// What the workspace remembers across page loads (SPEC §5): the open terminal sessions, in tab
// order, each with the output offset written so far, and the active one. A session on a saved
// connection also keeps the connection's id, so that its tab says where it runs before the server
// answers, and a session that is gone is replaced on the same machine. On many nodes (SPEC §12)
// a session also keeps the name of the node holding it, for its tab to say so at once.

export interface StoredSession {
  id: string;
  name: string;
  offset: number;
  connection?: string;
  node?: string;
}

const SESSIONS_KEY = "terminal_sessions";
const ACTIVE_KEY = "terminal_active_session";
const ID = /^[A-Za-z0-9_-]{1,64}$/; // a session's or a connection's
const NODE = /^[A-Za-z0-9_.-]{1,64}$/; // a node's name (the node_name setting)

export function loadSessions(): StoredSession[] {
  try {
    const raw: unknown = JSON.parse(localStorage.getItem(SESSIONS_KEY) ?? "[]");
    if (!Array.isArray(raw)) return [];
    const seen = new Set<string>();
    const sessions: StoredSession[] = [];
    for (const item of raw as unknown[]) {
      if (!item || typeof item !== "object") continue;
      const { id, name, offset, connection, node } = item as Record<string, unknown>;
      if (typeof id !== "string" || !ID.test(id) || seen.has(id)) continue;
      seen.add(id);
      sessions.push({
        id,
        name: typeof name === "string" && name ? name : id,
        offset: typeof offset === "number" && offset >= 0 ? Math.floor(offset) : 0,
        ...(typeof connection === "string" && ID.test(connection) ? { connection } : {}),
        ...(typeof node === "string" && NODE.test(node) ? { node } : {}),
      });
    }
    return sessions;
  } catch {
    return [];
  }
}

export function saveSessions(sessions: StoredSession[]): void {
  localStorage.setItem(SESSIONS_KEY, JSON.stringify(sessions));
}

export function loadActive(): string | null {
  return localStorage.getItem(ACTIVE_KEY);
}

export function saveActive(id: string | null): void {
  if (id === null) localStorage.removeItem(ACTIVE_KEY);
  else localStorage.setItem(ACTIVE_KEY, id);
}
