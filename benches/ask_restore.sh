#!/bin/bash
# Second `ask` in a new process: restored KV state vs cold (--no-saved-kv on a copy of the
# same store), both models; one JSON line each. Run from the repository root after
# `cargo build --release` (e.g. `taskset -c 0 bash benches/ask_restore.sh`).
set -e
P="${PAGEMIND:-target/release/pagemind} --threads ${THREADS:-1}"
for m in smollm2-135m-instruct-q4_1 qwen2.5-coder-1.5b-instruct-q4_k_m; do
  H=$(mktemp -d); ln -s "${PAGEMIND_MODELS:-$HOME/.local/share/pagemind/models}" $H/models
  $P --home $H ask --json --agent a --model $m --max-steps 2 "My sister Ines lives in Porto and I have a cat named Biscuit." > /dev/null 2>&1
  C=$(mktemp -d); cp -a $H/. $C/
  for mode in warm cold; do
    if [ $mode = warm ]; then HH=$H; X=""; else HH=$C; X="--no-saved-kv"; fi
    $P --home $HH ask --json --agent a --model $m --max-steps 2 $X "Where does my sister live?" 2>/dev/null | python3 -c "
import sys,json
ls=[json.loads(l) for l in sys.stdin]
s=ls[0]; t=ls[-1]['turn']
r=(t.get('kv_restore') or {})
print(json.dumps({'model':'$m','mode':'$mode','prompt_tokens':s['prompt_tokens'],'evaluated':s['tokens_evaluated'],'reused':s['tokens_reused'],'prefill_ms':round(s['prompt_ms']),'restore_ms':round(1000*r.get('seconds',0)),'restore_mb':round(r.get('bytes',0)/1e6,1),'ttft_ms':round(s['prompt_ms']+1000*r.get('seconds',0))}))
"
  done
done
