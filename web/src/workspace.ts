// The terminals view: tabs over server-side sessions, remembered in localStorage, and the
// sessions panel to attach ones opened elsewhere. A tab runs here or on a saved connection's
// machine (SPEC §11), and says which; on many nodes (SPEC §12) it also says which node holds its
// session, and when that node can't be reached.

import { ApiError, getJson, request, sendJson, type TerminalSession } from "./api";
import { ConnectionMenu, listConnections, where, type ConnectionInfo } from "./connections";
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
  private readonly newGroup: HTMLElement;
  private readonly menu: ConnectionMenu;
  /** The saved connections by id, as last listed (for where each tab runs). */
  readonly connections = new Map<string, ConnectionInfo>();
  /** Connections a session named that were not listed: looked up once each (see lookUp). */
  private readonly looked = new Set<string>();
  private saveTimer: number | undefined;
  private panelTimer: number | undefined;
  /** A look at the sessions' list for where the tabs' sessions live, under way (see checkNodes). */
  private nodeCheck: Promise<void> | null = null;
  private nodeCheckAgain = false;

  constructor(private readonly app: Shortcuts) {
    const add = el("button", { class: "tab-add", title: "New terminal (Alt+Shift+N)", "aria-label": "New terminal" }, ["+"]);
    add.addEventListener("click", () => void this.newTerminal());
    this.menu = new ConnectionMenu(
      (connection) => void this.newTerminal(connection),
      (connections) => this.knownConnections(connections),
    );
    // a split button: "+" here, "▾" on a saved connection
    this.newGroup = el("div", { class: "tab-new" }, [add, this.menu.button]);
    this.tabBar = el("div", { class: "tabbar", role: "tablist" }, [this.newGroup]);
    const newButton = el("button", { class: "primary" }, ["New terminal"]);
    newButton.addEventListener("click", () => void this.newTerminal());
    this.empty = el("div", { class: "empty", hidden: "" }, [
      el("p", {}, ["No terminal open."]),
      newButton,
      el("p", { class: "hint" }, [
        "or open one on a saved connection (▾, Alt+Shift+C), or attach one from Sessions (Alt+Shift+S)",
      ]),
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
    for (const s of stored) this.addTab(s.id, s.name, s.offset, s.connection ?? null, s.node ?? null);
    if (this.tabs.length === 0) {
      await this.newTerminal();
      return;
    }
    this.activate(this.tabs.find((t) => t.id === activeId) ?? this.tabs[0]!);
    for (const tab of this.tabs) tab.connect();
    this.checkNodes(); // remembered before the cluster had them, or moved on since
  }

  // --- tabs -------------------------------------------------------------------------------

  private addTab(
    id: string,
    name: string,
    remembered: number | null,
    connectionId: string | null,
    node: string | null,
  ): TerminalTab {
    const tab = new TerminalTab(this, id, name, remembered, connectionId, node);
    this.tabs.push(tab);
    this.panes.append(tab.pane);
    const dot = el("span", { class: "indicator", title: "Click to reconnect" });
    dot.addEventListener("click", (e) => {
      e.stopPropagation();
      tab.retryNow();
    });
    const label = el("span", { class: "tab-name", title: "Double-click to rename" });
    const nodeBadge = el("span", { class: "tab-node node-badge", hidden: "" });
    const host = el("span", { class: "tab-host", hidden: "" });
    const state = el("span", { class: "tab-state" });
    const close = el("button", { class: "tab-close", title: "Close terminal (Alt+Shift+W)", "aria-label": "Close terminal" }, ["×"]);
    const item = el("div", { class: "tab", role: "tab", tabindex: "0" }, [dot, label, nodeBadge, host, state, close]);
    item.addEventListener("click", () => this.activate(tab));
    item.addEventListener("dblclick", () => this.rename(tab));
    item.addEventListener("auxclick", (e) => {
      if (e.button === 1) void this.closeTab(tab);
    });
    close.addEventListener("click", (e) => {
      e.stopPropagation();
      void this.closeTab(tab);
    });
    this.tabBar.insertBefore(item, this.newGroup);
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

  /** A new session and its tab: here, or on a saved connection's machine. Logging in there
   * takes a moment, shown by a placeholder tab; a failed step (a 502) is said, and no tab stays. */
  async newTerminal(connection: ConnectionInfo | null = null): Promise<void> {
    let pending: HTMLElement | null = null;
    if (connection) {
      pending = el("div", { class: "tab tab-pending", "aria-busy": "true", "data-connection-id": connection.id }, [
        el("span", { class: "indicator", "data-state": "connecting" }),
        el("span", { class: "tab-name" }, [connection.name]),
        el("span", { class: "tab-state" }, [`connecting to ${where(connection)}…`]),
      ]);
      this.tabBar.insertBefore(pending, this.newGroup);
    }
    try {
      const body = connection ? { connection_id: connection.id } : {};
      const session = await sendJson<TerminalSession>("POST", "/api/v1/terminal/sessions", body);
      const tab = this.addTab(session.id, session.name, null, session.connection_id ?? null, session.node ?? null);
      this.activate(tab);
      this.save();
      tab.connect();
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      this.flash(connection ? `Could not open a terminal on “${connection.name}”: ${why}` : `Could not start a terminal: ${why}`);
    } finally {
      pending?.remove();
    }
  }

  /** Open the saved connections' menu (Alt+Shift+C); the focus comes back to the terminal. */
  openConnections(): void {
    const tab = this.active;
    void this.menu.open(tab ? () => tab.term.focus() : null);
  }

  /** Open a session that exists on the server (started here before, or on another device). */
  attach(session: TerminalSession): void {
    const open = this.tabs.find((t) => t.id === session.id);
    if (open) {
      this.activate(open);
      return;
    }
    const tab = this.addTab(session.id, session.name, null, session.connection_id ?? null, session.node ?? null);
    tab.nodeReachable = session.node_reachable !== false;
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
      const host = item.querySelector<HTMLElement>(".tab-host");
      void this.lookUp([tab.connectionId]);
      const place = this.place(tab.connectionId);
      if (host) {
        host.hidden = place === null;
        host.textContent = place?.short ?? "";
        host.title = place?.title ?? "";
      }
      if (tab.connectionId) item.dataset.connectionId = tab.connectionId;
      else delete item.dataset.connectionId;
      const node = item.querySelector<HTMLElement>(".tab-node");
      if (node) showNode(node, tab.node, tab.nodeReachable);
      if (tab.node) item.dataset.node = tab.node;
      else delete item.dataset.node;
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

  linkLost(tab: TerminalTab): void {
    if (tab.node) this.checkNodes();
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
      case "KeyC":
        this.openConnections();
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
        ...(t.node ? { node: t.node } : {}),
      })),
    );
  }

  // --- where a session runs ----------------------------------------------------------------

  /** How a session on a saved connection says where it runs: `user@host` on its tab, with the
   * port in the status bar and the panel, and the connection's name in their tooltips (just
   * the connection's id while it is unknown here, or if it was deleted). */
  place(connectionId: string | null | undefined): { short: string; full: string; title: string } | null {
    if (!connectionId) return null;
    const c = this.connections.get(connectionId);
    if (!c) {
      const text = `ssh · ${connectionId}`;
      return { short: text, full: text, title: `on the saved connection ${connectionId}` };
    }
    const full = `ssh ${where(c, true)}`;
    return { short: where(c, false), full, title: `${full} (connection “${c.name}”)` };
  }

  /** List the connections again if one of these is not known yet (once for each: one that
   * was deleted stays unknown). */
  private async lookUp(ids: (string | null | undefined)[]): Promise<void> {
    const unknown = ids.filter((id): id is string => !!id && !this.connections.has(id) && !this.looked.has(id));
    if (unknown.length === 0) return;
    for (const id of unknown) this.looked.add(id);
    try {
      this.knownConnections(await listConnections());
    } catch {
      // the tabs say the connection's id instead
    }
  }

  /** Ask the sessions' list where the tabs' sessions live and whether their nodes can be
   * reached (SPEC §12); one look at a time, and one more if asked meanwhile. */
  checkNodes(): void {
    if (this.nodeCheck) {
      this.nodeCheckAgain = true;
      return;
    }
    this.nodeCheck = (async () => {
      try {
        this.learnNodes(await getJson<TerminalSession[]>("/api/v1/terminal/sessions"));
      } catch {
        // the tabs keep what they knew
      }
    })().finally(() => {
      this.nodeCheck = null;
      if (this.nodeCheckAgain) {
        this.nodeCheckAgain = false;
        this.checkNodes();
      }
    });
  }

  /** What a list says of the tabs' sessions: their node, and whether it can be reached. A
   * connected tab's node can, whatever a list fetched before its hello said. */
  private learnNodes(sessions: TerminalSession[]): void {
    const listed = new Map(sessions.map((s) => [s.id, s]));
    for (const tab of this.tabs) {
      const s = listed.get(tab.id);
      if (!s) continue;
      const node = s.node ?? null;
      const reachable = s.node_reachable !== false || tab.state === "connected";
      if (node === tab.node && reachable === tab.nodeReachable) continue;
      tab.node = node;
      tab.nodeReachable = reachable;
      this.changed(tab);
    }
  }

  private knownConnections(connections: ConnectionInfo[]): void {
    this.connections.clear();
    for (const c of connections) this.connections.set(c.id, c);
    for (const tab of this.tabs) if (tab.connectionId) this.changed(tab);
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
      ...nodeSegment(tab.node, tab.nodeReachable),
      ...this.placeSegment(tab.connectionId),
      el("span", { class: "sep" }, ["·"]),
      el("span", {}, [`${tab.viewers} viewer${tab.viewers === 1 ? "" : "s"}`]),
      el("span", { class: "sep" }, ["·"]),
      el("span", {}, [`${tab.term.cols}×${tab.term.rows}`]),
      el("span", { class: "spacer" }),
      el("span", { class: "hint" }, ["Alt+Shift+N new · C on a connection · W close · R rename · 1–9 switch · S sessions · K kernels"]),
    );
  }

  private placeSegment(connectionId: string | null): HTMLElement[] {
    const place = this.place(connectionId);
    if (!place) return [];
    return [el("span", { class: "sep" }, ["·"]), el("span", { class: "status-host", title: place.title }, [place.full])];
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
    let sessions: TerminalSession[];
    try {
      sessions = await getJson<TerminalSession[]>("/api/v1/terminal/sessions");
    } catch (err) {
      this.panelList.replaceChildren(el("p", { class: "error" }, [String(err instanceof Error ? err.message : err)]));
      return;
    }
    if (sessions.length === 0) {
      this.panelList.replaceChildren(el("p", { class: "hint" }, ["No sessions yet."]));
      return;
    }
    this.learnNodes(sessions);
    await this.lookUp(sessions.map((s) => s.connection_id));
    this.panelList.replaceChildren(
      ...sessions.map((s) => {
        const here = this.tabs.some((t) => t.id === s.id);
        const button = el("button", { class: here ? "ghost" : "primary" }, [here ? "Show" : "Attach"]);
        button.addEventListener("click", () => this.attach(s));
        const lost = s.closed_reason === "node_lost";
        const status = lost
          ? `closed (lost with node ${s.node ?? "?"})`
          : s.alive
            ? s.status
            : s.closed_reason === "host_lost"
              ? "closed (lost when the server stopped)"
              : `closed (${s.exit_code ?? "?"})`;
        const place = this.place(s.connection_id);
        const node = s.node ? el("span", { class: "session-node node-badge" }) : null;
        if (node) showNode(node, s.node ?? null, s.node_reachable !== false);
        return el("div", { class: "session-row", "data-session-id": s.id }, [
          el("div", { class: "session-main" }, [
            el("span", { class: "session-name" }, [s.name]),
            el("span", { class: "badge", "data-status": s.alive && !lost ? s.status : "closed" }, [status]),
            node,
          ]),
          place && el("div", { class: "session-host", title: place.title }, [place.full]),
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

/** The badge of the node holding a session (SPEC §12): its name, dimmed while it can't be
 * reached; hidden on a single node. */
function showNode(badge: HTMLElement, node: string | null, reachable: boolean): void {
  badge.hidden = node === null;
  badge.textContent = node ?? "";
  badge.title = node === null ? "" : reachable ? `on node ${node}` : `node ${node} unreachable`;
  badge.dataset.reachable = String(reachable);
  badge.setAttribute("aria-label", badge.title);
}

function nodeSegment(node: string | null, reachable: boolean): HTMLElement[] {
  if (!node) return [];
  return [
    el("span", { class: "sep" }, ["·"]),
    el("span", { class: "status-node", "data-reachable": String(reachable) }, [
      reachable ? `node ${node}` : `node ${node} unreachable`,
    ]),
  ];
}

/** How a tab that ended says so: its exit code, or why it ended without one. */
function exitText(code: number | null, reason: string | null): string {
  if (reason === "host_lost") return "lost when the server stopped (output kept)";
  if (reason) return `exited (${code ?? "?"}): ${reason}`;
  return `exited (${code ?? "?"})`;
}
