"""Make a phrase file (adapt/realistic/phrases.py) with any OpenAI-compatible chat endpoint (stdlib urllib).

  python -m adapt.realistic.phrases --candidates runs/s3a_fm/candidates.json --out phrases.json \\
      --base-url https://api.openai.com/v1 --model gpt-4o-mini      # key: $OPENAI_API_KEY
  python -m adapt.realistic.phrases --names "gym shoe,sandal,boot" --out phrases.json --base-url http://localhost:8000/v1 --model local

Each group of competing concepts (a cluster's top voted words from the run's candidates.json, or
the --names list) is sent as one prompt (PROMPT below, with a one-shot example), `repeats` times at
`temperature` (official setup: 3 times at 0.7); an answer that does not parse is asked again up to
`retries` times, then that repetition is skipped with a warning. The answer must be one JSON
object {concept: [phrases]}; phrases of every repetition and group are appended (their frequency
is their weight). POST {base_url}/chat/completions with {"model", "messages", "temperature"}; the
key (optional for local servers) is read from the environment variable named by --api-key-env.
Defaults for --base-url and --model: $ADAPT_LLM_BASE_URL, $ADAPT_LLM_MODEL.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from adapt.data.classes import normalise
from adapt.realistic.phrase_file import PhraseError, write_phrase_file
from adapt.vocab.vocabulary import load_vocabulary

SYSTEM = "You are a careful visual describer. You answer with JSON only."
PROMPT = """List visual descriptive phrases for each concept below: short phrases naming parts, shapes, \
colours, textures, materials or typical settings that a photo of it would show and that tell it \
apart from the other concepts listed with it. Give 5 to 10 phrases per concept. Answer with one \
JSON object mapping each concept name, exactly as written, to a list of phrases.

Example.
Concepts:
- lorikeet: a small brightly colored Australasian parrot having a brush-tipped tongue for feeding on nectar
- goldfinch: small European finch having a crimson face and yellow-and-black wings
Answer:
{{"lorikeet": ["rainbow plumage", "blue head", "orange curved beak", "green back", "feeding on flowers"], \
"goldfinch": ["red face mask", "yellow wing bars", "black and white head", "small conical beak", \
"perched on thistles"]}}

Concepts:
{concepts}
Answer:
"""


def prompt_for(group: list[dict]) -> str:
    """group: [{"name": str, "definitions": [str]}] -> the user message."""
    lines = [f"- {c['name']}: " + "; ".join(c.get("definitions") or []) for c in group]
    return PROMPT.format(concepts="\n".join(line.rstrip(": ") for line in lines))


class _RefuseRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would resend the Authorization header to the new host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise PhraseError(f"{req.full_url}: HTTP {code} redirect to {urllib.parse.urlsplit(newurl).netloc}"
                          f" not followed (the API key is sent only to the host you name); give the "
                          f"final endpoint as --base-url if you trust it")


_OPENER = urllib.request.build_opener(_RefuseRedirect)


def redact(text: str, key: str | None) -> str:
    """`text` with every occurrence of the key (as is, or percent/JSON-escaped) replaced."""
    if not key:
        return text
    for form in {key, urllib.parse.quote(key, safe=""), json.dumps(key)[1:-1]}:
        text = text.replace(form, "[API key redacted]")
    return text


def chat(base_url: str, model: str, key: str | None, user: str, temperature: float,
         timeout: float = 60.0) -> str:
    """One chat completion; errors are PhraseError lines that never contain the key."""
    try:
        return redact(_chat(base_url, model, key, user, temperature, timeout), key)
    except PhraseError as e:
        raise PhraseError(redact(str(e), key)) from None


def _chat(base_url, model, key, user, temperature, timeout) -> str:
    body = json.dumps({"model": model, "temperature": temperature,
                       "messages": [{"role": "system", "content": SYSTEM},
                                    {"role": "user", "content": user}]}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(base_url.rstrip("/") + "/chat/completions", body, headers)
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            reply = json.loads(r.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        raise PhraseError(f"{base_url}: HTTP {e.code}: {e.read()[:300]!r}") from None
    except (urllib.error.URLError, TimeoutError) as e:
        raise PhraseError(f"{base_url}: cannot reach the endpoint ({e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PhraseError(f"{base_url}: the reply is not JSON ({e})") from None
    try:
        return reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise PhraseError(f"{base_url}: not a chat-completions reply: {str(reply)[:300]}") from None


def parse_answer(text: str, names: list[str]) -> dict[str, list[str]]:
    """The JSON object in an answer -> {name (as given): phrases}; raises ValueError if none."""
    start, end = text.find("{"), text.rfind("}")
    obj = json.loads(text[start:end + 1]) if 0 <= start < end else None
    if not isinstance(obj, dict):
        raise ValueError("no JSON object in the answer")
    by_norm = {normalise(n): n for n in names}
    out = {}
    for k, v in obj.items():
        if normalise(str(k)) in by_norm and isinstance(v, list):
            out[by_norm[normalise(str(k))]] = [str(p).strip() for p in v if str(p).strip()]
    if not out:
        raise ValueError("the answer names none of the concepts")
    return out


def generate(groups: list[list[dict]], *, base_url: str, model: str, key: str | None,
             repeats: int = 3, temperature: float = 0.7, retries: int = 2, timeout: float = 60.0,
             log=print) -> dict[str, list[str]]:
    phrases: dict[str, list[str]] = {}
    for gi, group in enumerate(groups):
        names = [c["name"] for c in group]
        for r in range(repeats):
            for attempt in range(retries + 1):
                try:
                    got = parse_answer(chat(base_url, model, key, prompt_for(group), temperature,
                                            timeout), names)
                    break
                except ValueError as e:  # PhraseError (HTTP) is a ValueError too: stop at once
                    if isinstance(e, PhraseError):
                        raise
                    log(f"group {gi} repeat {r}: unparsable answer ({e}), attempt {attempt + 1}")
            else:
                log(f"warning: group {gi} repeat {r} skipped after {retries + 1} unparsable answers")
                continue
            for name, ps in got.items():
                phrases.setdefault(name, []).extend(ps)
    return phrases


def _groups(args) -> list[list[dict]]:
    if args.candidates:
        clusters = json.load(open(args.candidates))["clusters"]
        return [c["candidates"] for c in clusters if c["candidates"]]
    vocab = load_vocabulary(args.vocabulary)
    index = vocab.index()
    groups = []
    for part in args.names.split(";"):
        names = [n.strip() for n in part.split(",") if n.strip()]
        groups.append([{"name": n, "definitions": list(vocab.entries[index[normalise(n)]].definitions)
                        if normalise(n) in index else []} for n in names])
    return groups


def add_endpoint_arguments(p) -> None:
    """The command-line options every LLM file maker shares: output, endpoint, model, sampling."""
    p.add_argument("--out", required=True)
    p.add_argument("--base-url", default=os.environ.get("ADAPT_LLM_BASE_URL"))
    p.add_argument("--model", default=os.environ.get("ADAPT_LLM_MODEL"))
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--temperature", type=float, default=0.7)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m adapt.realistic.phrases", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--candidates", help="a run's candidates.json (groups = clusters' top words)")
    src.add_argument("--names", help="concepts, comma-separated; ';' separates groups")
    p.add_argument("--vocabulary", default="wordnet", help="definitions for --names")
    add_endpoint_arguments(p)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    if not args.base_url or not args.model:
        p.error("give --base-url and --model (or ADAPT_LLM_BASE_URL / ADAPT_LLM_MODEL)")
    try:
        groups = _groups(args)
        phrases = generate(groups, base_url=args.base_url, model=args.model,
                           key=os.environ.get(args.api_key_env), repeats=args.repeats,
                           temperature=args.temperature, retries=args.retries, timeout=args.timeout,
                           log=lambda m: print(m, file=sys.stderr))
    except (ValueError, OSError) as e:
        print(f"adapt.realistic.phrases: error: {e}", file=sys.stderr)
        return 2
    generator = dict(base_url=args.base_url, model=args.model, temperature=args.temperature,
                     repeats=args.repeats, prompt_sha256=hashlib.sha256((SYSTEM + PROMPT).encode()).hexdigest(),
                     created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     groups=len(groups))
    write_phrase_file(args.out, phrases, generator)
    print(f"wrote {args.out}: {len(phrases)} concepts, {sum(map(len, phrases.values()))} phrases")
    return 0
