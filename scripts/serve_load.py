#!/usr/bin/env python3
"""One load generator for OpenAI-compatible chat-completion servers (`sparring serve`, llama.cpp's server, vLLM):
N requests at concurrency C over the same prompts, standard library only. Prints one JSON line: completion tokens/s
(from each response's `usage`), requests/s and the p50/p99 latency.

usage: serve_load.py URL MODEL [--concurrency C] [--requests N] [--max-tokens T] [--temperature X]
(URL is the server's base, e.g. http://127.0.0.1:8080/v1)"""
import argparse, http.client, json, threading, time, urllib.parse

PROMPTS = [
    "Write a short note about the history of bread.",
    "Explain how a bicycle gear works.",
    "Describe a walk through a forest in autumn.",
    "What should I pack for a weekend of hiking?",
    "Tell me about the planets of the solar system.",
    "How do I make a good cup of tea?",
    "Summarize the rules of chess for a beginner.",
    "Write a friendly letter to a new neighbour.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("model")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.0)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    path = u.path.rstrip("/") + "/chat/completions"
    lock = threading.Lock()
    nxt = [0]
    lat, toks, errors = [], [], []

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        while True:
            with lock:
                i = nxt[0]
                if i >= a.requests:
                    break
                nxt[0] += 1
            body = json.dumps({
                "model": a.model,
                "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                "max_tokens": a.max_tokens,
                "temperature": a.temperature,
                "seed": i,
            })
            t = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                dt = time.perf_counter() - t
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
                n = json.loads(data)["usage"]["completion_tokens"]
                with lock:
                    lat.append(dt)
                    toks.append(n)
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                with lock:
                    errors.append(str(e))
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)

    threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    q = lambda p: round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None
    print(json.dumps({
        "concurrency": a.concurrency, "requests": len(lat), "errors": len(errors),
        "completion_tokens": sum(toks), "wall_s": round(wall, 3),
        "tok_per_s": round(sum(toks) / wall, 1), "req_per_s": round(len(lat) / wall, 2),
        "p50_ms": q(0.5), "p99_ms": q(0.99), "first_error": errors[0] if errors else None,
    }))


if __name__ == "__main__":
    main()
