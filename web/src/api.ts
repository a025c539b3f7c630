// REST and websocket addresses of the Hearth API, with the token attached.

import { forgetToken, storedToken } from "./auth";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the server says the token is wrong (401); the app asks for a new one. */
let onUnauthorized: () => void = () => {};

export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

export function unauthorized(): void {
  forgetToken();
  onUnauthorized();
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const token = storedToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function detail(response: Response): Promise<string> {
  try {
    const body: unknown = await response.json();
    if (body && typeof body === "object" && "detail" in body) {
      const d = (body as { detail: unknown }).detail;
      return typeof d === "string" ? d : JSON.stringify(d);
    }
  } catch {
    // not JSON: fall through
  }
  return `${response.status} ${response.statusText}`;
}

/** fetch with the token; a non-2xx answer raises ApiError with the server's detail. */
export async function request(
  method: string,
  path: string,
  body?: unknown,
  init: RequestInit = {},
): Promise<Response> {
  const response = await fetch(path, {
    ...init,
    method,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    unauthorized();
    throw new ApiError(401, await detail(response));
  }
  if (!response.ok) throw new ApiError(response.status, await detail(response));
  return response;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await (await request("GET", path)).json()) as T;
}

export async function sendJson<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await request(method, path, body);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

/** A ws:// or wss:// address on this server, with the token as ?token=. */
export function wsUrl(path: string, params: Record<string, string | number | undefined>): string {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const token = storedToken();
  if (token) url.searchParams.set("token", token);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined) url.searchParams.set(key, String(value));
  }
  return url.toString();
}

// --- the shapes the server answers: generated from hearth.protocol (web/src/wire.ts) ---------

export type { KernelState as KernelSession, PoolState, TerminalState } from "./wire";

import type { TerminalState } from "./wire";

/** A terminal session as the REST API answers it (create, get, list). On many nodes (SPEC §12)
 * the cluster's middleware (hearth.cluster.middleware, not hearth.protocol, so not in wire.ts)
 * adds the `node` holding it, `node_reachable: false` to a listed session whose node can't be
 * reached now, and `closed_reason: "node_lost"` once that node has been gone for good. A single
 * node adds none of them. (The websocket's hello carries the plain TerminalState.) */
export type TerminalSession = Omit<TerminalState, "closed_reason"> & {
  closed_reason?: TerminalState["closed_reason"];
  node?: string;
  node_reachable?: boolean;
};
