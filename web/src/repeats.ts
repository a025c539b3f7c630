// xterm.js repeats some operations once per unit of their count: "CSI 99999999 L" (insert
// lines) from a program keeps it busy for minutes, in the page and in the server's screen
// model alike. Past the screen's size each of these does what it does at the screen's size
// (the region is cleared, the cursor is at the edge), so the count is cut there: exactly the
// same screen, at once.

interface ParserApi {
  registerCsiHandler(
    id: { final: string },
    callback: (params: (number | number[])[]) => boolean | Promise<boolean>,
  ): unknown;
}

interface TerminalLike {
  readonly rows: number;
  readonly cols: number;
  readonly parser: ParserApi;
}

type Handler = (params: { params: number[]; length: number }) => boolean;

const REPEATED: [final: string, method: string, limit: (t: TerminalLike) => number][] = [
  ["L", "insertLines", (t) => t.rows],
  ["M", "deleteLines", (t) => t.rows],
  ["S", "scrollUp", (t) => t.rows],
  ["T", "scrollDown", (t) => t.rows],
  ["I", "cursorForwardTab", (t) => t.cols],
  ["Z", "cursorBackwardTab", (t) => t.cols],
];

export function limitRepeats(term: TerminalLike): void {
  // the emulator's own handlers (not public API): called with the count cut to the limit
  const core = (term as unknown as { _core?: { _inputHandler?: Record<string, Handler> } })._core;
  const handlers = core?._inputHandler;
  if (!handlers) return;
  for (const [final, method, limit] of REPEATED) {
    const handler = handlers[method];
    if (typeof handler !== "function") continue;
    term.parser.registerCsiHandler({ final }, (params) => {
      const count = params[0];
      const max = limit(term);
      if (params.length !== 1 || typeof count !== "number" || count <= max) return false;
      return handler.call(handlers, { params: [max], length: 1 });
    });
  }
}
