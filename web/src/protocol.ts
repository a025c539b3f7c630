// The terminal websocket's frames (SPEC §3.4).

import type { TerminalState } from "./api";

export const OUTPUT_FRAME = 0x01;
const HEADER = 9;

export interface OutputChunk {
  offset: number;
  data: Uint8Array;
}

/** A binary output frame: 0x01, the big-endian offset of the first byte (8 bytes), the bytes. */
export function decodeOutput(buffer: ArrayBuffer): OutputChunk | null {
  if (buffer.byteLength < HEADER) return null;
  const view = new DataView(buffer);
  if (view.getUint8(0) !== OUTPUT_FRAME) return null;
  // Offsets stay far below 2^53, so a Number holds them exactly.
  const offset = Number(view.getBigUint64(1, false));
  return { offset, data: new Uint8Array(buffer, HEADER) };
}

export type ServerFrame =
  | {
      type: "hello";
      session: TerminalState;
      replay_from: number;
      replay_bytes: number;
      missed_bytes: number;
    }
  | { type: "screen"; offset: number; rows: number; cols: number; alternate: boolean; data: string }
  | { type: "replay_done"; offset: number }
  | { type: "missed"; missed_bytes: number; offset: number }
  | { type: "resize"; rows: number; cols: number }
  | { type: "viewers"; count: number }
  | { type: "exit"; exit_code: number | null; reason?: string }
  | { type: "pong" }
  | { type: "error"; message: string };

export function decodeText(text: string): ServerFrame | null {
  try {
    const frame: unknown = JSON.parse(text);
    if (frame && typeof frame === "object" && typeof (frame as { type?: unknown }).type === "string") {
      return frame as ServerFrame;
    }
  } catch {
    // ignore: not ours
  }
  return null;
}

/** Close codes the server uses (SPEC §3.4). */
export const CLOSE = {
  badRequest: 4400,
  unauthorized: 4401,
  originRefused: 4403,
  notFound: 4404,
  limit: 4429,
} as const;

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} byte${n === 1 ? "" : "s"}`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
