#!/usr/bin/env python3
"""Side-by-side throughput: llm-gpu bench and llama.cpp's llama-bench on the same model and settings,
alternating in one run, plus a STREAM triad for the bandwidth roofline.

    Benchmarks/compare.py [--model PATH] [--threads 2] [--prompt-tokens 512] [--gen-tokens 128]
                          [--rounds 3] [--repetitions 3] [--backend cpu|opencl|vulkan] [--device N]
                          [--llama-bench PATH] [--llm-gpu PATH]

Prints one markdown table: mean tokens/s of each engine over the rounds, the ratio llm-gpu /
llama.cpp, and tg as a fraction of the roofline (triad GB/s / bytes of weights read per token).
With --backend opencl or vulkan, llm-gpu runs `bench --backend X` and llama-bench is the build of
that backend (`Benchmarks/build-llama-cpp.sh X`) with every layer offloaded (-ngl 99); it must
report the device in gpu_info, else it ran on its CPU backend and the run stops.
Stdlib only. Build the pieces first: `swift build -c release`, `Benchmarks/build-llama-cpp.sh [X]`."""
import argparse, json, os, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def default_model():
    cache = os.environ.get("LLM_GPU_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "llm-gpu")
    return os.path.join(cache, "SmolLM2-135M-Instruct-Q4_1.gguf")


def triad(threads):
    exe = os.path.join(HERE, ".triad")
    subprocess.run(["cc", "-O2", "-pthread", "-o", exe, os.path.join(HERE, "triad.c")], check=True)
    return float(subprocess.run([exe, str(threads)], check=True, capture_output=True, text=True).stdout)


def capture(cmd, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"compare: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def ours(args):
    cmd = [args.llm_gpu, "bench", "--model", args.model, "--backend", args.backend,
           "--threads", str(args.threads), "--prompt-tokens", str(args.prompt_tokens),
           "--gen-tokens", str(args.gen_tokens), "--repetitions", str(args.repetitions), "--json"]
    if args.backend == "cpu":
        cmd += ["--cpu-activations", args.cpu_activations]
    if args.device is not None:
        cmd += ["--device", str(args.device)]
    rows = {r["test"]: r for r in json.loads(capture(cmd))}
    return rows


def theirs_env(args):
    env = dict(os.environ)
    if args.backend == "vulkan":
        # ggml-vulkan.cpp, ggml_vk_instance_init(): without GGML_VK_VISIBLE_DEVICES it takes only
        # discrete and integrated GPUs (else the first non-CPU device), so lavapipe, a CPU-type
        # device, is skipped and llama-bench silently runs on its CPU backend.
        env.setdefault("GGML_VK_VISIBLE_DEVICES", str(args.device or 0))
    elif args.backend == "opencl" and args.device is not None:
        env.setdefault("GGML_OPENCL_DEVICE", str(args.device))
    return env


def theirs(args):
    cmd = [args.llama_bench, "-m", args.model, "-t", str(args.threads), "-p", str(args.prompt_tokens),
           "-n", str(args.gen_tokens), "-r", str(args.repetitions), "-o", "json"]
    if args.backend != "cpu":
        cmd += ["-ngl", "99"]
    out = json.loads(capture(cmd, theirs_env(args)))
    if args.backend != "cpu" and not all(r.get("gpu_info") for r in out):
        sys.exit(f"compare: {args.llama_bench} found no {args.backend} device (empty gpu_info): it ran on its CPU "
                 f"backend; run it by hand to see why")
    rows = {}
    for r in out:
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        rows[test] = r
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=default_model())
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--gen-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repetitions", type=int, default=3, help="measured runs per test and round, in each engine")
    p.add_argument("--backend", default="cpu", choices=["cpu", "opencl", "vulkan"])
    p.add_argument("--device", type=int, help="GPU device index (llm-gpu --device; llama.cpp: GGML_VK_VISIBLE_DEVICES "
                   "or GGML_OPENCL_DEVICE)")
    p.add_argument("--cpu-activations", default="int8", choices=["f32", "int8"],
                   help="llm-gpu's CPU activations: f32 (exact) or int8 (llama.cpp's rounding and integer dots)")
    p.add_argument("--llm-gpu", default=os.path.join(ROOT, ".build", "release", "llm-gpu"))
    p.add_argument("--llama-bench", help="default: Benchmarks/.llama.cpp/build[-BACKEND]/bin/llama-bench")
    args = p.parse_args()
    if args.llama_bench is None:
        build = "build" if args.backend == "cpu" else f"build-{args.backend}"
        args.llama_bench = os.path.join(HERE, ".llama.cpp", build, "bin", "llama-bench")
    for exe in (args.llm_gpu, args.llama_bench):
        if not os.access(exe, os.X_OK):
            sys.exit(f"compare: {exe} not found (swift build -c release; Benchmarks/build-llama-cpp.sh {args.backend})")

    bandwidth = triad(args.threads)
    tests = [f"pp{args.prompt_tokens}", f"tg{args.gen_tokens}"]
    samples = {(e, t): [] for e in ("llm-gpu", "llama.cpp") for t in tests}
    bytes_per_token = None
    gpu_info = ""
    for round_index in range(args.rounds):
        # Alternate which engine goes first, so drift on a shared machine hits both alike.
        order = [("llm-gpu", ours), ("llama.cpp", theirs)]
        if round_index % 2:
            order.reverse()
        for name, bench in order:
            print(f"round {round_index + 1}/{args.rounds}: {name}", file=sys.stderr)
            rows = bench(args)
            for t in tests:
                samples[(name, t)].append(rows[t]["tokens_per_s"] if name == "llm-gpu" else rows[t]["avg_ts"])
            if name == "llm-gpu":
                bytes_per_token = rows[tests[1]].get("bytes_per_token")
            else:
                gpu_info = rows[tests[0]].get("gpu_info", "")

    detail = f" (--cpu-activations {args.cpu_activations})" if args.backend == "cpu" else f" ({gpu_info}; llama.cpp -ngl 99)"
    print(f"model {os.path.basename(args.model)}, {args.threads} threads, backend {args.backend}{detail}, "
          f"{args.rounds} alternating rounds of {args.repetitions} repetitions; triad bandwidth {bandwidth:.1f} GB/s")
    print("| test | llm-gpu t/s | llama.cpp t/s | ratio | tg / roofline (llm-gpu, llama.cpp) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for t in tests:
        a, b = statistics.mean(samples[("llm-gpu", t)]), statistics.mean(samples[("llama.cpp", t)])
        roof = ""
        if t.startswith("tg") and bytes_per_token:
            limit = bandwidth * 1e9 / bytes_per_token
            roof = f"{a / limit:.0%}, {b / limit:.0%} of {limit:.0f} t/s"
        print(f"| {t} | {a:.2f} | {b:.2f} | {a / b:.2f} | {roof} |")


if __name__ == "__main__":
    main()
