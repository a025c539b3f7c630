// The kernel console: pick or create a kernel session, run code, watch the outputs stream in
// (POST …/execute?stream=true, newline-delimited JSON events), with the pool's state on top.

import { ApiError, getJson, request, sendJson, type KernelSession, type PoolState } from "./api";
import { ansiToNodes } from "./ansi";
import { ago, el } from "./dom";

const ACTIVE_KEY = "kernel_active_session";

type Event = Record<string, unknown> & { type: string };

export class KernelConsole {
  readonly root: HTMLElement;
  private readonly select: HTMLSelectElement;
  private readonly pool: HTMLElement;
  private readonly cells: HTMLElement;
  private readonly code: HTMLTextAreaElement;
  private readonly runButton: HTMLButtonElement;
  private readonly info: HTMLElement;
  private sessions: KernelSession[] = [];
  private poolTimer: number | undefined;
  private running: AbortController | null = null;

  constructor() {
    this.select = el("select", { class: "kernel-select", "aria-label": "Kernel session" });
    this.select.addEventListener("change", () => {
      localStorage.setItem(ACTIVE_KEY, this.select.value);
      this.renderInfo();
    });
    const create = el("button", { class: "primary", "data-action": "new-kernel" }, ["New session"]);
    create.addEventListener("click", () => void this.create());
    const interrupt = el("button", { class: "ghost", "data-action": "interrupt" }, ["Interrupt"]);
    interrupt.addEventListener("click", () => void this.action("interrupt"));
    const restart = el("button", { class: "ghost", "data-action": "restart" }, ["Restart"]);
    restart.addEventListener("click", () => void this.action("restart"));
    const terminate = el("button", { class: "ghost danger", "data-action": "terminate" }, ["Terminate"]);
    terminate.addEventListener("click", () => void this.terminate());
    this.pool = el("div", { class: "pool", title: "The warm kernel pool" });
    this.info = el("div", { class: "kernel-info" });
    this.cells = el("div", { class: "cells", "aria-live": "polite" });
    this.code = el("textarea", {
      class: "code",
      spellcheck: "false",
      rows: "4",
      placeholder: "Python code — Shift+Enter or Ctrl+Enter to run",
      "aria-label": "Code",
    });
    this.code.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.shiftKey || e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        void this.run();
      } else if (e.key === "Tab" && !e.shiftKey) {
        e.preventDefault();
        this.code.setRangeText("    ", this.code.selectionStart, this.code.selectionEnd, "end");
      }
    });
    this.runButton = el("button", { class: "primary run", "data-action": "run" }, ["Run ▶"]);
    this.runButton.addEventListener("click", () => void this.run());
    this.root = el("section", { class: "view kernel-view", hidden: "" }, [
      el("div", { class: "kernel-bar" }, [
        el("label", {}, ["Session ", this.select]),
        create,
        interrupt,
        restart,
        terminate,
        el("span", { class: "spacer" }),
        this.pool,
      ]),
      this.info,
      this.cells,
      el("div", { class: "editor" }, [this.code, this.runButton]),
    ]);
  }

  show(): void {
    void this.refresh();
    void this.refreshPool();
    window.clearInterval(this.poolTimer);
    this.poolTimer = window.setInterval(() => void this.refreshPool(), 3000);
    this.code.focus();
  }

  hide(): void {
    window.clearInterval(this.poolTimer);
  }

  private get current(): string | null {
    return this.select.value || null;
  }

  async refresh(): Promise<void> {
    try {
      this.sessions = await getJson<KernelSession[]>("/api/v1/sessions");
    } catch (err) {
      this.error(err);
      return;
    }
    const wanted = this.select.value || localStorage.getItem(ACTIVE_KEY) || "";
    this.select.replaceChildren(
      ...(this.sessions.length ? [] : [el("option", { value: "" }, ["(none yet — Run creates one)"])]),
      ...this.sessions.map((s) => el("option", { value: s.session_id }, [s.session_id])),
    );
    if (this.sessions.some((s) => s.session_id === wanted)) this.select.value = wanted;
    this.renderInfo();
  }

  private renderInfo(): void {
    const s = this.sessions.find((x) => x.session_id === this.select.value);
    this.info.textContent = s
      ? `${s.kernel_name} · ${s.status} · ${s.from_pool ? "from the warm pool" : "started cold"} · ` +
        `${s.execution_count} run${s.execution_count === 1 ? "" : "s"} · active ${ago(s.last_activity)}`
      : "";
  }

  async refreshPool(): Promise<void> {
    try {
      const p = await getJson<PoolState>("/api/v1/pool");
      this.pool.replaceChildren(
        chip("ready", `${p.ready}/${p.target}`),
        chip("starting", String(p.starting)),
        chip("active", String(p.active)),
        chip("max", String(p.max_kernels)),
      );
    } catch {
      this.pool.replaceChildren(chip("pool", "unavailable"));
    }
  }

  async create(): Promise<string | null> {
    const started = performance.now();
    this.info.textContent = "Starting a kernel session…";
    try {
      const s = await sendJson<KernelSession>("POST", "/api/v1/sessions", {});
      localStorage.setItem(ACTIVE_KEY, s.session_id);
      this.select.value = s.session_id;
      await this.refresh();
      this.select.value = s.session_id;
      this.renderInfo();
      const ms = Math.round(performance.now() - started);
      this.note(`New session ${s.session_id} ${s.from_pool ? "from the warm pool" : "started cold"} in ${ms} ms.`);
      void this.refreshPool();
      return s.session_id;
    } catch (err) {
      this.error(err);
      return null;
    }
  }

  private async action(what: "interrupt" | "restart"): Promise<void> {
    const id = this.current;
    if (!id) return;
    try {
      await request("POST", `/api/v1/sessions/${encodeURIComponent(id)}/${what}`);
      this.note(what === "restart" ? `Restarted ${id}: its variables are gone.` : `Interrupted ${id}.`);
    } catch (err) {
      this.error(err);
    }
  }

  private async terminate(): Promise<void> {
    const id = this.current;
    if (!id) return;
    try {
      await request("DELETE", `/api/v1/sessions/${encodeURIComponent(id)}`);
      this.note(`Terminated ${id}.`);
      localStorage.removeItem(ACTIVE_KEY);
      this.select.value = "";
      await this.refresh();
      void this.refreshPool();
    } catch (err) {
      this.error(err);
    }
  }

  async run(): Promise<void> {
    const code = this.code.value;
    if (!code.trim() || this.running) return;
    const id = this.current ?? (await this.create());
    if (!id) return;
    const prompt = el("div", { class: "prompt" }, ["In [ ]:"]);
    const out = el("div", { class: "outputs" });
    const cell = el("div", { class: "cell", "data-state": "running" }, [
      el("div", { class: "cell-in" }, [prompt, el("pre", { class: "cell-code" }, [code])]),
      out,
    ]);
    this.cells.append(cell);
    cell.scrollIntoView({ block: "end" });
    this.code.value = "";
    this.running = new AbortController();
    this.runButton.disabled = true;
    const view = new OutputView(out);
    try {
      const response = await request(
        "POST",
        `/api/v1/sessions/${encodeURIComponent(id)}/execute?stream=true`,
        { code },
        { signal: this.running.signal },
      );
      for await (const event of ndjson(response)) {
        if (event.type === "done") {
          const n = event.execution_count;
          prompt.textContent = `In [${typeof n === "number" ? n : " "}]:`;
          cell.dataset.state = String(event.status);
          const ms = Number(event.duration_ms ?? 0);
          out.append(
            el("div", { class: "cell-done" }, [
              `${String(event.status)} · ${ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`}`,
              event.restarted ? " · the kernel was restarted: its state is gone" : "",
            ]),
          );
        } else {
          view.add(event);
        }
        cell.scrollIntoView({ block: "end" });
      }
    } catch (err) {
      cell.dataset.state = "error";
      out.append(el("pre", { class: "output error" }, [err instanceof Error ? err.message : String(err)]));
      if (err instanceof ApiError && err.status === 404) void this.refresh();
    } finally {
      this.running = null;
      this.runButton.disabled = false;
      void this.refresh();
      void this.refreshPool();
    }
  }

  private note(text: string): void {
    this.cells.append(el("div", { class: "console-note" }, [text]));
    this.cells.lastElementChild?.scrollIntoView({ block: "end" });
  }

  private error(err: unknown): void {
    this.cells.append(el("div", { class: "console-note error" }, [err instanceof Error ? err.message : String(err)]));
  }
}

function chip(label: string, value: string): HTMLElement {
  return el("span", { class: "chip", "data-name": label }, [el("span", { class: "chip-label" }, [label]), value]);
}

async function* ndjson(response: Response): AsyncGenerator<Event> {
  if (!response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    pending += decoder.decode(value, { stream: !done });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line) yield JSON.parse(line) as Event;
    }
    if (done) break;
  }
  if (pending.trim()) yield JSON.parse(pending) as Event;
}

/** Renders execution events as nbformat outputs: stream text merged per name, rich MIME
 * bundles (images, HTML in a script-less sandbox, text), errors with their ANSI tracebacks. */
class OutputView {
  private lastStream: { name: string; node: HTMLElement } | null = null;
  private clearPending = false;

  constructor(private readonly root: HTMLElement) {}

  add(event: Event): void {
    if (event.type === "clear_output") {
      if (event.wait) this.clearPending = true;
      else this.clear();
      return;
    }
    if (this.clearPending) {
      this.clearPending = false;
      this.clear();
    }
    if (event.type === "stream") {
      const name = String(event.name ?? "stdout");
      const text = String(event.text ?? "");
      if (this.lastStream?.name === name) this.lastStream.node.append(...ansiToNodes(text));
      else {
        const node = el("pre", { class: `output stream ${name}` }, ansiToNodes(text));
        this.root.append(node);
        this.lastStream = { name, node };
      }
      return;
    }
    this.lastStream = null;
    if (event.type === "error") {
      const trace = Array.isArray(event.traceback) ? (event.traceback as unknown[]).map(String).join("\n") : "";
      this.root.append(
        el("pre", { class: "output error" }, trace ? ansiToNodes(trace) : [`${String(event.ename)}: ${String(event.evalue)}`]),
      );
      return;
    }
    if (event.type === "execute_result" || event.type === "display_data") {
      const data = (event.data ?? {}) as Record<string, unknown>;
      const box = richOutput(data, event.type);
      if (event.type === "execute_result" && typeof event.execution_count === "number") {
        box.prepend(el("div", { class: "out-prompt" }, [`Out[${event.execution_count}]:`]));
      }
      this.root.append(box);
    }
  }

  private clear(): void {
    this.root.querySelectorAll(".output").forEach((n) => n.remove());
    this.lastStream = null;
  }
}

function richOutput(data: Record<string, unknown>, kind: string): HTMLElement {
  const box = el("div", { class: `output rich ${kind}` });
  const text = (key: string): string | null => {
    const v = data[key];
    if (typeof v === "string") return v;
    if (Array.isArray(v)) return v.map(String).join("");
    return null;
  };
  for (const mime of ["image/png", "image/jpeg", "image/gif", "image/webp"]) {
    const b64 = text(mime);
    if (b64) {
      box.append(el("img", { src: `data:${mime};base64,${b64.replace(/\s+/g, "")}`, alt: mime, "data-mime": mime }));
      return box;
    }
  }
  const svg = text("image/svg+xml");
  if (svg) {
    box.append(el("img", { src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`, alt: "image/svg+xml" }));
    return box;
  }
  const html = text("text/html");
  if (html) {
    // No scripts run in the frame; same-origin only so its height can be measured.
    const frame = el("iframe", { sandbox: "allow-same-origin", class: "html-output", title: "HTML output" });
    frame.srcdoc = `<style>body{margin:0;font:13px system-ui,sans-serif;color:#d6deeb;background:transparent}table{border-collapse:collapse}td,th{border:1px solid #2a3345;padding:2px 6px}</style>${html}`;
    frame.addEventListener("load", () => {
      const height = frame.contentDocument?.documentElement.scrollHeight ?? 150;
      frame.style.height = `${Math.min(height + 4, 600)}px`;
    });
    box.append(frame);
    return box;
  }
  const plain = text("text/plain") ?? JSON.stringify(data);
  box.append(el("pre", {}, ansiToNodes(plain)));
  return box;
}
