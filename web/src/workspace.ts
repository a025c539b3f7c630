// The terminals view: tabs over server-side sessions, remembered in localStorage, and the
// sessions panel to attach ones opened elsewhere.

import { ApiError, getJson, request, sendJson, type TerminalState } from "./api";
import { ago, el } from "./dom";
import { loadActive, loadSessions, saveActive, saveSessions } from "./storage";
import { TerminalTab, type LinkState, type TabHost } from "./terminal-tab";

const STATE_TEXT: Record<LinkState, string> = {
  connecting: "connecting…",
  connected: "connected",
  reconnecting: "reconnecting…",
  disconnected: "disconnected",
  exited: "exited",
};

export interface Shortcuts {
  /** Keys the whole app handles (switching views); true when it was one. */
  global(event: KeyboardEvent): boolean;
}

export class Workspace implements TabHost {
  readonly root: HTMLElement;
  readonly tabs: TerminalTab[] = [];
  active: TerminalTab | null = null;

  private readonly tabBar: HTMLElement;
  private readonly panes: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly status: HTMLElement;
  private readonly panel: HTMLElement;
  private readonly panelList: HTMLElement;
  private readonly tabEls = new Map<TerminalTab, HTMLElement>();
  private saveTimer: number | undefined;
  private panelTimer: number | undefined;

  constructor(private readonly app: Shortcuts) {
    const add = el("button", { class: "tab-add", title: "New terminal (Alt+Shift+N)", "aria-label": "New terminal" }, ["+"]);
    add.addEventListener("click", () => void this.newTerminal());
    this.tabBar = el("div", { class: "tabbar", role: "tablist" }, [add]);
    const newButton = el("button", { class: "primary" }, ["New terminal"]);
    newButton.addEventListener("click", () => void this.newTerminal());
    this.empty = el("div", { class: "empty", hidden: "" }, [
      el("p", {}, ["No terminal open."]),
      newButton,
      el("p", { class: "hint" }, ["or attach one from Sessions (Alt+Shift+S)"]),
    ]);
    this.panes = el("div", { class: "panes" }, [this.empty]);
    this.status = el("div", { class: "statusbar" });
    this.panelList = el("div", { class: "panel-list" });
    const refresh = el("button", { class: "ghost", title: "Refresh" }, ["↻"]);
    refresh.addEventListener("click", () => void this.refreshPanel());
    const closePanel = el("button", { class: "ghost", title: "Close", "aria-label": "Close sessions" }, ["×"]);
    closePanel.addEventListener("click", () => this.togglePanel(false));
    this.panel = el("aside", { class: "panel", hidden: "", "aria-label": "Sessions" }, [
      el("div", { class: "panel-head" }, [el("h2", {}, ["Sessions"]), refresh, closePanel]),
      el("p", { class: "hint" }, ["Your terminal sessions on this server, from any device."]),
      this.panelList,
    ]);
    this.root = el("section", { class: "view terminals-view" }, [
      el("div", { class: "terminals-main" }, [this.tabBar, this.panes, this.status]),
      this.panel,
    ]);

    window.addEventListener("online", () => this.tabs.forEach((t) => t.retryNow()));
    window.addEventListener("resize", () => this.active?.refit());
    window.addEventListener("pagehide", () => this.save());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") this.save();
      // Background tabs' timers are throttled: don't wait out a long backoff once visible.
      else this.tabs.forEach((t) => t.state === "reconnecting" && t.retryNow());
    });
  }

  /** Reopen the remembered sessions (each replays its whole buffer), or start one. */
  async start(): Promise<void> {
    const stored = loadSessions();
    const activeId = loadActive();
    for (const s of stored) this.addTab(s.id, s.name, s.offset, s.connection ?? null);
    if (this.tabs.length === 0) {
      await this.newTerminal();
      return;
    }
    this.activate(this.tabs.find((t) => t.id === activeId) ?? this.tabs[0]!);
    for (const tab of this.tabs) tab.connect();
  }

  // --- tabs -------------------------------------------------------------------------------

  private addTab(id: string, name: string, remembered: number | null, connectionId: string | null): TerminalTab {
    const tab = new TerminalTab(this, id, name, remembered, connectionId);
    this.tabs.push(tab);
    this.panes.append(tab.pane);
    const dot = el("span", { class: "indicator", title: "Click to reconnect" });
    dot.addEventListener("click", (e) => {
      e.stopPropagation();
      tab.retryNow();
    });
    const label = el("span", { class: "tab-name", title: "Double-click to rename" });
    const state = el("span", { class: "tab-state" });
    const close = el("button", { class: "tab-close", title: "Close terminal (Alt+Shift+W)", "aria-label": "Close terminal" }, ["×"]);
    const item = el("div", { class: "tab", role: "tab", tabindex: "0" }, [dot, label, state, close]);
    item.addEventListener("click", () => this.activate(tab));
    item.addEventListener("dblclick", () => this.rename(tab));
    item.addEventListener("auxclick", (e) => {
      if (e.button === 1) void this.closeTab(tab);
    });
    close.addEventListener("click", (e) => {
      e.stopPropagation();
      void this.closeTab(tab);
    });
    this.tabBar.insertBefore(item, this.tabBar.lastElementChild);
    this.tabEls.set(tab, item);
    this.changed(tab);
    this.empty.hidden = true;
    return tab;
  }

  activate(tab: TerminalTab): void {
    if (this.active === tab) return; // also keeps a double-click's rename field focused
    this.active = tab;
    for (const t of this.tabs) {
      const on = t === tab;
      t.pane.classList.toggle("active", on);
      const item = this.tabEls.get(t);
      item?.classList.toggle("active", on);
      item?.setAttribute("aria-selected", String(on));
    }
    saveActive(tab.id);
    requestAnimationFrame(() => tab.shown());
    this.renderStatus();
  }

  async newTerminal(): Promise<void> {
    try {
      const session = await sendJson<TerminalState>("POST", "/api/v1/terminal/sessions", {});
      const tab = this.addTab(session.id, session.name, null, session.connection_id ?? null);
      this.activate(tab);
      this.save();
      tab.connect();
    } catch (err) {
      this.flash(`Could not start a terminal: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Open a session that exists on the server (started here before, or on another device). */
  attach(session: TerminalState): void {
    const open = this.tabs.find((t) => t.id === session.id);
    if (open) {
      this.activate(open);
      return;
    }
    const tab = this.addTab(session.id, session.name, null, session.connection_id ?? null);
    this.activate(tab);
    this.save();
    tab.connect();
    if (!this.panel.hidden) void this.refreshPanel();
  }

  /** Close the tab and the session behind it (its process is terminated). */
  async closeTab(tab: TerminalTab): Promise<void> {
    const index = this.tabs.indexOf(tab);
    if (index < 0) return;
    this.tabs.splice(index, 1);
    this.tabEls.get(tab)?.remove();
    this.tabEls.delete(tab);
    tab.dispose();
    const next = this.tabs[Math.min(index, this.tabs.length - 1)];
    if (next) this.activate(next);
    else {
      this.active = null;
      saveActive(null);
      this.empty.hidden = false;
      this.renderStatus();
    }
    this.save();
    try {
      await request("DELETE", `/api/v1/terminal/sessions/${encodeURIComponent(tab.id)}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) this.flash(`Closing ${tab.name}: ${String(err)}`);
    }
    if (!this.panel.hidden) void this.refreshPanel();
  }

  rename(tab: TerminalTab): void {
    const item = this.tabEls.get(tab);
    const label = item?.querySelector<HTMLElement>(".tab-name");
    if (!item || !label) return;
    const input = el("input", { class: "tab-rename", value: tab.name, "aria-label": "Terminal name", maxlength: "200" });
    label.replaceWith(input);
    input.select();
    let done = false;
    const finish = async (commit: boolean): Promise<void> => {
      if (done) return;
      done = true;
      input.replaceWith(label);
      const name = input.value.trim();
      if (commit && name && name !== tab.name) {
        try {
          await sendJson("PATCH", `/api/v1/terminal/sessions/${encodeURIComponent(tab.id)}`, { name });
          tab.name = name;
          this.changed(tab);
        } catch (err) {
          tab.notice("error", `Rename failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      tab.term.focus();
    };
    input.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Enter") void finish(true);
      if (e.key === "Escape") void finish(false);
    });
    input.addEventListener("blur", () => void finish(true));
    input.addEventListener("click", (e) => e.stopPropagation());
    input.focus();
  }

  // --- TabHost ------------------------------------------------------------------------------

  changed(tab: TerminalTab): void {
    const item = this.tabEls.get(tab);
    if (item) {
      item.dataset.sessionId = tab.id;
      item.dataset.state = tab.state;
      const label = item.querySelector<HTMLElement>(".tab-name");
      if (label && label.textContent !== tab.name) label.textContent = tab.name;
      const text = tab.state === "exited" ? exitText(tab.exitCode, tab.exitReason) : STATE_TEXT[tab.state];
      const state = item.querySelector<HTMLElement>(".tab-state");
      if (state) state.textContent = tab.state === "connected" ? "" : text;
      const dot = item.querySelector<HTMLElement>(".indicator");
      if (dot) {
        dot.dataset.state = tab.state;
        dot.setAttribute("aria-label", text);
        dot.title = `${text} — click to reconnect`;
      }
    }
    if (tab === this.active) this.renderStatus();
    this.scheduleSave();
  }

  replaced(tab: TerminalTab, oldId: string): void {
    if (this.active === tab) saveActive(tab.id);
    this.changed(tab);
    this.save();
    void oldId;
  }

  shortcut(event: KeyboardEvent): boolean {
    return this.app.global(event);
  }

  /** The terminal view's own shortcuts (Alt+Shift+…); true when handled. */
  handleKey(event: KeyboardEvent): boolean {
    if (event.type !== "keydown" || !event.altKey || !event.shiftKey || event.ctrlKey || event.metaKey) {
      return false;
    }
    const index = this.active ? this.tabs.indexOf(this.active) : -1;
    const go = (i: number): void => {
      const tab = this.tabs[(i + this.tabs.length) % this.tabs.length];
      if (tab) this.activate(tab);
    };
    switch (event.code) {
      case "KeyN":
        void this.newTerminal();
        return true;
      case "KeyW":
        if (this.active) void this.closeTab(this.active);
        return true;
      case "KeyR":
        if (this.active) this.rename(this.active);
        return true;
      case "KeyS":
        this.togglePanel();
        return true;
      case "BracketLeft":
      case "ArrowLeft":
        go(index - 1);
        return true;
      case "BracketRight":
      case "ArrowRight":
        go(index + 1);
        return true;
      default:
        if (/^Digit[1-9]$/.test(event.code)) {
          const tab = this.tabs[Number(event.code.slice(5)) - 1];
          if (tab) this.activate(tab);
          return true;
        }
        return false;
    }
  }

  // --- persistence ------------------------------------------------------------------------

  private scheduleSave(): void {
    if (this.saveTimer !== undefined) return;
    this.saveTimer = window.setTimeout(() => this.save(), 300);
  }

  save(): void {
    window.clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    saveSessions(
      this.tabs.map((t) => ({
        id: t.id,
        name: t.name,
        offset: t.written,
        ...(t.connectionId ? { connection: t.connectionId } : {}),
      })),
    );
  }

  // --- the status bar and the sessions panel ---------------------------------------------

  private renderStatus(): void {
    const tab = this.active;
    if (!tab) {
      this.status.textContent = "";
      return;
    }
    const state = tab.state === "exited" ? exitText(tab.exitCode, tab.exitReason) : STATE_TEXT[tab.state];
    this.status.replaceChildren(
      el("span", { class: "indicator", "data-state": tab.state }),
      el("span", {}, [state]),
      el("span", { class: "sep" }, ["·"]),
      el("span", { title: "session id" }, [tab.id]),
      el("span", { class: "sep" }, ["·"]),
      el("span", {}, [`${tab.viewers} viewer${tab.viewers === 1 ? "" : "s"}`]),
      el("span", { class: "sep" }, ["·"]),
      el("span", {}, [`${tab.term.cols}×${tab.term.rows}`]),
      el("span", { class: "spacer" }),
      el("span", { class: "hint" }, ["Alt+Shift+N new · W close · R rename · 1–9 switch · S sessions · K kernels"]),
    );
  }

  togglePanel(open = this.panel.hidden): void {
    this.panel.hidden = !open;
    window.clearInterval(this.panelTimer);
    if (open) {
      void this.refreshPanel();
      this.panelTimer = window.setInterval(() => void this.refreshPanel(), 5000);
    }
    requestAnimationFrame(() => this.active?.refit());
  }

  async refreshPanel(): Promise<void> {
    let sessions: TerminalState[];
    try {
      sessions = await getJson<TerminalState[]>("/api/v1/terminal/sessions");
    } catch (err) {
      this.panelList.replaceChildren(el("p", { class: "error" }, [String(err instanceof Error ? err.message : err)]));
      return;
    }
    if (sessions.length === 0) {
      this.panelList.replaceChildren(el("p", { class: "hint" }, ["No sessions yet."]));
      return;
    }
    this.panelList.replaceChildren(
      ...sessions.map((s) => {
        const here = this.tabs.some((t) => t.id === s.id);
        const button = el("button", { class: here ? "ghost" : "primary" }, [here ? "Show" : "Attach"]);
        button.addEventListener("click", () => this.attach(s));
        const status = s.alive
          ? s.status
          : s.closed_reason === "host_lost"
            ? "closed (lost when the server stopped)"
            : `closed (${s.exit_code ?? "?"})`;
        return el("div", { class: "session-row", "data-session-id": s.id }, [
          el("div", { class: "session-main" }, [
            el("span", { class: "session-name" }, [s.name]),
            el("span", { class: "badge", "data-status": s.alive ? s.status : "closed" }, [status]),
          ]),
          el("div", { class: "session-meta" }, [
            `${s.id} · ${s.viewers} viewer${s.viewers === 1 ? "" : "s"} · active ${ago(s.last_activity)}`,
          ]),
          button,
        ]);
      }),
    );
  }

  private flash(text: string): void {
    if (this.active) {
      this.active.notice("error", text);
      return;
    }
    this.empty.querySelector(".error")?.remove();
    this.empty.append(el("p", { class: "error", role: "alert" }, [text]));
    this.empty.hidden = false;
  }
}

/** How a tab that ended says so: its exit code, or why it ended without one. */
function exitText(code: number | null, reason: string | null): string {
  if (reason === "host_lost") return "lost when the server stopped (output kept)";
  if (reason) return `exited (${code ?? "?"}): ${reason}`;
  return `exited (${code ?? "?"})`;
}
