// The JavaScript kernel of an interactive session: runs inside the sandbox, as the code's user, one cell per request.
//
// Started as `node -e <this source> READY_TAG`, it talks with the helper over its standard streams: each cell comes
// on stdin as a line `TAG SIZE` and SIZE bytes of UTF-8 source; its output goes to stdout and stderr as it is
// written; the line `\x1eTAG\x1eSTATUS` on stdout ends it (STATUS 0: completed, 1: it threw).
//
// Cells are evaluated by node's own REPL (the `repl` module's eval, in the global context): top-level `await`,
// declarations that persist from cell to cell, the value of the last expression shown with `util.inspect`, and
// `breakEvalOnSigint`, which lets SIGINT stop a synchronous loop with an error while the context survives. That is
// the evaluator node users know; nothing here re-implements it. A cell that waits on a promise is interrupted by
// handing the SIGINT to the REPL server, whose own handler rejects the wait.
'use strict';

const repl = require('repl');
const util = require('util');
const { PassThrough, Writable } = require('stream');
const fs = require('fs');

const END = '\x1e';
// Stack frames of the REPL's and this kernel's own code say nothing about the cell: they are left out.
const INTERNAL_FRAME = /^\s+at .*(\(node:|\(\[eval\]|node:internal|\[eval\]:|new Promise \(<anonymous>\))/;

// The REPL reports an error with its own properties after the stack (` {\n  code: '...'\n}`): they stay, after
// the frames that are kept; the interrupt's own code says nothing the message does not.
const ERROR_PROPERTIES = /^\s+\w+: .*,?$|^}$/;
const INTERRUPTED = /^\s+code: 'ERR_SCRIPT_EXECUTION_INTERRUPTED',?$/;

function tidy(text) {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => line.endsWith(' {'));
  const properties = start < 0 ? [] : lines.slice(start + 1);
  if (start < 0 || !properties.every((line) => line === '' || ERROR_PROPERTIES.test(line))) {
    return lines.filter((line) => !INTERNAL_FRAME.test(line)).join('\n');
  }
  const kept = [...lines.slice(0, start), lines[start].slice(0, -2)].filter((line) => !INTERNAL_FRAME.test(line));
  if (!properties.some((line) => INTERRUPTED.test(line))) {
    kept[kept.length - 1] += ' {';
    kept.push(...properties.filter((line) => line !== ''));
  }
  return kept.join('\n') + (text.endsWith('\n') ? '\n' : '');
}
const readyTag = process.argv[process.argv.length - 1];

// The REPL server reads nothing of its own: only its eval is used, cell by cell. What it writes is its report of
// an error (the REPL sends a cell's exception to its domain, whose handler writes it out instead of calling back):
// that goes to stderr, and it ends the running cell as one that threw.
let running = null;
const reports = new Writable({
  write(chunk, _encoding, done) {
    if (chunk.length) {
      process.stderr.write(tidy(chunk.toString('utf8')));
      if (running) running(1);
    }
    done();
  },
});
const server = repl.start({
  input: new PassThrough(),
  output: reports,
  prompt: '',
  terminal: false,
  useGlobal: true,
  breakEvalOnSigint: true,
});

// While a cell's synchronous part runs, the REPL's SIGINT watchdog (`breakEvalOnSigint`) interrupts it; it only
// works with no SIGINT listener of ours installed, so ours is removed for that part. Ours covers the rest: during a
// cell that awaits, it hands the signal to the REPL server, whose own handler rejects the wait; between cells an
// interrupt has nothing to stop and is ignored.
function onInterrupt() {
  if (running) server.emit('SIGINT');
}
process.on('SIGINT', onInterrupt);

function endCell(tag, status) {
  fs.writeSync(1, `${END}${tag}${END}${status}\n`);
}

function show(value) {
  if (value !== undefined) {
    process.stdout.write(util.inspect(value, { colors: false }) + '\n');
  }
}

function runCell(tag, source) {
  return new Promise((resolve) => {
    running = resolve;
    process.removeListener('SIGINT', onInterrupt);
    try {
      server.eval(source, server.context, `cell-${tag}`, (error, value) => {
        if (error) {
          const described = error instanceof Error && error.stack ? error.stack : util.inspect(error);
          process.stderr.write(tidy(`Uncaught ${described}`) + '\n');
          resolve(1);
        } else {
          show(value);
          resolve(0);
        }
      });
    } finally {
      process.on('SIGINT', onInterrupt);
    }
  });
}

// Requests: read from a descriptor a cell cannot drain through process.stdin (which is left unopened).
let buffered = Buffer.alloc(0);
let busy = false;

async function drain() {
  if (busy) return;
  busy = true;
  try {
    for (;;) {
      const newline = buffered.indexOf(10);
      if (newline < 0) break;
      const [tag, size] = buffered.subarray(0, newline).toString('ascii').trim().split(' ');
      const end = newline + 1 + Number(size);
      if (buffered.length < end) break;
      const source = buffered.subarray(newline + 1, end).toString('utf8');
      buffered = buffered.subarray(end);
      let status = 1;
      try {
        status = await runCell(tag, source);
      } catch (error) {
        process.stderr.write(`${error}\n`);
      } finally {
        running = null;
      }
      endCell(tag, status);
    }
  } finally {
    busy = false;
  }
}

const requests = fs.createReadStream(null, { fd: 0, highWaterMark: 65536 });
requests.on('data', (chunk) => {
  buffered = Buffer.concat([buffered, chunk]);
  drain();
});
requests.on('end', () => process.exit(0));

endCell(readyTag, 'node');
