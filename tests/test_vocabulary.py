"""Vocabulary files, the WordNet reader, the cached vocabulary classifier, phrase files and the
phrase command against a local stub of an OpenAI-compatible endpoint."""
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from adapt.realistic import phrases, phrases_llm, vocab_classifier
from adapt.vocab import wordnet
from adapt.vocab.vocabulary import (Entry, Vocabulary, VocabularyError, builtin_vocabulary, match_class_names,
                                    read_vocabulary, write_jsonl)
from tests.fake_model import FakeModel

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]


def test_tsv_and_jsonl_vocabularies_read_and_round_trip(tmp_path):
    tsv = tmp_path / "v.tsv"
    tsv.write_text("name\tsynset\tdefinition\n# comment\n\ngym shoe\tn03472535\ta canvas shoe\tsneaker, tennis shoe\n"
                   "sandal\n")
    v = read_vocabulary(tsv)
    assert v.names == ["gym shoe", "sandal"]
    assert v.entries[0] == Entry("gym shoe", ("n03472535",), ("a canvas shoe",), ("sneaker", "tennis shoe"))
    out = tmp_path / "v.jsonl"
    write_jsonl(v, out)
    assert read_vocabulary(out).entries == v.entries
    (tmp_path / "plain.txt").write_text("cat\ndog\n")
    assert read_vocabulary(tmp_path / "plain.txt").names == ["cat", "dog"]
    assert v.names_sha256() != read_vocabulary(tmp_path / "plain.txt").names_sha256()


@pytest.mark.parametrize("name,text,message", [
    ("dup.txt", "gym shoe\nsandal\nGym_Shoe\n", r"dup.txt:3: duplicate name 'Gym_Shoe' \(also on line 1"),
    ("empty.tsv", "cat\n\tn123\tno name\n", r"empty.tsv:2: empty name"),
    ("bad.jsonl", '{"name": "cat"}\n{"name": "dog",\n', r"bad.jsonl:2: not valid JSON"),
    ("keys.jsonl", '{"name": "cat", "colour": "red"}\n', r"unknown keys \['colour'\]"),
    ("type.jsonl", '{"name": "cat", "synset": 12}\n', r"'synset' must be a string or a list"),
    ("blank.jsonl", '{"name": "  "}\n', r"blank.jsonl:1: empty name"),
    ("none.txt", "# only a comment\n", r"has no entries"),
])
def test_vocabulary_errors_name_the_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(VocabularyError, match=message):
        read_vocabulary(tmp_path / name)
    with pytest.raises(VocabularyError, match="cannot read"):
        read_vocabulary(tmp_path / "missing.txt")


def _line(offset, words, pointers, gloss):
    ws = " ".join(f"{w} 0" for w in words)
    ps = " ".join(f"{s} {o} n 0000" for s, o in pointers)
    return f"{offset} 03 n {len(words):02x} {ws} {len(pointers):03d} {ps} | {gloss}  \n"


def test_wordnet_reader_and_visual_filter_on_a_small_database(tmp_path):
    lines = ["  1 This software and database is being provided\n",
             _line("00003553", ["whole", "unit"], [], "an assemblage of parts"),
             _line("00007846", ["person"], [("@", "00003553")], "a human being"),
             _line("00000100", ["shoe"], [("@", "00003553")], 'footwear; "new shoes"'),
             _line("00000101", ["gym_shoe", "sneaker"], [("@", "00000100")], "a canvas shoe"),
             _line("00000102", ["Sneaker"], [("@", "00000100")], "a quiet shoe"),
             _line("00000103", ["accountant"], [("@", "00007846")], "someone who keeps accounts"),
             _line("00000104", ["Paris"], [("@i", "00000100")], "a city (an instance)"),
             _line("00000105", ["idea"], [], "an abstraction")]
    (tmp_path / "data.noun").write_text("".join(lines))
    syn = wordnet.read_noun_synsets(tmp_path)
    assert syn["00000101"].lemmas == ("gym_shoe", "sneaker") and syn["00000101"].wnid == "n00000101"
    assert syn["00000100"].definition == "footwear" and syn["00000104"].instance
    kept = [s.offset for s in wordnet.visual_synsets(syn)]
    assert kept == ["00000100", "00000101", "00000102"]  # not the root, person, instance, abstraction
    v = builtin_vocabulary(tmp_path)
    assert v.names == ["shoe", "gym shoe", "Sneaker"]
    m = match_class_names(v, ["Sneaker", "shoes", "Gym-shoe"])
    assert [x["entries"] for x in m] == [[2], [], [1]]
    with pytest.raises(wordnet.WordNetError, match="wordnet-base"):
        wordnet.data_noun_path(tmp_path / "nowhere")


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").is_file(), reason="wordnet-base not installed")
def test_builtin_vocabulary_covers_nine_of_the_ten_fashion_mnist_names():
    v = builtin_vocabulary()
    assert 15000 < len(v) < 25000
    got = {c: [v.names[i] for i in m["entries"]] for c, m in zip(FASHION, match_class_names(v, FASHION))}
    assert got["T-shirt/top"] == ["jersey", "top"] and got["Sneaker"] == ["gym shoe"]
    assert got["Trouser"] == ["trouser"] and got["Ankle boot"] == []
    assert sum(bool(e) for e in got.values()) == 9


def test_vocabulary_classifier_is_cached_by_model_vocabulary_and_templates(tmp_path, monkeypatch):
    model = FakeModel()
    vocab = Vocabulary(tuple(Entry(f"thing {i}") for i in range(7)), "test")
    a = vocab_classifier.encode_vocabulary(model, vocab, ["a {}.", "the {}."], cache_root=tmp_path,
                                           chunk=3, progress=False)
    assert a.weights.shape == (7, 8) and a.view_weights is None
    np.testing.assert_allclose(np.linalg.norm(a.weights, axis=1), 1.0, rtol=1e-5)
    e = model.encode_texts([f"a thing {i}." for i in range(7)]) + model.encode_texts([f"the thing {i}." for i in range(7)])
    np.testing.assert_allclose(a.weights, e / np.linalg.norm(e, axis=1, keepdims=True), atol=1e-6)
    monkeypatch.setattr(model.__class__, "encode_texts", lambda self, t: 1 / 0)
    b = vocab_classifier.encode_vocabulary(model, vocab, ["a {}.", "the {}."], cache_root=tmp_path,
                                           chunk=3, progress=False)
    np.testing.assert_array_equal(a.weights, b.weights)  # read from the cache: no text encoded
    assert len(list((tmp_path / "vocabulary" / a.key).glob("chunk_*.npz"))) == 3
    with pytest.raises(ZeroDivisionError):  # other templates: another key, encoded afresh
        vocab_classifier.encode_vocabulary(model, vocab, ["a {}."], cache_root=tmp_path, progress=False)


def test_cluster_phrases_drop_rival_names_and_shared_phrases(tmp_path):
    vocab = Vocabulary((Entry("boot", definitions=("footwear; covers the ankle",)),
                        Entry("sandal", definitions=("footwear; open straps",), synonyms=("flip flop",)),
                        Entry("cat")), "t")
    f = tmp_path / "p.json"
    phrases.write_phrase_file(f, {"Boot": ["laces", "Laces", "high shaft", "flip-flop", "sole"],
                                  "sandal": ["straps", "sole", "boot"]}, {"model": "x"})
    book = phrases.read_phrase_file(f)
    rows, fallback = phrases.cluster_phrases([[0, 1, 2]], vocab, book)
    got = {(w, p): round(wt, 4) for _, w, p, wt in rows}
    assert got == {(0, "laces"): 0.6667, (0, "high shaft"): 0.3333, (1, "straps"): 1.0}
    assert fallback == [2]  # "cat" has no file phrases and no definitions either
    glosses = phrases.load_phrase_book("glosses")
    rows, _ = phrases.cluster_phrases([[0, 1]], vocab, glosses)
    assert {(w, p) for _, w, p, _ in rows} == {(0, "covers the ankle"), (1, "open straps")}
    assert phrases.load_phrase_book("none") is None
    (tmp_path / "bad.json").write_text('{"phrases": {}}')
    with pytest.raises(phrases.PhraseError, match="adapt-phrases/1"):
        phrases.read_phrase_file(tmp_path / "bad.json")


class _Stub(http.server.BaseHTTPRequestHandler):
    answers: list = []
    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.requests.append((self.path, self.headers.get("Authorization"), body))
        content = _Stub.answers.pop(0)
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_phrases_command_against_a_local_stub_endpoint(tmp_path, monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Stub.requests.clear()
    _Stub.answers[:] = ["Sorry, here you go: not json",  # asked again
                        'Sure! {"boot": ["laces", "high shaft"], "sandal": ["straps"]}',
                        '{"Boot": ["laces"], "SANDAL": ["open toes"], "other": ["x"]}']
    cands = tmp_path / "candidates.json"
    cands.write_text(json.dumps({"clusters": [{"cluster": 0, "candidates": [
        {"name": "boot", "definitions": ["footwear that covers the ankle"]},
        {"name": "sandal", "definitions": ["open shoe"]}]}, {"cluster": 1, "candidates": []}]}))
    monkeypatch.setenv("MY_KEY", "sk-test")
    out = tmp_path / "phrases.json"
    try:
        rc = phrases_llm.main(["--candidates", str(cands), "--out", str(out), "--repeats", "2",
                               "--base-url", f"http://127.0.0.1:{server.server_port}/v1",
                               "--model", "stub-model", "--api-key-env", "MY_KEY"])
    finally:
        server.shutdown()
    assert rc == 0
    assert len(_Stub.requests) == 3
    path, auth, body = _Stub.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "stub-model" and body["temperature"] == 0.7
    assert "- boot: footwear that covers the ankle" in body["messages"][1]["content"]
    obj = json.loads(out.read_text())
    assert obj["phrases"] == {"boot": ["laces", "high shaft", "laces"], "sandal": ["straps", "open toes"]}
    assert obj["generator"]["model"] == "stub-model" and obj["generator"]["repeats"] == 2
    book = phrases.read_phrase_file(out)
    assert book.phrases["boot"] == ["laces", "high shaft", "laces"] and len(book.sha256) == 64


def test_phrases_command_reports_an_unreachable_endpoint(tmp_path, capsys):
    rc = phrases_llm.main(["--names", "boot,sandal", "--vocabulary", str(_tiny_vocab(tmp_path)),
                           "--out", str(tmp_path / "p.json"), "--base-url", "http://127.0.0.1:9/v1",
                           "--model", "m", "--timeout", "2"])
    assert rc == 2 and "cannot reach" in capsys.readouterr().err


def _tiny_vocab(tmp_path):
    p = tmp_path / "v.tsv"
    p.write_text("boot\t\tfootwear\nsandal\n")
    return p
