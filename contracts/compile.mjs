// Compiles contracts/src and contracts/test with solcjs (the npm `solc` package: WebAssembly, fully offline) and
// writes one JSON artifact per contract (abi, bytecode, deployedBytecode, runtime size) into contracts/out, plus
// out/build-info.json (compiler version and settings). Deterministic: same sources and compiler, same bytes.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");
const root = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.join(root, "out");

function collect(dir) {
  return fs.readdirSync(path.join(root, dir)).filter((f) => f.endsWith(".sol")).sort().map((f) => `${dir}/${f}`);
}
const files = [...collect("src"), ...collect("test")];
const sources = Object.fromEntries(files.map((f) => [f, { content: fs.readFileSync(path.join(root, f), "utf8") }]));
const settings = {
  optimizer: { enabled: true, runs: 200 },
  viaIR: true,
  evmVersion: "cancun",
  metadata: { bytecodeHash: "none", appendCBOR: false },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};
const input = { language: "Solidity", sources, settings };
function findImports(p) {
  const candidates = [path.join(root, "node_modules", p), path.join(root, p)];
  for (const c of candidates) if (fs.existsSync(c)) return { contents: fs.readFileSync(c, "utf8") };
  return { error: `not found: ${p}` };
}
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
let failed = false;
for (const e of output.errors ?? []) {
  // OpenZeppelin's own warnings (e.g. future keywords) are not ours to fix; ours fail the build like errors.
  if (e.severity !== "error" && (e.sourceLocation?.file ?? "").startsWith("@openzeppelin/")) continue;
  console.error(e.formattedMessage.trim());
  if (e.severity !== "error") failed = true;
  if (e.severity === "error") failed = true;
}
if (failed) process.exit(1);

const LIMIT = 24576;
fs.rmSync(outDir, { recursive: true, force: true });
fs.mkdirSync(outDir, { recursive: true });
let tooLarge = false;
for (const f of files) {
  for (const [name, c] of Object.entries(output.contracts[f] ?? {})) {
    const code = c.evm.bytecode.object;
    if (!code || c.evm.deployedBytecode.object.length <= 16) continue; // interfaces and internal libraries
    const runtime = c.evm.deployedBytecode.object;
    const size = runtime.length / 2;
    const artifact = { contractName: name, sourceName: f, abi: c.abi, bytecode: "0x" + code, deployedBytecode: "0x" + runtime, runtimeSize: size };
    fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
    console.log(`${name.padEnd(16)} ${String(size).padStart(6)} bytes runtime${size > LIMIT ? "  EXCEEDS the 24,576-byte limit" : ""}`);
    if (size > LIMIT && f.startsWith("src/")) tooLarge = true;
  }
}
// SHA-256 of every source compiled, so that a test can tell when the committed artifacts are stale.
const hashes = Object.fromEntries(files.map((f) => [f, crypto.createHash("sha256").update(fs.readFileSync(path.join(root, f))).digest("hex")]));
const openzeppelin = require("@openzeppelin/contracts/package.json").version;
fs.writeFileSync(path.join(outDir, "build-info.json"), JSON.stringify({ compiler: solc.version(), openzeppelin, settings, sources: hashes }, null, 2) + "\n");
if (tooLarge) process.exit(1);
