#!/usr/bin/env bash
# The OML protocol end to end, through the `oml` command line, on a tiny model (the llama-tiny test fixture with a
# 512-token word tokenizer): an owner registers a model; three hosts license fingerprinted copies; host A serves
# paying users with permits and commits usage; host B serves without permits and is audited, claimed against and
# slashed; host C's copy leaks to an endpoint of unknown origin and the trace names C. Along the way, the attacks of
# issue 11 fail: replayed and unfunded permits are refused before serving, a rerun of the claim does nothing twice,
# fresh accounts with dummy models cannot vote, and a consistently rewritten ledger is refused.
#
#   scripts/protocol-scenario.sh           the embedded ledger (a SQLite file)
#   scripts/protocol-scenario.sh --chain   the Solidity contracts on a local anvil node: the script starts anvil
#                                          (npm @foundry-rs/anvil in contracts/node_modules, or $OML_ANVIL) on a free
#                                          127.0.0.1 port, deploys, runs the same story, prints the chain id, the
#                                          contract addresses and the final balances, and stops the node by its pid.
# Run after scripts/setup.sh (and contracts/build.sh for --chain). Everything lands in
# ${OML_SCENARIO_DIR:-./oml-protocol-scenario}; servers listen on 127.0.0.1 only and are stopped on exit.
set -euo pipefail
mode=ledger
case "${1:-}" in
  "") ;;
  --chain) mode=chain ;;
  *) echo "usage: $0 [--chain]" >&2; exit 2 ;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
dll="$root/src/Oml.Cli/bin/Release/net10.0/oml.dll"
[ -f "$dll" ] || dotnet build src/Oml.Cli -c Release -nologo -v q >/dev/null
oml() { dotnet "$dll" "$@"; }

work="${OML_SCENARIO_DIR:-$root/oml-protocol-scenario}"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
export OML_PASSPHRASE="${OML_PASSPHRASE:-oml scenario passphrase}"   # every keystore and the fingerprint pool use it
export OML_PIN_DIR="$work/pins"   # the ledger heads this demo pins (normally ~/.config/oml/ledger-pins)
export OML_CHAIN_JOURNAL="$work/chain-journal"   # with --chain: transactions awaiting receipts (normally ~/.config/oml/chain-journal)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
if [ "$mode" = chain ]; then
  anvil="${OML_ANVIL:-$(ls "$root"/contracts/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | head -n 1)}"
  [ -n "$anvil" ] || anvil="$(command -v anvil || true)"
  [ -x "$anvil" ] || { echo "anvil not found: run contracts/build.sh (npm @foundry-rs/anvil) or set OML_ANVIL" >&2; exit 1; }
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  rpc="http://127.0.0.1:$port"
  "$anvil" --host 127.0.0.1 --port "$port" --chain-id 31337 --silent --prune-history 512 >anvil.log 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 300); do
    python3 - "$rpc" <<'PY' 2>/dev/null && break
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode(), {"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=1).read()
PY
    kill -0 "${pids[0]}" 2>/dev/null || { cat anvil.log; exit 1; }
    sleep 0.1
  done
  echo "anvil (pid ${pids[0]}) serves chain 31337 at $rpc"
  L=(--chain "$rpc" --deployment deployment.json)
else
  L=(--ledger ledger.db)
fi
# Waits out a protocol window: on the ledger, wall-clock time; on anvil, the node's clock moves on and a block is mined.
pass_time() { if [ "$mode" = chain ]; then oml chain advance --chain "$rpc" --seconds "$1"; else sleep "$1"; fi; }
# Starts `oml host serve ... --url-file F` in the background (not in a subshell, so that the trap knows its pid),
# waits until it listens, and sets $url to its base URL.
serve() {
  local name="$1"; shift
  dotnet "$dll" host serve --url-file "$name.url" "$@" >"$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 600); do [ -s "$name.url" ] && break; kill -0 "$pid" 2>/dev/null || { cat "$name.log"; exit 1; }; sleep 0.1; done
  [ -s "$name.url" ] || { echo "server $name did not start"; exit 1; }
  url="$(cat "$name.url")"
  echo "serving $name at $url (pid $pid)"
}

step "accounts, a tiny base model and a 16-key fingerprint pool (PBKDF2 cost lowered for the demo: --insecure-kdf)"
for who in treasury owner hostA hostB hostC user prover; do
  oml account new --keystore "$who.json" --kdf-iterations 10000 >"$who.addr"
  printf '%-9s %s\n' "$who" "$(cat "$who.addr")"
done
mkdir -p base
cp "$root"/tests/Oml.Models.Tests/fixtures/models/llama-tiny/{config.json,generation_config.json,model.safetensors} base/
cp "$root/scripts/fixtures/tiny-tokenizer.json" base/tokenizer.json
oml fingerprints generate --model base --strategy random-word --random-word-keys --count 16 --out pool.omlfp --kdf-iterations 10000 --insecure-kdf

if [ "$mode" = chain ]; then
  step "ether for gas (a local node's helper), then the contracts, deployed by the treasury (short rebut window for the demo)"
  oml chain fund --chain "$rpc" --to $(cat treasury.addr owner.addr hostA.addr hostB.addr hostC.addr user.addr prover.addr)
  oml chain deploy --chain "$rpc" --keystore treasury.json --out deployment.json --set RebutWindowSeconds=2 --registration-delay 2
  step "money"
else
  step "genesis (short rebut window for the demo) and money"
  oml protocol init "${L[@]}" --keystore treasury.json --set RebutWindowSeconds=2
fi
for who in owner hostA hostB hostC user prover; do
  oml owner mint "${L[@]}" --keystore treasury.json --to "$(cat "$who.addr")" --amount 10000 >/dev/null
done

step "the owner registers the model"
oml owner register "${L[@]}" --keystore owner.json --model-id tiny --model base --price 10 --min-collateral 1000

step "three hosts license it; the owner OMLizes a copy for each (6 of the 16 pool fingerprints embedded)"
for h in hostA hostB hostC; do
  oml host apply "${L[@]}" --keystore "$h.json" --model-id tiny --collateral 2000 --endpoint "http://127.0.0.1/$h" >/dev/null
  oml owner deliver "${L[@]}" --keystore owner.json --model-id tiny --host "$(cat "$h.addr")" --pool pool.omlfp \
    --allocation random:6 --base base --out "copy-$h" --subset-out "subset-$h.omlfp" 2>"deliver-$h.log"
  oml host acknowledge "${L[@]}" --keystore "$h.json" --model-id tiny --model "copy-$h" >/dev/null
done

step "host A serves with permits; a user escrows funds with A and asks three questions"
serve a "${L[@]}" --keystore hostA.json --model-id tiny --model copy-hostA --receipts receipts-a
urlA="$url"
oml user deposit "${L[@]}" --keystore user.json --host "$(cat hostA.addr)" --amount 100
for q in " apple bread" " cloud dance" " eagle flame"; do
  oml user ask "${L[@]}" --keystore user.json --endpoint "$urlA" --query "$q" --model-id tiny --host "$(cat hostA.addr)" --fee 10
done
echo "-- a permit for another query is refused:"
oml user permit "${L[@]}" --keystore user.json --model-id tiny --host "$(cat hostA.addr)" --query " other words" --out other-permit.json >/dev/null
oml user ask "${L[@]}" --keystore user.json --endpoint "$urlA" --query " apple" --permit other-permit.json || true
echo "-- a replayed permit is refused (A never receipts a permit twice):"
oml user permit "${L[@]}" --keystore user.json --model-id tiny --host "$(cat hostA.addr)" --query " kind lamp" --fee 10 --out once.json >/dev/null
oml user ask "${L[@]}" --keystore user.json --endpoint "$urlA" --query " kind lamp" --permit once.json >/dev/null
oml user ask "${L[@]}" --keystore user.json --endpoint "$urlA" --query " kind lamp" --permit once.json || true
echo "-- a prover posing as a user, with nothing escrowed with A, or paying 0, is refused (no receipt to claim on):"
oml user ask "${L[@]}" --keystore prover.json --endpoint "$urlA" --query " apple bread" --model-id tiny --host "$(cat hostA.addr)" --fee 10 || true
oml user ask "${L[@]}" --keystore prover.json --endpoint "$urlA" --query " apple bread" --model-id tiny --host "$(cat hostA.addr)" --fee 0 || true

step "host A commits its usage: permits settled, fees split; A and the owner withdraw"
oml host commit-usage "${L[@]}" --keystore hostA.json --model-id tiny --receipts receipts-a
oml host withdraw "${L[@]}" --keystore hostA.json
oml owner withdraw "${L[@]}" --keystore owner.json

step "host B serves WITHOUT permits; the prover audits it with B's unrevealed keys and claims"
serve b "${L[@]}" --keystore hostB.json --model-id tiny --model copy-hostB --receipts receipts-b --no-permits
urlB="$url"
oml prover audit "${L[@]}" --endpoint "$urlB" --model-id tiny --host "$(cat hostB.addr)" --subset subset-hostB.omlfp --max-queries 3 --ticket ticket.json
oml prover claim "${L[@]}" --keystore prover.json --ticket ticket.json --bond 100
echo "-- run again (as after an interruption): the claim is found by its commitment, nothing is submitted twice:"
oml prover claim "${L[@]}" --keystore prover.json --ticket ticket.json --bond 100
echo "-- B has no settled permit to show:"
oml host rebut "${L[@]}" --keystore hostB.json --claim 0 --receipts receipts-b || true

step "the rebut window passes; the claim settles: B is slashed, the prover rewarded"
pass_time 3
oml prover settle "${L[@]}" --keystore prover.json --claim 0
oml prover withdraw "${L[@]}" --keystore prover.json

step "host C's copy leaks to an endpoint of unknown origin (a plain server); the owner traces it"
serve leak --plain --model copy-hostC
urlX="$url"
oml prover trace "${L[@]}" --keystore owner.json --endpoint "$urlX" --model-id tiny --pool pool.omlfp

step "governance is weighted by stake: the owner stakes and proposes; a fresh account with a dummy model cannot vote"
oml gov stake "${L[@]}" --keystore owner.json --amount 2000
oml gov propose "${L[@]}" --keystore owner.json --set MinBond=150 --description "a higher claim bond"
oml account new --keystore sybil.json --kdf-iterations 10000 >sybil.addr
[ "$mode" = chain ] && oml chain fund --chain "$rpc" --to "$(cat sybil.addr)" >/dev/null
oml owner register "${L[@]}" --keystore sybil.json --model-id dummy --weights-digest sha256:dummy --price 1 >/dev/null
oml gov vote "${L[@]}" --keystore sybil.json --proposal 0 --support no || true

step "the protocol's state"
oml protocol status "${L[@]}"

step "final balances"
oml protocol status "${L[@]}" --json >status.json
python3 - status.json "$mode" <<'PY'
import json, pathlib, sys
st = json.load(open(sys.argv[1]))
names = {pathlib.Path(p).read_text().strip().lower(): p[:-5] for p in map(str, pathlib.Path(".").glob("*.addr"))}
if sys.argv[2] == "chain":
    d = json.load(open("deployment.json"))
    print(f"chain id       {d['ChainId']}")
    for k in ("Token", "Protocol", "Claims", "Governance"):
        print(f"Oml{k:<11} {d[k]}")
print(f"{'account':<9} {'address':<42} {'balance':>8} {'escrowed':>8} {'withdrawable':>12} {'locked':>7} {'staked':>7}")
for addr, a in sorted(st["accounts"].items(), key=lambda kv: names.get(kv[0], "~" + kv[0])):
    print(f"{names.get(addr, '-'):<9} {addr:<42} {a['balance']:>8} {a['escrowed']:>8} {a['withdrawable']:>12} {a['locked']:>7} {a['staked']:>7}")
PY
if [ "$mode" = chain ]; then
  echo
  echo "(the anvil node, pid ${pids[0]}, is stopped on exit)"
  exit 0
fi

step "someone who holds the ledger file rewrites it consistently (every later hash recomputed): it is refused"
python3 - ledger.db <<'PY'
import hashlib, sqlite3, struct, sys
db = sqlite3.connect(sys.argv[1])
for t in ("events_no_update", "events_no_delete"):
    db.execute(f"DROP TRIGGER IF EXISTS {t}")
F = lambda b: struct.pack(">I", len(b)) + b
rows = db.execute("SELECT seq, type, payload, ts, prev FROM events ORDER BY seq").fetchall()
seq = next(r[0] for r in rows if r[1] == "Mint")   # the first mint, made ten times larger
prev = rows[seq][4]
for s, typ, payload, ts, _ in rows[seq:]:
    if s == seq:
        payload = payload.replace(b'"amount":"10000"', b'"amount":"100000"')
    h = hashlib.sha256(F(b"oml/ledger-event/v1") + F(struct.pack(">q", s)) + F(prev) + F(typ.encode()) + F(struct.pack(">q", ts)) + F(payload)).digest()
    db.execute("UPDATE events SET payload = ?, prev = ?, hash = ? WHERE seq = ?", (payload, prev, h, s))
    prev = h
db.commit()
PY
oml protocol status "${L[@]}" || true
oml ledger verify "${L[@]}" || true
