#!/usr/bin/env python3
"""llama.cpp's speed on a GGUF file with every layer on the GPU, for `pagemind --device cuda bench
decode --reference benches/llama_cpp_gpu_speed.py`.

The protocol is `shared/bench/llama_cpp_speed.py`'s, unchanged (synthetic prompt of P ids
`(i*37) % 49000 + 100`, one untimed warm-up prefill, a timed prefill after a reset, then G
single tokens `100 + j` timed one by one), with `n_gpu_layers=-1` so that the weights, the KV
cache and the compute are on the GPU. Needs llama-cpp-python built with CUDA
(`CMAKE_ARGS="-DGGML_CUDA=on"`; `.ci/gpu-bench` builds it on the GPU machine).

Usage: llama_cpp_gpu_speed.py MODEL.gguf [--prompt-tokens 512] [--gen-tokens 64] [--threads T]
Prints one JSON line, like the CPU script.
"""
import argparse
import json
import time

from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--prompt-tokens", type=int, default=512)
ap.add_argument("--gen-tokens", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()

llm = Llama(model_path=a.model, n_ctx=a.prompt_tokens + a.gen_tokens + 16, n_threads=a.threads,
            n_threads_batch=a.threads, n_batch=a.prompt_tokens, n_ubatch=a.prompt_tokens,
            n_gpu_layers=-1, verbose=False)
prompt = [(i * 37) % 49000 + 100 for i in range(1, a.prompt_tokens + 1)]
llm.eval(prompt)  # warm-up
llm.reset()
t = time.perf_counter()
llm.eval(prompt)
prefill = time.perf_counter() - t
t = time.perf_counter()
for j in range(a.gen_tokens):
    llm.eval([100 + j])
decode = time.perf_counter() - t
print(json.dumps({"engine": "llama.cpp", "device": "cuda", "model": a.model, "threads": a.threads,
                  "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens,
                  "prefill_tok_s": round(a.prompt_tokens / prefill, 2),
                  "decode_tok_s": round(a.gen_tokens / decode, 2)}))
