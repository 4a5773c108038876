"""Model flags given as Hub ids: which files are fetched, and resolution against a Hugging Face cache laid
out as huggingface_hub writes it (no network: HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from soraplan.hub import ModelSourceError, files_needed, parse_hub_id, resolve_model

RELEASE_FILES = [
    ".gitattributes", "README.md",
    "any93x640x640/config.json", "any93x640x640/diffusion_pytorch_model-00001-of-00002.safetensors",
    "any93x640x640/diffusion_pytorch_model-00002-of-00002.safetensors",
    "any93x640x640/diffusion_pytorch_model.safetensors.index.json",
    "any93x640x640_i2v/config.json", "any93x640x640_i2v/diffusion_pytorch_model-00001-of-00002.safetensors",
    "any93x640x640_i2v/diffusion_pytorch_model-00002-of-00002.safetensors",
    "any93x640x640_i2v/diffusion_pytorch_model.safetensors.index.json",
    "vae/config.json", "vae/merged.ckpt", "vae/diffusion_pytorch_model.safetensors",
    "prompt_refiner/config.json", "prompt_refiner/model-00001-of-00004.safetensors",
    "prompt_refiner/tokenizer.json", "prompt_refiner/tokenizer_config.json", "assets/logo.png",
]
MT5_FILES = [".gitattributes", "README.md", "config.json", "flax_model.msgpack", "pytorch_model.bin",
             "special_tokens_map.json", "spiece.model", "tf_model.h5", "tokenizer_config.json"]


def test_only_the_named_folder_and_one_weight_format_are_fetched():
    assert files_needed(RELEASE_FILES, "any93x640x640_i2v", "x") == [
        "any93x640x640_i2v/config.json",
        "any93x640x640_i2v/diffusion_pytorch_model-00001-of-00002.safetensors",
        "any93x640x640_i2v/diffusion_pytorch_model-00002-of-00002.safetensors",
        "any93x640x640_i2v/diffusion_pytorch_model.safetensors.index.json",
    ]
    # safetensors win over a pickled checkpoint in the same folder
    assert files_needed(RELEASE_FILES, "vae", "x") == ["vae/config.json", "vae/diffusion_pytorch_model.safetensors"]
    # no safetensors: the PyTorch .bin, never the TF / Flax copies or the docs
    assert files_needed(MT5_FILES, "", "x") == ["config.json", "pytorch_model.bin", "special_tokens_map.json",
                                                "spiece.model", "tokenizer_config.json"]


def test_a_pipeline_folder_brings_its_component_folders():
    files = ["demo/model_index.json", "demo/transformer/config.json", "demo/transformer/a.safetensors",
             "demo/transformer/a.bin", "demo/tokenizer/tokenizer_config.json", "demo/vae/config.json",
             "demo/vae/b.safetensors", "demo/vae/extra/deep.bin", "other/config.json"]
    assert files_needed(files, "demo", "x") == [
        "demo/model_index.json", "demo/tokenizer/tokenizer_config.json", "demo/transformer/a.safetensors",
        "demo/transformer/config.json", "demo/vae/b.safetensors", "demo/vae/config.json"]


def test_a_wrong_folder_names_the_ones_that_exist():
    with pytest.raises(ModelSourceError, match="no folder 'any93x640x640_i2V'.*any93x640x640, any93x640x640_i2v"):
        files_needed(RELEASE_FILES, "any93x640x640_i2V", "--model_path")
    with pytest.raises(ModelSourceError, match="no model at the repository's root.*prompt_refiner, vae"):
        files_needed(RELEASE_FILES, "", "--model_path")


def test_hub_id_syntax():
    assert parse_hub_id("org/name") == ("org/name", "", "main")
    assert parse_hub_id("org/name/sub/dir@v1") == ("org/name", "sub/dir", "v1")
    assert parse_hub_id("org/name/sub", subfolder="deeper", revision="abc") == ("org/name", "sub/deeper", "abc")
    with pytest.raises(ModelSourceError, match="give one"):
        parse_hub_id("org/name@v1", revision="v2")


def test_a_local_folder_is_used_as_it_is(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # even online, a local folder never touches the Hub
    (tmp_path / "model" / "inner").mkdir(parents=True)
    assert resolve_model(tmp_path / "model").folder == tmp_path / "model"
    source = resolve_model(str(tmp_path / "model"), subfolder="inner")
    assert source.folder == tmp_path / "model" / "inner" and source.repo_id is None
    with pytest.raises(ModelSourceError, match="no such folder"):
        resolve_model("./not/here", what="--ae_path")


# ---- a cache laid out as huggingface_hub writes it ---------------------------------------------------


def lay_out_cache(cache: Path, repo_id: str, files: dict[str, Path | str], refs=("main",),
                  commit: str | None = None) -> str:
    """models--ORG--NAME/{blobs, snapshots/<commit>/..., refs/<ref>}: snapshot entries link to blobs."""
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    base = cache / f"models--{repo_id.replace('/', '--')}"
    for rel, content in files.items():
        data = Path(content).read_bytes() if isinstance(content, Path) else content.encode()
        blob = base / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = base / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (base / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (base / "refs" / ref).write_text(commit)
    return commit


def folder_files(folder: Path, prefix: str = "") -> dict[str, Path]:
    return {prefix + p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def sharded_transformer(folder: Path) -> dict[str, str]:
    index = {"metadata": {}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                                            "b.weight": "model-00002-of-00002.safetensors"}}
    return {"config.json": json.dumps({"_class_name": "OpenSoraInpaint_v1_3"}),
            "model.safetensors.index.json": json.dumps(index),
            "model-00001-of-00002.safetensors": "one", "model-00002-of-00002.safetensors": "two"}


def test_hub_id_subfolder_and_revision_from_the_cache(offline_cache):
    files = {f"i2v/{k}": v for k, v in sharded_transformer(offline_cache).items()}
    commit = lay_out_cache(offline_cache, "org/release", files, refs=("main", "v1"))
    source = resolve_model("org/release/i2v", cache_dir=offline_cache, what="--model_path")
    assert source.folder.is_dir() and (source.folder / "model-00002-of-00002.safetensors").read_text() == "two"
    assert source.describe() == {"hub_id": "org/release", "subfolder": "i2v", "revision": "main", "commit": commit}
    assert resolve_model("org/release", subfolder="i2v", revision="v1", cache_dir=offline_cache).commit == commit
    assert resolve_model(f"org/release/i2v@{commit}", cache_dir=offline_cache).folder == source.folder
    with pytest.raises(ModelSourceError, match="no folder 'vae'.*folders with a model: i2v"):
        resolve_model("org/release/vae", cache_dir=offline_cache)


def test_offline_and_not_cached_says_how_to_get_it(offline_cache):
    offline_cache.mkdir()
    with pytest.raises(ModelSourceError) as caught:
        resolve_model("google/mt5-xxl", cache_dir=offline_cache, what="--text_encoder_name_1")
    message = str(caught.value)
    assert "\n" not in message and "--text_encoder_name_1 google/mt5-xxl is not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE" in message and "soraplan download" in message and "local folder" in message
    lay_out_cache(offline_cache, "org/release", {"i2v/config.json": "{}"})
    with pytest.raises(ModelSourceError, match="not in the Hugging Face cache"):
        resolve_model("org/release/i2v@v9", cache_dir=offline_cache)  # a revision never fetched


def test_a_partial_download_is_detected_and_never_loaded(offline_cache):
    files = {f"i2v/{k}": v for k, v in sharded_transformer(offline_cache).items()}
    del files["i2v/model-00002-of-00002.safetensors"]  # the download stopped after the first shard
    lay_out_cache(offline_cache, "org/release", files)
    with pytest.raises(ModelSourceError, match="only partly downloaded \\(missing model-00002-of-00002"):
        resolve_model("org/release/i2v", cache_dir=offline_cache)
    # a weighted model folder with its config and no weights at all
    lay_out_cache(offline_cache, "org/vae", {"config.json": json.dumps({"_class_name": "WFVAEModel"})})
    with pytest.raises(ModelSourceError, match="only partly downloaded \\(missing weights"):
        resolve_model("org/vae", cache_dir=offline_cache)


def test_an_interrupted_blob_is_not_taken_for_a_file(offline_cache):
    files = {f"i2v/{k}": v for k, v in sharded_transformer(offline_cache).items()}
    lay_out_cache(offline_cache, "org/release", files)
    snapshot = next((offline_cache / "models--org--release" / "snapshots").iterdir())
    shard = snapshot / "i2v" / "model-00001-of-00002.safetensors"
    blob = shard.resolve()
    blob.rename(blob.with_name(blob.name + ".incomplete"))  # huggingface_hub's name while a blob downloads
    with pytest.raises(ModelSourceError, match="only partly downloaded"):
        resolve_model("org/release/i2v", cache_dir=offline_cache)
    shutil.rmtree(offline_cache)
