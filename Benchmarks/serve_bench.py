#!/usr/bin/env python3
"""Serving throughput and latency: `llm-gpu serve` against llama.cpp's `llama-server`, same model,
same threads, `--parallel N` / `-np N`, the two servers alternating per client count.

For N concurrent clients (1, 4, 8, 16 by default) each client streams completions of --gen-tokens
tokens after a prompt of about --prompt-tokens tokens (greedy, EOS ignored where the server
allows it), and the script reports aggregate generated tokens/s, time to first token p50/p99 and
inter-token latency p50/p99 (gaps between streamed chunks). Then the prefix cache: a cold request
with a ~400-token system prompt, and a warm one sharing it (time to first token of each).

    swift build -c release && Benchmarks/build-llama-cpp.sh
    Benchmarks/serve_bench.py                         # SmolLM2, 2 threads
    Benchmarks/serve_bench.py --clients 1 8 --rounds 2

Standard library only (http.client, threads): no client library's overhead in the figures.
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORDS = ("river stone light garden window music paper orange winter market bridge silver forest "
         "candle harbor meadow engine letter mountain story").split()


def prompt_text(words, seed):
    # ~1.3 tokens per word for these words with SmolLM2's tokenizer: words ≈ tokens / 1.3.
    return " ".join(WORDS[(seed * 7 + k * 3) % len(WORDS)] for k in range(words))


def start(cmd, port_pattern, env=None):
    log = open(os.devnull, "w")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    port = None
    lines = []
    while time.time() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(port_pattern, line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        process.kill()
        sys.exit("server did not start: %s\n%s" % (" ".join(cmd), "".join(lines[-10:])))
    threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
    wait_healthy(port, deadline)
    return process, port


def wait_healthy(port, deadline):
    """Polls GET /health on loopback until it answers 200 or the deadline passes."""
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)


def stream(port, body):
    """One streamed completion: (time to first token, [inter-chunk gaps], completion tokens)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("HTTP %d: %s" % (r.status, r.read()[:200]))
    first, last, gaps, tokens, usage = None, None, [], 0, None
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        if not chunk.get("choices") or not chunk["choices"][0].get("text"):
            continue
        now = time.perf_counter()
        if first is None:
            first = now - t0
        else:
            gaps.append(now - last)
        last = now
        tokens += 1
    c.close()
    return first, gaps, (usage or {}).get("completion_tokens", tokens)


def load(port, clients, requests_per_client, prompt_tokens, gen_tokens, extra):
    results, lock = [], threading.Lock()

    def client(k):
        for j in range(requests_per_client):
            body = dict(prompt=prompt_text(int(prompt_tokens / 1.3), k * 100 + j), max_tokens=gen_tokens, temperature=0,
                        stream=True, stream_options={"include_usage": True}, **extra)
            r = stream(port, body)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft = sorted(r[0] for r in results)
    gaps = sorted(g for r in results for g in r[1])
    generated = sum(r[2] for r in results)
    q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
    return dict(tps=generated / wall, ttft50=q(ttft, 0.5), ttft99=q(ttft, 0.99), itl50=q(gaps, 0.5), itl99=q(gaps, 0.99))


def prefix_cache(port, extra):
    system = prompt_text(300, 999)  # ~400 tokens
    times = []
    for question in ("What is the first word?", "What is the last word?"):
        body = dict(prompt="<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n" % (system, question),
                    max_tokens=4, temperature=0, stream=True, **extra)
        times.append(stream(port, body)[0])
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/llm-gpu/SmolLM2-135M-Instruct-Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--llm-gpu", default=os.path.join(ROOT, ".build/release/llm-gpu"))
    ap.add_argument("--llama-server", default=os.path.join(os.environ.get("LLAMA_CPP_OUT", os.path.join(HERE, ".llama.cpp")), "bin/llama-server"))
    args = ap.parse_args()

    engines = {
        "llm-gpu": lambda n: ([args.llm_gpu, "serve", "--model", args.model, "--port", "0", "--threads", str(args.threads),
                               "--parallel", str(n), "--context", str(n * 1024)], r"listening on http://127\.0\.0\.1:(\d+)", {}),
        "llama-server": lambda n: ([args.llama_server, "-m", args.model, "--port", str(18700 + n), "-t", str(args.threads),
                                    "-np", str(n), "-c", str(n * 1024), "--log-disable"], None, {"ignore_eos": True}),
    }
    available = [e for e in engines if os.access(args.llm_gpu if e == "llm-gpu" else args.llama_server, os.X_OK)]
    print("| engine | clients | gen t/s | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    cache = {}
    for _ in range(args.rounds):
        for n in args.clients:
            for name in available:
                cmd, pattern, extra = engines[name](n)
                if pattern is None:  # llama-server: a fixed port, ready when /health says so
                    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    port = 18700 + n
                    wait_healthy(port, time.time() + 120)
                else:
                    process, port = start(cmd, pattern)
                try:
                    stream(port, dict(prompt="warm up", max_tokens=4, temperature=0, stream=True))
                    r = load(port, n, args.requests, args.prompt_tokens, args.gen_tokens, extra)
                    print("| %s | %d | %.1f | %.3f | %.3f | %.4f | %.4f |" % (name, n, r["tps"], r["ttft50"], r["ttft99"], r["itl50"], r["itl99"]),
                          flush=True)
                    if n == args.clients[0] and name not in cache:
                        cache[name] = prefix_cache(port, extra)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
    for name, (cold, warm) in cache.items():
        print("prefix cache, %s: cold TTFT %.3f s, warm %.3f s (%.2fx)" % (name, cold, warm, warm / cold))


if __name__ == "__main__":
    main()
