"""The official OpenAI Python SDK against `sparring serve` (run by tests/serve_http.rs, `openai_python_sdk`).

Usage: python3 tests/openai_sdk.py BASE_URL API_KEY   (e.g. http://127.0.0.1:8080/v1 sesame)

Checks a completion, a streamed one (its deltas add up to the unstreamed text at temperature 0), `n = 2`, a wrong
model (404 -> openai.NotFoundError) and a missing or wrong token (401 -> openai.AuthenticationError).
"""

import sys

import openai

MODEL = "sparring-defender"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def main() -> None:
    base_url, key = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)

    models = [m.id for m in client.models.list()]
    assert MODEL in models, models

    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0, max_tokens=16)
    text = r.choices[0].message.content
    assert text, r
    assert r.choices[0].finish_reason in ("stop", "length"), r
    assert r.usage is not None and r.usage.completion_tokens >= 1, r

    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        temperature=0,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                parts.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    assert "".join(parts) == text, ("".join(parts), text)
    assert finish in ("stop", "length"), finish
    assert usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage

    r2 = client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2, seed=3, temperature=0.9, max_tokens=8)
    assert len(r2.choices) == 2 and {c.index for c in r2.choices} == {0, 1}, r2

    try:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES, max_tokens=2)
        raise AssertionError("a wrong model was accepted")
    except openai.NotFoundError:
        pass

    for bad_key in ("", "wrong"):
        anon = openai.OpenAI(base_url=base_url, api_key=bad_key or "unused", max_retries=0)
        if not bad_key:
            # No Authorization header at all.
            anon = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0,
                                 default_headers={"Authorization": ""})
        try:
            anon.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
            raise AssertionError(f"a request with key {bad_key!r} was accepted")
        except openai.AuthenticationError:
            pass

    print("openai_sdk.py: ok")


if __name__ == "__main__":
    main()
