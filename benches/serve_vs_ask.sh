#!/bin/bash
# A turn through `pagemind serve` (models loaded, session warm) vs `pagemind ask` (a new process,
# KV state restored from disk), same agent; per-step prompt tokens, evaluated, reused, prefill ms,
# step ms. Run from the repository root after `cargo build --release`, e.g.
# `taskset -c 0 bash benches/serve_vs_ask.sh [MODEL]`.
set -e
M=${1:-qwen2.5-coder-1.5b-instruct-q4_k_m}
P="${PAGEMIND:-target/release/pagemind} --threads ${THREADS:-1}"
H=$(mktemp -d); ln -s "${PAGEMIND_MODELS:-$HOME/.local/share/pagemind/models}" $H/models
$P --home $H ask --agent a --model $M --max-steps 2 "My sister Ines lives in Porto." > /dev/null 2>&1
s=$(date +%s.%N); $P --home $H ask --json --agent a --model $M --max-steps 2 "Where does Ines live?" 2>/dev/null | python3 -c "
import sys,json
for l in sys.stdin:
  d=json.loads(l)
  if 'step' in d: print((d['function'],d['prompt_tokens'],d['tokens_evaluated'],d['tokens_reused'],round(d['prompt_ms']),round(d['total_ms'])))
  else: print(d['turn']['kv_restore'])
"; e=$(date +%s.%N)
echo "{\"model\":\"$M\",\"ask_turn_wall_s\":$(echo "$e - $s" | bc)}"
$P --home $H serve --listen 127.0.0.1:0 --model $M > $H/serve.out 2>/dev/null &
for i in $(seq 1 60); do grep -q listening $H/serve.out 2>/dev/null && break; sleep 1; done
B=$(grep -o 'http://[0-9.:]*' $H/serve.out)
# The agent's first turn in the server restores its KV state; the second is fully warm.
for q in "And my sister's name?" "Thanks, where does she live again?"; do
python3 - "$B" "$q" <<'PY'
import sys, time, json, urllib.request
b, q = sys.argv[1], sys.argv[2]
req = urllib.request.Request(b + "/v1/chat/completions", method="POST", headers={"content-type": "application/json"},
    data=json.dumps({"model": "agent:a", "stream": False, "messages": [{"role": "user", "content": q}]}).encode())
t0 = time.time(); first = None
with urllib.request.urlopen(req) as r:
    d = json.load(r)
    print([(s["function"], s["prompt_tokens"], s["tokens_evaluated"], s["tokens_reused"], round(s["prompt_ms"]), round(s["total_ms"])) for s in d["pagemind"]["steps"]])
total = time.time() - t0
print(json.dumps({"serve_turn_wall_s": round(total, 2), "serve_first_token_s": round(first or total, 2)}))
PY
done
kill %1; wait
