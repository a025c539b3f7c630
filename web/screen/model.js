// The screen model (SPEC §9): one Node process per session host, holding a headless xterm.js
// terminal per terminal session, fed with every output byte. It is the same emulator as the
// workspace's, so its serialization redraws exactly on xterm.js; the host talks to it over
// stdin/stdout (src/hearth/terminals/screen.py has the other end and the frame layout).
//
// In:  [op u8][term u32][length u32][payload]   ops: O open, D data, R resize, C close,
//                                                 S snapshot, T census (terminals, asleep)
// Out: [length u32][UTF-8 JSON]                  one per snapshot or census, in the order asked
//
// A terminal untouched for IDLE seconds (argv[2]) goes to sleep: it is kept as its redraw (the
// serialization a snapshot sends, a few KiB for a shell at its prompt) instead of as an emulator
// (~330 KiB), and woken by the next thing it is sent, by writing that redraw into a new one. A
// thousand idle shells would otherwise hold a third of a GiB here.
import { Terminal } from "@xterm/headless";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { limitRepeats } from "../src/repeats";
import { serialize } from "./serialize";

const HEADER = 9;
const HIGH_WATER = 8 * 1024 * 1024; // bytes queued in xterm before stdin pauses: xterm drops
const LOW_WATER = 1024 * 1024; //      writes past 50 MB, and the host must see the backlog

const IDLE = Number(process.argv[2] ?? 60) * 1000; // ms untouched before a terminal sleeps

const terms = new Map();
let queued = 0;
let input = Buffer.alloc(0);

function emulator(rows, cols, scrollback) {
  // logLevel off: a program's garbage output would be logged, byte by byte, to the host's log
  const term = new Terminal({ rows, cols, scrollback, allowProposedApi: true, logLevel: "off" });
  term.loadAddon(new Unicode11Addon());
  term.unicode.activeVersion = "11";
  limitRepeats(term);
  return term;
}

function open(id, payload) {
  const rows = payload.readUInt16BE(0);
  const cols = payload.readUInt16BE(2);
  const scrollback = payload.readUInt32BE(4);
  terms.set(id, {
    term: emulator(rows, cols, scrollback),
    scrollback,
    last: null, // the last answer, and the count of changes it saw (lastAt)
    lastAt: -1,
    changes: 0, // writes and resizes sent, parsed or not
    writing: 0, // writes xterm has not parsed yet
    touched: Date.now(),
    asleep: null, // { rows, cols, redraw } while asleep
  });
}

// The entry's emulator, woken if asleep; the redraw is parsed before anything written after.
function awake(entry) {
  entry.touched = Date.now();
  if (entry.asleep) {
    const { rows, cols, redraw } = entry.asleep;
    entry.asleep = null;
    entry.term = emulator(rows, cols, entry.scrollback);
    entry.term.write(redraw);
  }
  return entry.term;
}

function sleepIdle() {
  const now = Date.now();
  for (const entry of terms.values()) {
    if (entry.asleep || entry.writing || now - entry.touched < IDLE) continue;
    const { term } = entry;
    entry.asleep = { rows: term.rows, cols: term.cols, redraw: serialize(term) };
    entry.term = null;
    term.dispose();
  }
}

function written(length) {
  return () => {
    queued -= length;
    if (queued < LOW_WATER && process.stdin.isPaused()) process.stdin.resume();
  };
}

function feed(id, payload) {
  const entry = terms.get(id);
  if (!entry) return;
  queued += payload.length;
  entry.changes++;
  entry.writing++;
  const done = written(payload.length);
  awake(entry).write(payload, () => {
    entry.writing--;
    done();
  });
  if (queued > HIGH_WATER) process.stdin.pause();
}

function snapshot(id, request) {
  const entry = terms.get(id);
  if (!entry) return reply({ request, missing: true });
  // The answer is the screen after every change sent before the request, and only those: an
  // answer computed earlier is reused only if no change came between (one cleared when a
  // change was sent could be set again by a callback that ran before the change was parsed,
  // and a screen then kept answering as it was before its last output).
  const at = entry.changes;
  if (entry.asleep && entry.lastAt === at) return reply({ ...entry.last, request }); // no wake
  const term = awake(entry);
  entry.writing++;
  term.write("", () => {
    entry.writing--;
    if (entry.lastAt === at) return reply({ ...entry.last, request });
    const buffer = term.buffer.active;
    const lines = [];
    for (let y = 0; y < term.rows; y++) {
      lines.push(buffer.getLine(buffer.viewportY + y)?.translateToString(true) ?? "");
    }
    entry.last = {
      rows: term.rows,
      cols: term.cols,
      cursor: { row: buffer.cursorY, col: buffer.cursorX },
      alternate: buffer.type === "alternate",
      lines,
      data: serialize(term),
    };
    entry.lastAt = at;
    reply({ ...entry.last, request });
  });
}

function reply(message) {
  const body = Buffer.from(JSON.stringify(message));
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  process.stdout.write(Buffer.concat([header, body]));
}

function handle(op, id, payload) {
  switch (op) {
    case 0x44: return feed(id, payload); // D
    case 0x4f: return open(id, payload); // O
    case 0x52: { // R
      const entry = terms.get(id);
      if (!entry) return;
      entry.changes++;
      awake(entry).resize(payload.readUInt16BE(2), payload.readUInt16BE(0));
      return;
    }
    case 0x43: { // C
      terms.get(id)?.term?.dispose();
      terms.delete(id);
      return;
    }
    case 0x53: return snapshot(id, payload.readUInt32BE(0)); // S
    case 0x54: { // T
      let asleep = 0;
      for (const entry of terms.values()) if (entry.asleep) asleep++;
      return reply({ request: payload.readUInt32BE(0), terminals: terms.size, asleep });
    }
    default:
      process.stderr.write(`screen model: unknown op ${op}\n`);
      process.exit(2);
  }
}

// V8 compiles the emulator and the serializer as they run: the first snapshot of a cold
// process took ten times as long as the next. A throwaway terminal warms them at start, before
// any input is read (the host runs this process on spare CPU only; what it sends meanwhile
// waits in the pipe).
function warmUp(then) {
  const id = -1;
  open(id, Buffer.from([0, 50, 0, 200, 0, 0, 0x03, 0xe8]));
  const line = Array.from({ length: 20 }, (_, i) => `\x1b[3${i % 8}m${String(i).padEnd(10)}`);
  const text = (line.join("") + "\x1b[0m\r\n").repeat(1100) + "\x1b[?1049h\x1b[Hwarm";
  terms.get(id).term.write(text, () => {
    for (let i = 0; i < 3; i++) serialize(terms.get(id).term);
    terms.get(id).term.dispose();
    terms.delete(id);
    then();
  });
}

function read(chunk) {
  input = input.length ? Buffer.concat([input, chunk]) : chunk;
  let at = 0;
  while (input.length - at >= HEADER) {
    const length = input.readUInt32BE(at + 5);
    if (input.length - at < HEADER + length) break;
    const payload = input.subarray(at + HEADER, at + HEADER + length);
    handle(input[at], input.readUInt32BE(at + 1), payload);
    at += HEADER + length;
  }
  input = at === input.length ? Buffer.alloc(0) : input.subarray(at);
}

warmUp(() => process.stdin.on("data", read));
setInterval(sleepIdle, Math.min(IDLE, 10_000)).unref();
process.stdin.on("end", () => process.exit(0));
process.stdout.on("error", () => process.exit(0)); // the host is gone
