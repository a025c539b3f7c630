// Hearth's web workspace: terminals in tabs that reconnect by themselves, and a kernel console.

import "@xterm/xterm/css/xterm.css";
import "./style.css";

import { getJson, setUnauthorizedHandler } from "./api";
import { forgetToken, storeToken, storedToken, tokenFromUrl } from "./auth";
import { el } from "./dom";
import { KernelConsole } from "./kernel";
import type { TerminalTab } from "./terminal-tab";
import { Workspace } from "./workspace";

type View = "terminals" | "kernels";

class App {
  private readonly workspace = new Workspace({ global: (e) => this.key(e) });
  private readonly kernels = new KernelConsole();
  private readonly navButtons = new Map<View, HTMLButtonElement>();
  private view: View = "terminals";
  private started = false;
  private dialog: HTMLElement | null = null;

  constructor(private readonly root: HTMLElement) {
    const nav = el("nav", { class: "nav" });
    for (const [view, label, key] of [
      ["terminals", "Terminals", "T"],
      ["kernels", "Kernel console", "K"],
    ] as const) {
      const button = el("button", { class: "nav-item", "data-view": view, title: `Alt+Shift+${key}` }, [label]);
      button.addEventListener("click", () => this.show(view));
      this.navButtons.set(view, button);
      nav.append(button);
    }
    const sessions = el("button", { class: "ghost", "data-action": "sessions", title: "Alt+Shift+S" }, ["Sessions"]);
    sessions.addEventListener("click", () => {
      this.show("terminals");
      this.workspace.togglePanel();
    });
    const signOut = el("button", { class: "ghost", title: "Forget the token stored in this browser" }, ["Sign out"]);
    signOut.addEventListener("click", () => {
      forgetToken();
      window.location.reload();
    });
    const header = el("header", { class: "topbar" }, [
      el("div", { class: "brand" }, [el("span", { class: "logo", "aria-hidden": "true" }), "Hearth"]),
      nav,
      el("span", { class: "spacer" }),
      sessions,
      signOut,
    ]);
    root.append(header, el("main", { class: "views" }, [this.workspace.root, this.kernels.root]));
    window.addEventListener("keydown", (e) => {
      // Already handled on its way up from a terminal (which marks it so)?
      if (!e.defaultPrevented && this.key(e)) e.preventDefault();
    });
    setUnauthorizedHandler(() => this.askToken("The server refused the token. Enter a valid one."));
    this.show("terminals");
  }

  terminalTabs(): readonly TerminalTab[] {
    return this.workspace.tabs;
  }

  /** Where a tab's session runs, as its tab says it (null: on this server's machine). */
  where(tab: TerminalTab): string | null {
    return this.workspace.place(tab.connectionId)?.short ?? null;
  }

  /** Global keyboard shortcuts (also offered to xterm first, so they never reach the shell). */
  private key(event: KeyboardEvent): boolean {
    if (event.type !== "keydown" || this.dialog) return false;
    if (event.altKey && event.shiftKey && !event.ctrlKey && !event.metaKey) {
      if (event.code === "KeyK") {
        this.show("kernels");
        return true;
      }
      if (event.code === "KeyT") {
        this.show("terminals");
        return true;
      }
    }
    return this.view === "terminals" && this.workspace.handleKey(event);
  }

  show(view: View): void {
    this.view = view;
    for (const [v, button] of this.navButtons) button.classList.toggle("active", v === view);
    this.workspace.root.hidden = view !== "terminals";
    this.kernels.root.hidden = view !== "kernels";
    if (view === "kernels") {
      if (this.started) this.kernels.show();
    } else {
      this.kernels.hide();
      requestAnimationFrame(() => this.workspace.active?.shown());
    }
  }

  async boot(): Promise<void> {
    tokenFromUrl();
    if (!storedToken()) {
      // Logged in through /login (an http-only cookie)? Then no token is needed here.
      const probe = await fetch("/api/v1/terminal/sessions").catch(() => null);
      if (!probe || !probe.ok) {
        this.askToken();
        return;
      }
    }
    await this.start();
  }

  private async start(): Promise<void> {
    if (this.started) {
      for (const tab of this.workspace.tabs) tab.retryNow();
      return;
    }
    this.started = true;
    await this.workspace.start();
    if (this.view === "kernels") this.kernels.show();
  }

  private askToken(problem = ""): void {
    if (this.dialog) return;
    const input = el("input", {
      type: "password",
      name: "token",
      autocomplete: "current-password",
      placeholder: "token",
      "aria-label": "Token",
      required: "",
    });
    const error = el("p", { class: "error" }, [problem]);
    const form = el("form", { class: "token-form" }, [
      el("h1", {}, ["Sign in to Hearth"]),
      el("p", {}, [
        "Paste the token that ",
        el("code", {}, ["hearth serve"]),
        " printed (the part after ",
        el("code", {}, ["?token="]),
        "). It is kept in this browser.",
      ]),
      input,
      error,
      el("button", { class: "primary", type: "submit" }, ["Sign in"]),
    ]);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      storeToken(token);
      getJson("/api/v1/terminal/sessions")
        .then(() => {
          this.dialog?.remove();
          this.dialog = null;
          return this.start();
        })
        .catch(() => {
          forgetToken();
          error.textContent = "That token was refused.";
          input.select();
        });
    });
    this.dialog = el("div", { class: "overlay" }, [form]);
    this.root.append(this.dialog);
    input.focus();
  }
}

const app = new App(document.getElementById("app")!);
void app.boot();

// A read-only window into the workspace for tests and for curious users' consoles.
declare global {
  interface Window {
    hearth: object;
  }
}
window.hearth = {
  tabs: () =>
    app.terminalTabs().map((t) => ({
      id: t.id,
      name: t.name,
      state: t.state,
      exitCode: t.exitCode,
      connectionId: t.connectionId,
      node: t.node,
      nodeReachable: t.nodeReachable,
      written: t.written,
      received: t.received,
      suppressed: t.suppressed,
      screenAt: t.screenAt,
      replaying: t.replaying,
      drawing: t.drawing,
      fitted: t.fitted,
      viewers: t.viewers,
      where: app.where(t),
      rows: t.term.rows,
      cols: t.term.cols,
    })),
  text: (id: string) => app.terminalTabs().find((t) => t.id === id)?.text() ?? null,
  /** The visible rows (trailing blanks cut), the cursor and which buffer is active. */
  screen: (id: string) => app.terminalTabs().find((t) => t.id === id)?.visible() ?? null,
  /** Base64 of every byte written to the tab's screen (needs localStorage hearth_debug=1). */
  written: (id: string) => {
    const bytes = app.terminalTabs().find((t) => t.id === id)?.writtenBytes();
    if (!bytes) return null;
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  },
};
