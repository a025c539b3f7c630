// ANSI SGR colours (as IPython tracebacks use them) → styled spans; other escape sequences are
// dropped. Text is only ever inserted as text nodes, so nothing in it is interpreted as HTML.

const PALETTE = [
  "#1b2130", "#f07178", "#a6da95", "#eed49f", "#82aaff", "#c792ea", "#89ddff", "#d6deeb",
  "#5c6782", "#ff8b92", "#c3e88d", "#ffcb6b", "#9cc4ff", "#dcb0ff", "#a3f7ff", "#ffffff",
];

interface Style {
  fg?: string;
  bg?: string;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
}

// CSI … final byte, OSC … BEL/ST, and lone two-byte escapes.
const ESCAPE = /\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

function color256(n: number): string {
  if (n < 16) return PALETTE[n]!;
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16;
  const level = (x: number): number => (x === 0 ? 0 : 55 + x * 40);
  return `rgb(${level(Math.floor(i / 36))},${level(Math.floor(i / 6) % 6)},${level(i % 6)})`;
}

function apply(style: Style, params: number[]): Style {
  const s = { ...style };
  for (let i = 0; i < params.length; i++) {
    const p = params[i]!;
    if (p === 0) Object.keys(s).forEach((k) => delete s[k as keyof Style]);
    else if (p === 1) s.bold = true;
    else if (p === 2) s.dim = true;
    else if (p === 3) s.italic = true;
    else if (p === 4) s.underline = true;
    else if (p === 22) s.bold = s.dim = false;
    else if (p === 23) s.italic = false;
    else if (p === 24) s.underline = false;
    else if (p >= 30 && p <= 37) s.fg = PALETTE[p - 30];
    else if (p >= 90 && p <= 97) s.fg = PALETTE[p - 90 + 8];
    else if (p >= 40 && p <= 47) s.bg = PALETTE[p - 40];
    else if (p >= 100 && p <= 107) s.bg = PALETTE[p - 100 + 8];
    else if (p === 39) delete s.fg;
    else if (p === 49) delete s.bg;
    else if (p === 38 || p === 48) {
      let value: string | undefined;
      if (params[i + 1] === 5 && params[i + 2] !== undefined) {
        value = color256(params[i + 2]!);
        i += 2;
      } else if (params[i + 1] === 2 && params[i + 4] !== undefined) {
        value = `rgb(${params[i + 2]},${params[i + 3]},${params[i + 4]})`;
        i += 4;
      }
      if (value) s[p === 38 ? "fg" : "bg"] = value;
    }
  }
  return s;
}

function node(text: string, style: Style): Node {
  if (!style.fg && !style.bg && !style.bold && !style.dim && !style.italic && !style.underline) {
    return document.createTextNode(text);
  }
  const span = document.createElement("span");
  span.textContent = text;
  if (style.fg) span.style.color = style.fg;
  if (style.bg) span.style.backgroundColor = style.bg;
  if (style.bold) span.style.fontWeight = "bold";
  if (style.dim) span.style.opacity = "0.7";
  if (style.italic) span.style.fontStyle = "italic";
  if (style.underline) span.style.textDecoration = "underline";
  return span;
}

export function ansiToNodes(text: string): Node[] {
  const nodes: Node[] = [];
  let style: Style = {};
  let last = 0;
  for (const match of text.matchAll(ESCAPE)) {
    if (match.index > last) nodes.push(node(text.slice(last, match.index), style));
    last = match.index + match[0].length;
    if (match[2] === "m") {
      const params = (match[1] || "0").split(";").map((x) => Number(x) || 0);
      style = apply(style, params);
    }
  }
  if (last < text.length) nodes.push(node(text.slice(last), style));
  return nodes;
}

