"""The local-model judge (`python -m bsft_trainer judge`, recipe `judge.kind: model`) on a tiny random Qwen2 model
with the real Qwen2.5 tokenizer and chat template."""
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import events_of, limit, trainer

HAVE_HF = importlib.util.find_spec("transformers") is not None
pytestmark = [pytest.mark.hf, pytest.mark.skipif(not HAVE_HF, reason="needs transformers")]
ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "recipes" / "models" / "qwen2.5-tokenizer"
TINY = ROOT / "recipes" / "models" / "qwen2.5-tiny"
LABELS = ["reactive", "proactive", "restraint"]


def _judge_model(tmp_path):
    """A tiny random Qwen2 model saved with the Qwen2.5 tokenizer (an instruct model's files, in miniature)."""
    import transformers

    folder = tmp_path / "judge-model"
    torch.manual_seed(3)
    transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(TINY)).save_pretrained(folder)
    for f in TOKENIZER.iterdir():
        shutil.copy(f, folder / f.name)
    return folder


def _requests(n):
    return [{"key": f"k{i}", "messages": [
        {"role": "system", "content": "Classify the reply. Answer with one line: label: <reactive|proactive|restraint>"},
        {"role": "user", "content": f"Conversation:\n[user] Dr. Lee: patient {i}, INR {i / 3:.1f}" + " and more context" * (i % 4) +
         f"\n\nReply to grade:\nreply number {i}\n\nWhich behavior is the reply?"}]} for i in range(n)]


def test_labels_are_the_most_likely_answer_line_batched_as_one_at_a_time(tmp_path):
    import transformers

    model_dir = _judge_model(tmp_path)
    requests = _requests(7)
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    cfg = {"requests": str(tmp_path / "requests.jsonl"), "out": str(tmp_path / "answers.jsonl"), "model": str(model_dir),
           "revision": None, "dtype": "float32", "batch_size": 3, "labels": LABELS}
    (tmp_path / "judge.json").write_text(json.dumps(cfg))
    p = trainer("judge", tmp_path / "judge.json")
    out, err = p.communicate(timeout=limit(300))
    assert p.returncode == 0, err
    events = events_of(out)
    assert [e["done"] for e in events if e["event"] == "progress"] == [3, 6, 7]
    assert events[-1] == {"event": "done", "final_path": str(tmp_path / "answers.jsonl")}
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [a["key"] for a in answers] == [r["key"] for r in requests]

    # The reference: each prompt + answer line alone through the model, no padding, no batching.
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    for r, a in zip(requests, answers):
        prompt = tok(tok.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
        assert prompt[-3:] == tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]  # the generation prompt
        ref = {}
        for b in LABELS:
            ans = tok(f"label: {b}", add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + ans])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)[0]
            ref[b] = sum(logp[len(prompt) - 1 + j, t].item() for j, t in enumerate(ans))
        for b in LABELS:
            assert a["logprobs"][b] == pytest.approx(ref[b], abs=1e-3)
        assert a["label"] == max(ref, key=ref.get) and a["raw"] == f"label: {a['label']}" and a["status"] == "ok"


def test_a_model_without_a_chat_template_is_a_config_error(tmp_path):
    model_dir = _judge_model(tmp_path)
    cfg_file = json.loads((model_dir / "tokenizer_config.json").read_text())
    cfg_file.pop("chat_template", None)
    (model_dir / "tokenizer_config.json").write_text(json.dumps(cfg_file))
    (model_dir / "chat_template.jinja").unlink(missing_ok=True)
    (tmp_path / "requests.jsonl").write_text(json.dumps(_requests(1)[0]) + "\n")
    (tmp_path / "judge.json").write_text(json.dumps({"requests": str(tmp_path / "requests.jsonl"), "out": str(tmp_path / "a.jsonl"),
                                                     "model": str(model_dir), "labels": LABELS}))
    p = trainer("judge", tmp_path / "judge.json")
    out, err = p.communicate(timeout=limit(300))
    assert p.returncode == 2, err
    assert events_of(out)[-1]["kind"] == "config" and "no chat template" in events_of(out)[-1]["message"]


def test_judge_requests_are_split_at_newlines_only_read_as_utf8_and_a_bad_line_names_its_file(tmp_path):
    """Reply text may hold line separators that JSON leaves unescaped (U+2028, U+2029, U+0085) and that
    str.splitlines() would cut at; a bad line is blamed on the requests file and its line, not on the config."""
    from bsft_trainer.process.events import ConfigError
    from bsft_trainer.inference.judge import read_jsonl

    odd = "a\u2028b\u2029c\u0085d\x0be\x0cf\x1cg\x1dh\x1ei"
    rows = [{"key": "k0", "messages": [{"role": "user", "content": odd}]}, {"key": "k1", "messages": []}]
    good = tmp_path / "requests.jsonl"
    good.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert len(good.read_text(encoding="utf-8").splitlines()) > 2  # what the old reader would have cut
    assert read_jsonl(good) == rows
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0], ensure_ascii=False) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"judge requests {bad}:2: "):
        read_jsonl(bad)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"key": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"judge requests {latin}: .*utf-8"):
        read_jsonl(latin)
