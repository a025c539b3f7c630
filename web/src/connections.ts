// Saved connections (SPEC §11): what the workspace shows of them, and the menu that opens a tab
// on one.

import { getJson } from "./api";
import { el } from "./dom";

/** A saved connection as `GET /api/v1/connections` answers it (hearth.contract.connections:
 * never a secret). Written here by hand: wire.ts is generated from hearth.protocol only. */
export interface ConnectionInfo {
  id: string;
  name: string;
  protocol: "ssh";
  host: string;
  port: number;
  username: string;
  auth: "password" | "private_key" | "none";
  host_key: string | null;
  /** Defined by the operator in the config file: usable, not changeable, credentials unseen. */
  shared?: boolean;
}

/** `user@host`, with the port when it is not 22 (and an IPv6 address in brackets). */
export function where(c: ConnectionInfo, withPort = c.port !== 22): string {
  const host = c.host.includes(":") ? `[${c.host}]` : c.host;
  return `${c.username}@${host}${withPort ? `:${c.port}` : ""}`;
}

export async function listConnections(): Promise<ConnectionInfo[]> {
  return getJson<ConnectionInfo[]>("/api/v1/connections");
}

/** The menu under the tab bar's "▾": the saved connections, freshly listed each time it opens.
 * A menu button as ARIA has it: arrows move, Enter opens, Escape or Tab closes. */
export class ConnectionMenu {
  readonly button: HTMLButtonElement;
  private readonly menu: HTMLElement;
  private returnFocus: (() => void) | null = null;

  constructor(
    private readonly pick: (connection: ConnectionInfo) => void,
    private readonly listed: (connections: ConnectionInfo[]) => void,
  ) {
    this.button = el("button", {
      class: "tab-add tab-more",
      title: "New terminal on a saved connection (Alt+Shift+C)",
      "aria-label": "New terminal on a saved connection",
      "aria-haspopup": "menu",
      "aria-expanded": "false",
    }, ["▾"]);
    this.menu = el("div", { class: "menu", role: "menu", "aria-label": "Saved connections", hidden: "" });
    this.button.addEventListener("click", () => (this.isOpen ? this.close() : void this.open()));
    this.button.addEventListener("keydown", (e) => {
      if (e.key === "ArrowDown" && !this.isOpen) void this.open();
      else if (e.key === "Escape" && this.isOpen) this.close();
      else return;
      e.preventDefault();
    });
    this.menu.addEventListener("keydown", (e) => this.key(e));
    this.menu.addEventListener("focusout", (e) => {
      const to = e.relatedTarget as Node | null;
      if (to && !this.menu.contains(to) && to !== this.button) this.close(false);
    });
    document.addEventListener("pointerdown", (e) => {
      const target = e.target as Node;
      if (this.isOpen && !this.menu.contains(target) && !this.button.contains(target)) this.close(false);
    });
    document.body.append(this.menu);
  }

  get isOpen(): boolean {
    return !this.menu.hidden;
  }

  /** Open under the button; focus goes to the first connection (or back where it was after). */
  async open(returnFocus: (() => void) | null = null): Promise<void> {
    this.returnFocus = returnFocus;
    this.place();
    this.menu.replaceChildren(el("p", { class: "menu-note hint" }, ["Loading connections…"]));
    this.menu.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    let connections: ConnectionInfo[];
    try {
      connections = await listConnections();
    } catch (err) {
      this.fill([el("p", { class: "menu-note error", role: "alert" }, [
        `Could not list the connections: ${err instanceof Error ? err.message : String(err)}`,
      ])]);
      return;
    }
    this.listed(connections);
    if (connections.length === 0) {
      this.fill([
        el("p", { class: "menu-note" }, ["No saved connections yet."]),
        el("p", { class: "menu-note hint" }, [
          "Save one with ",
          el("code", {}, ["POST /api/v1/connections"]),
          ' {"name", "host", "port", "username", "auth": {"password": …} or {"private_key": …}}; ',
          "it is listed here for a new tab. The server's operator can also share some with you ",
          "(",
          el("code", {}, ["[[connections]]"]),
          " in its config file).",
        ]),
      ]);
      return;
    }
    this.fill(
      connections.map((c) => {
        const item = el("button", { class: "menu-item", role: "menuitem", "data-connection-id": c.id, tabindex: "-1" }, [
          el("span", { class: "menu-name" }, [
            c.name,
            c.shared && el("span", { class: "badge", title: "defined by the operator of this server" }, ["shared"]),
          ]),
          el("span", { class: "menu-where" }, [where(c)]),
        ]);
        item.addEventListener("click", () => {
          this.close();
          this.pick(c);
        });
        return item;
      }),
    );
  }

  close(restore = true): void {
    if (!this.isOpen) return;
    this.menu.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    const back = this.returnFocus;
    this.returnFocus = null;
    if (!restore) return;
    if (back) back();
    else this.button.focus();
  }

  private fill(children: HTMLElement[]): void {
    if (!this.isOpen) return; // closed while listing
    this.menu.replaceChildren(...children);
    this.place();
    const first = this.items()[0];
    // Nothing to pick: keep the focus on the button, so Escape and Enter still work there.
    (first ?? this.button).focus();
  }

  private items(): HTMLElement[] {
    return [...this.menu.querySelectorAll<HTMLElement>(".menu-item")];
  }

  /** Fixed under the button: the tab bar scrolls sideways and would clip it. */
  private place(): void {
    const box = this.button.getBoundingClientRect();
    this.menu.style.top = `${Math.round(box.bottom + 4)}px`;
    this.menu.style.left = `${Math.round(Math.max(8, Math.min(box.left, window.innerWidth - 340)))}px`;
  }

  private key(event: KeyboardEvent): void {
    const items = this.items();
    const at = items.indexOf(document.activeElement as HTMLElement);
    const go = (i: number): void => items[(i + items.length) % items.length]?.focus();
    switch (event.key) {
      case "ArrowDown":
        go(at + 1);
        break;
      case "ArrowUp":
        go(at - 1);
        break;
      case "Home":
        go(0);
        break;
      case "End":
        go(items.length - 1);
        break;
      case "Escape":
        this.close();
        break;
      case "Tab":
        this.close(false);
        return; // the focus moves on as usual
      default:
        return;
    }
    event.preventDefault();
    event.stopPropagation();
  }
}
