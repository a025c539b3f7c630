// The escape sequences that redraw a terminal's screen, its scrollback and modes on a blank
// terminal of its size (SPEC §9's `data`).
//
// @xterm/addon-serialize does this cell by cell, building a diff of every cell's style: a
// thousand lines of two hundred columns made so much garbage that the collector took most of
// its 50 ms. Here a row goes out as runs of cells of one style: a style is compared as two
// numbers, and each run's text is taken in one piece (translateToString), so the work is a
// few small strings per run.
//
// Output, in order: the normal buffer's lines (scrollback, then exactly `rows` screen lines,
// so they end on screen where they were), the alternate buffer if it is the active one, the
// cursor, the modes. A line that wraps into the next is written to its last column and goes on
// without a line break, so the receiving terminal wraps it the same way.

const ESC = "\x1b[";

function colour(mode, value, base) {
  // base 30 (foreground) or 40 (background)
  if (mode === "palette") {
    if (value < 8) return `${base + value}`;
    if (value < 16) return `${base + 60 + value - 8}`;
    return `${base + 8};5;${value}`;
  }
  if (mode === "rgb") return `${base + 8};2;${(value >> 16) & 255};${(value >> 8) & 255};${value & 255}`;
  return "";
}

function sgr(cell) {
  const parts = ["0"];
  if (cell.isBold()) parts.push("1");
  if (cell.isDim()) parts.push("2");
  if (cell.isItalic()) parts.push("3");
  if (cell.isUnderline()) parts.push("4");
  if (cell.isBlink()) parts.push("5");
  if (cell.isInverse()) parts.push("7");
  if (cell.isInvisible()) parts.push("8");
  if (cell.isStrikethrough()) parts.push("9");
  if (cell.isOverline()) parts.push("53");
  const fgMode = cell.isFgRGB() ? "rgb" : cell.isFgPalette() ? "palette" : "default";
  const bgMode = cell.isBgRGB() ? "rgb" : cell.isBgPalette() ? "palette" : "default";
  const fg = colour(fgMode, cell.getFgColor(), 30);
  const bg = colour(bgMode, cell.getBgColor(), 40);
  if (fg) parts.push(fg);
  if (bg) parts.push(bg);
  return `${ESC}${parts.join(";")}m`;
}

// Whether a blank at the end of a row shows (a colour, inverse, a line through or under it).
function shows(cell) {
  const code = cell.getCode();
  if (code !== 0 && code !== 32) return true;
  return (
    !cell.isBgDefault() ||
    cell.isInverse() ||
    cell.isUnderline() ||
    cell.isStrikethrough() ||
    cell.isOverline()
  );
}

// A style is the cell's two packed attribute words (colours and flags; the emulator's own
// fields, read as numbers so that no cell costs an allocation) and its underline style.
function underline(cell) {
  return cell.hasExtendedAttrs() ? cell.extended?.underlineStyle ?? 0 : -1;
}

// One row: its runs of styled text. `full`: write every column (the row wraps into the next).
// Cells never written (or erased) stay so: skipped with a cursor move, or erased in their
// colour (ECH), so the redrawn row holds what this one holds, not spaces in their place.
function row(line, cols, cell, full) {
  let end = cols;
  if (!full) {
    while (end > 0) {
      line.getCell(end - 1, cell);
      if (shows(cell)) break;
      end -= 1;
    }
  }
  let out = "";
  let start = 0;
  let fg = 0; // the default style, as every row starts (the one before ended with a reset)
  let bg = 0;
  let ul = -1;
  let blank = false; // the run is of cells never written
  let coloured = false; // …and they show a background
  const flush = (x) => {
    if (x <= start) return;
    if (!blank || (full && x === end)) {
      out += line.translateToString(false, start, x); // (a wrapping row is written to its end)
    } else {
      out += coloured ? `${ESC}${x - start}X${ESC}${x - start}C` : `${ESC}${x - start}C`;
    }
  };
  for (let x = 0; x < end; x++) {
    line.getCell(x, cell);
    if (cell.getWidth() === 0) continue; // the second half of a wide character
    const isBlank = cell.getCode() === 0;
    if (cell.fg === fg && cell.bg === bg && isBlank === blank && underline(cell) === ul) continue;
    flush(x);
    if (cell.fg !== fg || cell.bg !== bg || underline(cell) !== ul) out += sgr(cell);
    fg = cell.fg;
    bg = cell.bg;
    ul = underline(cell);
    blank = isBlank;
    coloured = !cell.isBgDefault() || cell.isInverse();
    start = x;
  }
  flush(end);
  return fg === 0 && bg === 0 && ul === -1 ? out : out + `${ESC}0m`;
}

function lines(buffer, from, to, cols, cell) {
  const parts = [];
  for (let y = from; y < to; y++) {
    const line = buffer.getLine(y);
    if (!line) {
      parts.push("\r\n");
      continue;
    }
    const next = y + 1 < to ? buffer.getLine(y + 1) : undefined;
    const wraps = next?.isWrapped === true;
    parts.push(row(line, cols, cell, wraps));
    if (y + 1 < to && !wraps) parts.push("\r\n");
  }
  return parts.join("");
}

function modes(term) {
  const m = term.modes;
  let out = "";
  if (m.applicationCursorKeysMode) out += `${ESC}?1h`;
  if (m.applicationKeypadMode) out += "\x1b=";
  if (m.bracketedPasteMode) out += `${ESC}?2004h`;
  if (m.insertMode) out += `${ESC}4h`;
  if (m.reverseWraparoundMode) out += `${ESC}?45h`;
  if (m.sendFocusMode) out += `${ESC}?1004h`;
  if (m.wraparoundMode === false) out += `${ESC}?7l`;
  const mouse = { x10: "9", vt200: "1000", drag: "1002", any: "1003" }[m.mouseTrackingMode];
  if (mouse) out += `${ESC}?${mouse}h`;
  const core = term._core;
  if (core?.coreMouseService?.activeEncoding === "SGR") out += `${ESC}?1006h`;
  return out;
}

// The cursor saved by DECSC (ESC 7, with its pen), the scroll region, origin mode, then the
// cursor (each of these moves it, so in this order) and its visibility.
function cursor(term, buffer) {
  const core = term._core;
  const top = core?.buffer?.scrollTop ?? 0;
  const bottom = core?.buffer?.scrollBottom ?? term.rows - 1;
  let out = "";
  const saved = core?.buffer;
  if (saved && (saved.savedX || saved.savedY || saved.savedCurAttrData?.fg || saved.savedCurAttrData?.bg)) {
    out += `${ESC}${screenRow(saved) + 1};${saved.savedX + 1}H`;
    if (saved.savedCurAttrData) out += sgr(saved.savedCurAttrData);
    out += "\x1b7";
  }
  if (top !== 0 || bottom !== term.rows - 1) out += `${ESC}${top + 1};${bottom + 1}r`;
  const origin = term.modes.originMode;
  if (origin) out += `${ESC}?6h`;
  const y = origin ? buffer.cursorY - top : buffer.cursorY;
  out += `${ESC}${y + 1};${buffer.cursorX + 1}H`;
  if (core?.coreService?.isCursorHidden) out += `${ESC}?25l`;
  return out;
}

// What the next output is written with: the pen (colours and styles) and the character sets
// (line drawing in G0 or G1, and which of them is in use). Last, as they change what follows.
function pen(term) {
  const core = term._core;
  let out = "";
  const charsets = core?._charsetService;
  const drawing = (charset) => charset?.q === "\u2500"; // DEC special graphics: q is ─
  if (drawing(charsets?._charsets?.[0])) out += "\x1b(0";
  if (drawing(charsets?._charsets?.[1])) out += "\x1b)0";
  if (charsets?.glevel === 1) out += "\x0e";
  const attributes = core?._inputHandler?._curAttrData;
  if (attributes && (attributes.fg || attributes.bg)) out += sgr(attributes);
  return out;
}

// What the normal screen comes back to when the alternate one is left: its own scroll region,
// and the cursor ?1049h saved (where it was, with its pen), which ?1049l restores.
function leaving(term, normal) {
  const saved = term._core?.buffers?.normal;
  if (!saved) return `${ESC}${normal.cursorY + 1};${normal.cursorX + 1}H`;
  let out = "";
  if (saved.scrollTop !== 0 || saved.scrollBottom !== term.rows - 1) {
    out += `${ESC}${saved.scrollTop + 1};${saved.scrollBottom + 1}r`;
  }
  out += `${ESC}${screenRow(saved) + 1};${saved.savedX + 1}H`;
  if (saved.savedCurAttrData) out += sgr(saved.savedCurAttrData);
  return out;
}

// The screen row of a buffer's saved cursor: xterm.js keeps it counted from the scrollback's
// first line (as restoring it does: savedY - ybase).
function screenRow(buffer) {
  return Math.max((buffer.savedY ?? 0) - (buffer.ybase ?? 0), 0);
}

export function serialize(term) {
  const cell = term.buffer.normal.getNullCell();
  const normal = term.buffer.normal;
  const rows = term.rows;
  const cols = term.cols;
  let out = lines(normal, 0, normal.length, cols, cell);
  if (term.buffer.active.type === "alternate") {
    const alternate = term.buffer.alternate;
    out += leaving(term, normal);
    out += `${ESC}?1049h${ESC}0m${ESC}H${ESC}2J`;
    out += lines(alternate, alternate.length - rows, alternate.length, cols, cell);
  }
  return out + cursor(term, term.buffer.active) + modes(term) + pen(term);
}
