// One terminal tab: an xterm.js screen bound to one server-side session through a websocket
// that comes back by itself.
//
// Offsets are the contract with the server (SPEC §3.3): `received` is the offset of the next
// byte the stream owes us (what we resume from), `written` the offset of the next byte to hand
// to xterm. Everything between the two waits in `queue`, written in small chunks through
// xterm's write callback so a large replay never freezes the page.
//
// A page load starts from the session's screen (SPEC §9: `restore=screen`): the server's model
// of it redraws full-screen programs, modes and scrollback, and live output follows from the
// screen's offset. A tab that stays open resumes with `since` (exact bytes) instead.

import { FitAddon } from "@xterm/addon-fit";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { Terminal } from "@xterm/xterm";

import { ApiError, getJson, sendJson, unauthorized, wsUrl, type TerminalSession, type TerminalState } from "./api";
import { CLOSE, decodeOutput, decodeText, formatBytes, type ServerFrame } from "./protocol";
import { el } from "./dom";
import { limitRepeats } from "./repeats";

export type LinkState = "connecting" | "connected" | "reconnecting" | "disconnected" | "exited";
export type NoticeKind = "info" | "warn" | "error";

export interface TabHost {
  /** The tab's id, name, state or offset changed: redraw its tab, remember it. */
  changed(tab: TerminalTab): void;
  /** The tab's session was replaced by a new one (the old id no longer exists). */
  replaced(tab: TerminalTab, oldId: string): void;
  /** A key the workspace handles (shortcuts); true when it was one. */
  shortcut(event: KeyboardEvent): boolean;
  /** The connection failed and is being retried: the node holding the session (SPEC §12) may
   * be down, which the sessions' list tells. */
  linkLost(tab: TerminalTab): void;
}

const CHUNK = 64 * 1024; // bytes per xterm write while draining the queue
const MAX_BACKOFF_MS = 10_000;
const PING_EVERY_MS = 15_000;
const SILENCE_LIMIT_MS = 45_000; // no frame at all for this long: the connection is dead

const THEME = {
  background: "#0d1117",
  foreground: "#d6deeb",
  cursor: "#f5a524",
  cursorAccent: "#0d1117",
  selectionBackground: "#2b3a55",
  black: "#1b2130",
  red: "#f07178",
  green: "#a6da95",
  yellow: "#eed49f",
  blue: "#82aaff",
  magenta: "#c792ea",
  cyan: "#89ddff",
  white: "#d6deeb",
  brightBlack: "#5c6782",
  brightRed: "#ff8b92",
  brightGreen: "#c3e88d",
  brightYellow: "#ffcb6b",
  brightBlue: "#9cc4ff",
  brightMagenta: "#dcb0ff",
  brightCyan: "#a3f7ff",
  brightWhite: "#ffffff",
};

interface Pending {
  offset: number;
  data: Uint8Array;
}

export class TerminalTab {
  id: string;
  name: string;
  state: LinkState = "connecting";
  exitCode: number | null = null;
  exitReason: string | null = null;
  /** The saved connection the session runs on (SPEC §11), or null on this server's machine. */
  connectionId: string | null;
  /** The node holding the session (SPEC §12), or null on a single node. */
  node: string | null;
  /** False while the sessions' list says its node can't be reached (a hello says it can). */
  nodeReachable = true;
  viewers = 0;
  /** Offset of the next byte to write to the screen (what `terminal_sessions` remembers). */
  written = 0;
  /** Offset of the next byte expected from the stream; null until a stream was attached. */
  received: number | null = null;
  /** The offset of the screen this page load started from (SPEC §9), if it did. */
  screenAt: number | null = null;
  /** Queries in replayed output left unanswered (for tests and curiosity). */
  suppressed = 0;

  readonly pane: HTMLElement;
  readonly term: Terminal;
  private readonly fit = new FitAddon();
  private readonly screen: HTMLElement;
  private readonly notices: HTMLElement;
  private readonly progress: HTMLElement;
  private readonly progressBar: HTMLElement;
  private readonly encoder = new TextEncoder();

  private ws: WebSocket | null = null;
  private queue: Pending[] = [];
  private writing = false;
  /** Output before this offset is history being replayed (see `quietReplay`). */
  private replayEnd = 0;
  /** The piece xterm is parsing now is history: queries in it go unanswered. */
  private parsingReplay = false;
  /** The size on screen is another viewer's, until this tab is used again (`ownSize`). */
  private foreignSize = false;
  private applyingForeignSize = false;
  private replayStart = 0;
  /** Where the whole-buffer replay of this page load began (the oldest byte still buffered). */
  private historyStart = 0;
  /** Offset the previous page load had written, for the restore notice; used once. */
  private remembered: number | null;
  private attempts = 0;
  private retryTimer: number | undefined;
  private pingTimer: number | undefined;
  private lastFrameAt = 0;
  /** The terminal has been fitted to its pane once (a hidden tab waits until it is shown). */
  fitted = false;
  private disposed = false;
  private replacing = false;
  private readonly debug: Uint8Array[] | null;

  constructor(
    private readonly host: TabHost,
    id: string,
    name: string,
    remembered: number | null,
    connectionId: string | null = null,
    node: string | null = null,
  ) {
    this.id = id;
    this.name = name;
    this.remembered = remembered;
    this.connectionId = connectionId;
    this.node = node;
    this.debug = localStorage.getItem("hearth_debug") === "1" ? [] : null;

    this.screen = el("div", { class: "screen" });
    this.notices = el("div", { class: "notices", "aria-live": "polite" });
    this.progressBar = el("div", { class: "progress-bar" });
    this.progress = el("div", { class: "progress", hidden: "" }, [
      el("div", { class: "progress-label" }, ["Loading history…"]),
      el("div", { class: "progress-track" }, [this.progressBar]),
    ]);
    this.pane = el("div", { class: "pane", "data-session-id": id }, [
      this.notices,
      this.progress,
      this.screen,
    ]);

    this.term = new Terminal({
      fontFamily: '"DejaVu Sans Mono", "Cascadia Code", Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 14,
      lineHeight: 1.15,
      cursorBlink: true,
      scrollback: 10_000,
      theme: THEME,
      allowProposedApi: true, // the unicode API: character widths as the server's model has them
    });
    this.term.loadAddon(new Unicode11Addon());
    this.term.unicode.activeVersion = "11";
    limitRepeats(this.term);
    this.term.loadAddon(this.fit);
    this.term.loadAddon(new WebLinksAddon());
    this.term.open(this.screen);
    this.term.attachCustomKeyEventHandler((event) => {
      if (event.type === "keydown") this.ownSize(); // typing here: this tab's size wins again
      if (!this.host.shortcut(event)) return true;
      event.preventDefault(); // handled: neither xterm nor the window listener acts on it again
      return false;
    });
    this.term.onData((data) => this.input(this.encoder.encode(data)));
    this.term.onBinary((data) => {
      const bytes = new Uint8Array(data.length);
      for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
      this.input(bytes);
    });
    this.term.onResize(({ rows, cols }) => {
      if (this.applyingForeignSize) return; // the server has it: it told us
      this.foreignSize = false;
      this.sendJson({ type: "resize", rows, cols });
    });
    new ResizeObserver(() => this.refit()).observe(this.screen);
    this.quietReplay();
  }

  /** Queries found in replayed output (cursor position, device attributes, modes, colours…)
   * were answered when the shell asked them, long ago: xterm must not answer them again, or
   * the answers would reach the shell as if typed. Only those are held back; what the user
   * types during a replay goes through. */
  private quietReplay(): void {
    const parser = this.term.parser;
    const unanswered = (): boolean => {
      if (this.parsingReplay) this.suppressed += 1;
      return this.parsingReplay; // true: handled here, so xterm's own answer is skipped
    };
    const queries = [
      { final: "c" }, // DA1
      { prefix: ">", final: "c" }, // DA2
      { final: "n" }, // DSR, cursor position
      { prefix: "?", final: "n" },
      { intermediates: "$", final: "p" }, // DECRQM
      { prefix: "?", intermediates: "$", final: "p" },
    ];
    for (const id of queries) parser.registerCsiHandler(id, unanswered);
    // Window reports; the other window operations are not queries.
    parser.registerCsiHandler({ final: "t" }, (params) =>
      [14, 16, 18].includes(Number(params[0])) ? unanswered() : false,
    );
    parser.registerDcsHandler({ intermediates: "$", final: "q" }, unanswered); // DECRQSS
    // Colour queries ("?" where a colour would be set); a colour set is no query.
    parser.registerOscHandler(4, (data) =>
      data.split(";").every((part, i) => i % 2 === 0 || part === "?") ? unanswered() : false,
    );
    for (const ident of [10, 11, 12]) {
      parser.registerOscHandler(ident, (data) =>
        data.split(";").every((part) => part === "?") ? unanswered() : false,
      );
    }
  }

  /** History is still being written to the screen. */
  get replaying(): boolean {
    return this.written < this.replayEnd;
  }

  /** The session's screen is being drawn (after a page load; see `drawScreen`). */
  drawing = false;

  // --- the screen -------------------------------------------------------------------------

  /** Fit the terminal to its pane (only while visible: a hidden pane measures 0×0). */
  refit(): void {
    if (this.disposed || this.pane.offsetParent === null) return;
    const before = `${this.term.rows}x${this.term.cols}`;
    try {
      this.fit.fit();
    } catch {
      return;
    }
    const first = !this.fitted;
    this.fitted = true;
    // onResize already told the server when the size changed; a first fit with an unchanged
    // size still has to, since another device may have resized the PTY meanwhile.
    if (first && before === `${this.term.rows}x${this.term.cols}`) this.sendSize();
  }

  shown(): void {
    this.foreignSize = false;
    this.refit();
    this.sendSize();
    this.term.focus();
  }

  /** Another viewer resized the PTY: show that size, so what the program draws for it fits,
   * until this tab is used again (`ownSize`): then its own size wins, as the last resize does. */
  private resizedElsewhere(rows: number, cols: number): void {
    if (rows === this.term.rows && cols === this.term.cols) return;
    this.applyingForeignSize = true;
    try {
      this.term.resize(cols, rows);
    } finally {
      this.applyingForeignSize = false;
    }
    this.foreignSize = true;
  }

  /** This tab is in use: if another viewer's size is on screen, take this pane's back. */
  private ownSize(): void {
    if (!this.foreignSize) return;
    this.foreignSize = false;
    this.refit();
  }

  private sendSize(): void {
    if (this.fitted) this.sendJson({ type: "resize", rows: this.term.rows, cols: this.term.cols });
  }

  notice(kind: NoticeKind, text: string): void {
    const close = el("button", { class: "notice-close", title: "Dismiss", "aria-label": "Dismiss" }, ["×"]);
    const item = el("div", { class: "notice", "data-kind": kind, role: kind === "info" ? "status" : "alert" }, [
      el("span", { class: "notice-text" }, [text]),
      close,
    ]);
    close.addEventListener("click", () => item.remove());
    this.notices.append(item);
    if (kind === "info") window.setTimeout(() => item.remove(), 15_000);
  }

  /** The screen's text, oldest scrollback line first (for tests). */
  text(): string {
    const buffer = this.term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buffer.length; i++) {
      const line = buffer.getLine(i);
      if (!line) continue;
      const text = line.translateToString(true);
      if (line.isWrapped && lines.length) lines[lines.length - 1] += text;
      else lines.push(text);
    }
    return lines.join("\n");
  }

  /** What is on screen now, as `GET …/screen` gives it (SPEC §9), for tests. */
  visible(): { lines: string[]; cursor: { row: number; col: number }; alternate: boolean } {
    const buffer = this.term.buffer.active;
    const lines: string[] = [];
    for (let y = 0; y < this.term.rows; y++) {
      lines.push(buffer.getLine(buffer.viewportY + y)?.translateToString(true) ?? "");
    }
    return {
      lines,
      cursor: { row: buffer.cursorY, col: buffer.cursorX },
      alternate: buffer.type === "alternate",
    };
  }

  /** Every byte written to the screen since it was last cleared, when debugging is on. */
  writtenBytes(): Uint8Array | null {
    if (!this.debug) return null;
    const out = new Uint8Array(this.debug.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const chunk of this.debug) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }

  // --- input ------------------------------------------------------------------------------

  private input(bytes: Uint8Array): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  private sendJson(message: object): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  // --- the connection ---------------------------------------------------------------------

  /** Attach (or re-attach) to the session: from `received` if we have a stream, else from its
   * screen (or, from a server without a screen model, the oldest buffered byte) on a blank one. */
  connect(): void {
    if (this.disposed) return;
    window.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.closeSocket();
    if (this.state !== "reconnecting") this.setState("connecting");
    const since = this.received ?? undefined;
    const params: Record<string, string | number | undefined> = { reconnect: "true", since };
    if (since === undefined) params.restore = "screen";
    if (this.fitted) {
      params.rows = this.term.rows;
      params.cols = this.term.cols;
    }
    const ws = new WebSocket(wsUrl(`/api/v1/terminal/ws/${encodeURIComponent(this.id)}`, params));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let exited = false;
    ws.onmessage = (event: MessageEvent<ArrayBuffer | string>) => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      if (typeof event.data === "string") {
        const frame = decodeText(event.data);
        if (frame?.type === "exit") exited = true;
        if (frame) this.frame(frame, since === undefined);
      } else {
        const chunk = decodeOutput(event.data);
        if (chunk) this.output(chunk.offset, chunk.data);
      }
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.stopPings();
      this.closed(event.code, event.reason, exited, since !== undefined);
    };
  }

  private frame(frame: ServerFrame, fresh: boolean): void {
    switch (frame.type) {
      case "hello":
        this.hello(frame.session, frame.replay_from, frame.replay_bytes, frame.missed_bytes, fresh);
        break;
      case "screen":
        if (fresh) this.drawScreen(frame.offset, frame.rows, frame.cols, frame.data);
        break;
      case "replay_done":
        this.replayEnd = Math.max(this.replayEnd, frame.offset);
        break;
      case "missed":
        this.notice("warn", `${formatBytes(frame.missed_bytes)} of output were lost: this page fell too far behind.`);
        this.received = frame.offset;
        break;
      case "viewers":
        this.viewers = frame.count;
        this.host.changed(this);
        break;
      case "exit":
        this.exitCode = frame.exit_code;
        this.exitReason = frame.reason ?? null;
        this.setState("exited");
        break;
      case "error":
        this.notice("error", `Server: ${frame.message}`);
        break;
      case "resize":
        this.resizedElsewhere(frame.rows, frame.cols);
        break;
      case "pong":
        break;
    }
  }

  private hello(
    session: TerminalState,
    replayFrom: number,
    replayBytes: number,
    missedBytes: number,
    fresh: boolean,
  ): void {
    this.attempts = 0;
    this.nodeReachable = true; // its node answered (directly or through the one serving this page)
    this.viewers = session.viewers;
    if (session.name && session.name !== this.name) this.name = session.name;
    this.connectionId = session.connection_id ?? null;
    if (fresh) {
      // A whole-buffer replay rebuilds the screen from scratch.
      this.queue = [];
      this.term.reset();
      if (this.debug) this.debug.length = 0;
      this.written = replayFrom;
      this.received = replayFrom;
      this.historyStart = replayFrom;
    }
    if (missedBytes > 0) {
      this.notice(
        "warn",
        `${formatBytes(missedBytes)} of output were lost while this tab was away: the server no longer held them.`,
      );
      this.received = replayFrom;
    }
    // A resume that drops mid-replay keeps the older, further end: whatever is still queued
    // from the first replay is history too.
    const end = replayFrom + replayBytes;
    this.replayEnd = fresh ? end : Math.max(this.replayEnd, end);
    this.replayStart = this.written;
    this.showProgress(this.replayEnd - this.written);
    this.setState("connected");
    this.startPings();
    // A size fitted while the socket was still opening could not be sent then.
    if (session.rows !== this.term.rows || session.cols !== this.term.cols) this.sendSize();
    this.maybeFinishReplay();
  }

  /** Draw the session's screen on the blank terminal `hello` left; output goes on from
   * `offset`, queued meanwhile (the screen is written first). */
  private drawScreen(offset: number, rows: number, cols: number, data: string): void {
    this.queue = [];
    this.written = this.received = this.replayEnd = this.historyStart = offset;
    this.screenAt = offset;
    // drawn at the size it was taken at; this pane's own size is asked for after
    this.resizedElsewhere(rows, cols);
    this.writing = true;
    this.drawing = true;
    this.parsingReplay = true;
    this.term.write(data, () => {
      if (this.disposed) return;
      this.writing = false;
      this.drawing = false;
      this.parsingReplay = false;
      this.debug?.push(this.encoder.encode(data));
      this.ownSize();
      this.pump();
    });
  }

  private output(offset: number, data: Uint8Array): void {
    if (this.received !== null) {
      const end = offset + data.length;
      if (end <= this.received) return; // already have it
      if (offset < this.received) {
        data = data.subarray(this.received - offset);
        offset = this.received;
      } else if (offset > this.received) {
        this.notice("warn", `${formatBytes(offset - this.received)} of output are missing here.`);
      }
    }
    this.queue.push({ offset, data });
    this.received = offset + data.length;
    this.pump();
  }

  private pump(): void {
    if (this.writing || this.disposed) return;
    const next = this.queue[0];
    if (!next) return;
    // A piece is all history or all live output (see `quietReplay`), and at most CHUNK bytes.
    let size = Math.min(next.data.length, CHUNK);
    if (next.offset < this.replayEnd) size = Math.min(size, this.replayEnd - next.offset);
    let piece = next;
    if (next.data.length > size) {
      piece = { offset: next.offset, data: next.data.subarray(0, size) };
      next.offset += size;
      next.data = next.data.subarray(size);
    } else {
      this.queue.shift();
    }
    this.writing = true;
    this.parsingReplay = piece.offset < this.replayEnd;
    this.term.write(piece.data, () => {
      if (this.disposed) return;
      this.writing = false;
      this.written = piece.offset + piece.data.length;
      this.debug?.push(piece.data.slice());
      this.host.changed(this);
      this.updateProgress();
      this.maybeFinishReplay();
      this.pump();
    });
  }

  private maybeFinishReplay(): void {
    if (this.written < this.replayEnd) return;
    if (!this.progress.hidden) this.showProgress(0);
    this.restored(this.written);
  }

  /** Once per page load, say what came back and how much arrived while the page was away. */
  private restored(end: number): void {
    if (this.remembered === null) return;
    const before = this.remembered;
    this.remembered = null;
    const start = this.historyStart;
    let text = `Restored “${this.name}”`;
    if (before > end) {
      text += "."; // an unrelated session under the same id; nothing to compare
    } else if (end === before) {
      text += ": nothing new arrived while you were away.";
    } else {
      text += `: ${formatBytes(end - before)} arrived while you were away`;
      text += before < start ? ` (${formatBytes(start - before)} of it no longer buffered).` : ".";
    }
    this.notice("info", text);
  }

  private showProgress(total: number): void {
    this.progress.hidden = total <= 0;
    this.progress.dataset.total = String(total);
    this.progressBar.style.width = "0%";
  }

  private updateProgress(): void {
    if (this.progress.hidden) return;
    const total = Number(this.progress.dataset.total) || 1;
    const done = Math.min(1, (this.written - this.replayStart) / total);
    this.progressBar.style.width = `${(done * 100).toFixed(1)}%`;
  }

  private closed(code: number, reason: string, exited: boolean, resumed: boolean): void {
    if (this.disposed) return;
    this.showProgress(0);
    if (exited) {
      void this.checkGone();
      return;
    }
    switch (code) {
      case CLOSE.notFound:
        void this.replace("no longer exists on the server (closed or expired)");
        return;
      case CLOSE.unauthorized:
        this.setState("disconnected");
        unauthorized();
        return;
      case CLOSE.badRequest:
        if (resumed) {
          // Our offset means nothing to the server (e.g. it restarted): replay it all.
          this.received = null;
          this.connect();
          return;
        }
        break;
      case CLOSE.originRefused:
      case CLOSE.limit:
        break;
      default:
        this.scheduleReconnect();
        return;
    }
    this.setState("disconnected");
    this.notice("error", `Disconnected: ${reason || `close code ${code}`}. Click the tab's dot to retry.`);
  }

  private scheduleReconnect(): void {
    const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.attempts) * (0.8 + Math.random() * 0.4);
    this.attempts += 1;
    this.setState(navigator.onLine ? "reconnecting" : "disconnected");
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
    this.host.linkLost(this);
  }

  /** Retry at once (the browser is back online, or the user asked). */
  retryNow(): void {
    if (this.state === "reconnecting" || this.state === "disconnected") {
      this.attempts = 0;
      this.setState("reconnecting");
      this.connect();
    }
  }

  /** The process exited; if the session itself is gone (closed elsewhere), start a new one. */
  private async checkGone(): Promise<void> {
    try {
      const status = await getJson<{ exists: boolean }>(
        `/api/v1/terminal/sessions/${encodeURIComponent(this.id)}/status`,
      );
      if (!status.exists) await this.replace("was closed from elsewhere");
    } catch {
      // leave it as exited
    }
  }

  private async replace(why: string): Promise<void> {
    if (this.replacing || this.disposed) return;
    this.replacing = true;
    const oldId = this.id;
    try {
      // on the same machine: a tab on a connection stays on it
      const body: Record<string, unknown> = { name: this.name };
      if (this.connectionId) body.connection_id = this.connectionId;
      if (this.fitted) Object.assign(body, { rows: this.term.rows, cols: this.term.cols });
      const session = await sendJson<TerminalSession>("POST", "/api/v1/terminal/sessions", body);
      if (this.disposed) return;
      this.id = session.id;
      this.name = session.name;
      this.node = session.node ?? null;
      this.nodeReachable = true;
      this.pane.dataset.sessionId = session.id;
      this.exitCode = null;
      this.exitReason = null;
      this.received = null;
      this.written = 0;
      this.replayEnd = 0;
      this.remembered = null;
      this.host.replaced(this, oldId);
      this.notice("warn", `Session “${this.name}” (${oldId}) ${why}; started a new one in its place.`);
      this.setState("connecting");
      this.connect();
    } catch (err) {
      this.setState("disconnected");
      const message = err instanceof ApiError ? err.message : String(err);
      this.notice("error", `Session ${oldId} ${why}, and a new one could not be started: ${message}`);
    } finally {
      this.replacing = false;
    }
  }

  private startPings(): void {
    this.stopPings();
    this.lastFrameAt = Date.now();
    this.pingTimer = window.setInterval(() => {
      if (Date.now() - this.lastFrameAt > SILENCE_LIMIT_MS) {
        this.ws?.close(); // half-open: onclose reconnects
        return;
      }
      this.sendJson({ type: "ping" });
    }, PING_EVERY_MS);
  }

  private stopPings(): void {
    window.clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  private closeSocket(): void {
    const ws = this.ws;
    this.ws = null;
    this.stopPings();
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
      ws.close(1000);
    }
  }

  private setState(state: LinkState): void {
    this.state = state;
    this.host.changed(this);
  }

  /** Stop for good (the tab is closed); the server-side session is not touched here. */
  dispose(): void {
    this.disposed = true;
    window.clearTimeout(this.retryTimer);
    this.closeSocket();
    this.term.dispose();
    this.pane.remove();
  }
}
