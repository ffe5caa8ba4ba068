"""Tests of the training code (plain unittest; run by meson: `meson test -C BUILD test_train`).

What they check: the data set is deterministic and its captions say what is drawn; our Canny
equals OpenCV's on the golden canny/ fixtures; the tokenizer has CLIP's layout and encodes the
golden tiny-vocabulary cases exactly; our PyTorch architectures, loaded with the golden tiny-sd
and tiny-ldm-vq weights, reproduce diffusers' golden tensors and images (GOLDEN.md tolerances);
a few training steps of every stage run, resume to the same weights, plot the ControlNet curve
and export a diffusers folder; and the C engine (`sdserve`, given by --sdserve or $SDSERVE)
loads that export and draws the same PNG as train/sample.py, with and without the ControlNet;
so does the shipped models/demo at 128x128, 20 steps.
Exit 77 (skip) when torch is not importable.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "tests", "data")
sys.path.insert(0, HERE)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

try:
    import numpy as np
    import torch
    from PIL import Image
except ImportError as e:  # torch comes from Debian's python3-torch; absent -> skip
    print(f"skip: {e}")
    sys.exit(77)

torch.set_num_threads(1)
import data  # noqa: E402
import evaluate  # noqa: E402
import export  # noqa: E402
import sample  # noqa: E402
import st_io  # noqa: E402
import tokenizer  # noqa: E402
import train  # noqa: E402

SDSERVE = os.environ.get("SDSERVE", "")
if "--sdserve" in sys.argv:  # before the classes: skipUnless reads it at definition
    _i = sys.argv.index("--sdserve")
    SDSERVE = os.path.abspath(sys.argv[_i + 1])
    del sys.argv[_i:_i + 2]


def golden(case):
    g = st_io.load(os.path.join(DATA, "cases", case, "golden.safetensors"))
    return {k: torch.from_numpy(v) for k, v in g.items()}


def png_close(a, b):
    """GOLDEN.md's final-image tolerance on 8-bit images: mean-abs-err < 2e-3, PSNR > 45 dB."""
    d = (a.astype(np.float64) - b.astype(np.float64)) / 255.0
    mae, mse = np.abs(d).mean(), (d ** 2).mean()
    psnr = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
    return mae < 2e-3 and psnr > 45, f"mae {mae:.2e} psnr {psnr:.1f} dB"


class TestData(unittest.TestCase):
    def test_deterministic_and_varied(self):
        a, ca, _ = data.example(7, 3)
        b, cb, _ = data.example(7, 3)
        self.assertTrue((a == b).all())
        self.assertEqual(ca, cb)
        caps = {data.example(7, i, 32)[1] for i in range(50)}
        self.assertGreater(len(caps), 40)
        self.assertEqual(a.shape, (128, 128, 3))

    def test_caption_matches_pixels(self):
        # The named colour covers the expected area and the background colour the rest.
        for i in range(40):
            img, cap, sc = data.example(11, i)
            for s in sc["shapes"]:
                self.assertIn(s["colour"] + " " + s["shape"], cap)
                col = np.array(data.COLOURS[s["colour"]])
                frac = (np.abs(img.astype(int) - col).sum(-1) < 10).mean()
                self.assertGreater(frac, 0.005, cap)
            bg = np.array(data.COLOURS[sc["bg"]])
            self.assertGreater((np.abs(img.astype(int) - bg).sum(-1) < 10).mean(), 0.4, cap)
            if sc["bg"] != "white":
                self.assertIn(f"on a {sc['bg']} background", cap)

    def test_canny_equals_opencv_fixtures(self):
        d = os.path.join(DATA, "canny")
        with open(os.path.join(d, "canny.json")) as fp:
            meta = json.load(fp)
        n = 0
        for f in sorted(os.listdir(d)):
            if not f.endswith(".png") or "_canny_" in f:
                continue
            img = np.array(Image.open(os.path.join(d, f)).convert("RGB"))
            for lo, hi in ((100, 200), (50, 150)):
                ref = np.array(Image.open(os.path.join(d, f"{f[:-4]}_canny_{lo}_{hi}.png")))
                self.assertEqual(int((data.canny(img, lo, hi) != ref).sum()), 0, f)
                n += 1
        self.assertGreaterEqual(n, 12, meta.keys())

    def test_edge_f1(self):
        e = np.zeros((32, 32), np.uint8)
        e[10, 5:25] = 255
        self.assertEqual(data.edge_f1(e, e), 1.0)
        self.assertEqual(data.edge_f1(e, np.roll(e, 2, axis=0)), 1.0)  # within 2 px
        self.assertEqual(data.edge_f1(e, np.roll(e, 3, axis=0)), 0.0)


class TestShapeMeasure(unittest.TestCase):
    def test_classify_renders(self):
        # evaluate.classify on noisy renders of held-aside single-shape scenes: what the
        # adherence numbers of a trained model rest on. Measured: 400/400 at sigma 15.
        rng = np.random.default_rng(0)
        caps = evaluate.single_shape_captions(120)
        t = evaluate.Tally()
        for cap, sc in caps:
            img = data.render(sc, 128).astype(np.float64) + rng.normal(0, 15, (128, 128, 3))
            t.add(np.clip(img, 0, 255).astype(np.uint8), sc)
        for k, v in t.fractions().items():
            self.assertGreaterEqual(v, 0.98, k)
        self.assertEqual(t.n, 120)
        self.assertEqual(sum(n for _, n in t.by_size.values()), 120)
        self.assertEqual(set(t.by_size), {"small", "large", "any"})

    def test_tally_shape_report(self):
        # A circle drawn for every shape: right only for circles, and said where it went wrong.
        t = evaluate.Tally()
        for cap, sc in evaluate.single_shape_captions(40):
            circle = dict(sc, shapes=[dict(sc["shapes"][0], shape="circle")])
            t.add(data.render(circle, 128), sc)
        circles = sum(sc["shapes"][0]["shape"] == "circle"
                      for _, sc in evaluate.single_shape_captions(40))
        self.assertEqual(t.right["shape"], circles)
        self.assertEqual(t.fractions()["colour"], 1.0)
        rep = t.shape_report()
        self.assertIn(f"circle -> circle {circles}", rep)
        for s in ("square", "triangle", "star"):
            self.assertEqual(set(t.drawn[s]), {"circle"}, rep)
            self.assertIn(f"{s} -> circle {sum(t.drawn[s].values())}", rep)
        # an image with no shape on it is reported as such
        cap, sc = evaluate.single_shape_captions(1)[0]
        t.add(data.render(dict(sc, shapes=[]), 128), sc)
        self.assertIn(f"{sc['shapes'][0]['shape']} -> ", t.shape_report())
        self.assertIn("nothing 1", t.shape_report())

    def test_classify_ignores_stray_blobs(self):
        # A large shape plus a 5x5 blob of another colour in the corner farthest from it:
        # still the shape's colour and shape (all foreground pixels together would not be).
        for cap, sc in evaluate.single_shape_captions(40):
            s = sc["shapes"][0]
            if s["size_word"] != "large":
                continue
            img = data.render(sc, 128)
            other = next(n for n in data.COLOURS if n not in (sc["bg"], s["colour"]))
            y = 2 if s["cy"] > 0.5 else 121
            x = 2 if s["cx"] > 0.5 else 121
            img[y:y + 5, x:x + 5] = data.COLOURS[other]
            self.assertEqual(evaluate.score(img, sc), dict(colour=True, shape=True, bg=True), cap)


class TestTokenizer(unittest.TestCase):
    def test_layout_and_words(self):
        tok = tokenizer.build([data.caption(1, i) for i in range(300)] + data.words())
        with tempfile.TemporaryDirectory() as d:
            tok.save(d)
            with open(os.path.join(d, "vocab.json"), encoding="utf-8") as f:
                vocab = json.load(f)
            with open(os.path.join(d, "merges.txt"), encoding="utf-8") as f:
                merges = f.read().split("\n")
            back = tokenizer.Tokenizer.from_dir(d)
        ids = sorted(vocab.values())
        self.assertEqual(ids, list(range(len(vocab))))
        inv = {v: k for k, v in vocab.items()}
        self.assertEqual((inv[0], inv[255], inv[256], inv[511]), ("!", "Ń", "!</w>", "Ń</w>"))
        self.assertEqual(inv[len(vocab) - 2], "<|startoftext|>")
        self.assertEqual(inv[len(vocab) - 1], "<|endoftext|>")
        self.assertEqual(merges[0], "#version: 0.2")
        self.assertEqual(len(vocab), 512 + len(tok.merges) + 2)
        for w in data.words():
            self.assertEqual(len(tok.encode(w)), 1, w)
        cap = data.caption(1, 5)
        self.assertEqual(back.sd_ids(cap), tok.sd_ids(cap))
        self.assertEqual(tok.sd_ids("")[:3], [tok.bos, tok.eos, tok.eos])

    def test_golden_tiny_vocab_cases(self):
        tok = tokenizer.Tokenizer.from_dir(os.path.join(DATA, "models", "tiny-sd", "tokenizer"))
        with open(os.path.join(DATA, "tokenizer", "tiny_vocab_cases.json")) as f:
            cases = json.load(f)["cases"]
        n = 0
        for c in cases:
            if c.get("ftfy_changes_text") or not c["prompt"].isascii():
                continue  # no ftfy here: training captions are plain ASCII
            self.assertEqual(tok.sd_ids(c["prompt"]), c["sd_input_ids"], c["prompt"])
            n += 1
        self.assertGreaterEqual(n, 10)


class TestArchitecturesMatchDiffusers(unittest.TestCase):
    """Our modules with the golden random weights vs the golden diffusers tensors."""

    @classmethod
    def setUpClass(cls):
        cls.sd = export.load_export(os.path.join(DATA, "models", "tiny-sd"))

    @torch.no_grad()
    def test_text_unet_controlnet_vae(self):
        m, g = self.sd, golden("c_controlnet_euler")
        e = m["text"](g["input_ids"])
        self.assertLess((e - g["prompt_embeds"]).abs().max().item(), 1e-4)
        ctx = torch.cat([g["negative_prompt_embeds"], g["prompt_embeds"]])
        x, t = g["unet_step0_input"], g["unet_step0_timestep"]
        down, mid = m["controlnet"](x, t, ctx, g["controlnet_cond"], 0.8)
        ref = g["controlnet_step0_mid"]
        self.assertLess((mid - ref).abs().max().item(), 1e-3 * ref.std().item())
        for i, d in enumerate(down):
            ref = g[f"controlnet_step0_down{i:02d}"]
            self.assertLess((d - ref).abs().max().item(), 1e-3 * ref.std().item(), i)
        out, ref = m["unet"](x, t, ctx, down, mid), g["unet_step0_output"]
        self.assertLess((out - ref).abs().max().item(), 1e-3 * ref.std().item())
        img, ref = m["vae"].decode(g["vae_decoder_input"]), g["image"]
        self.assertLess((img / 2 + 0.5).clamp(0, 1).sub((ref / 2 + 0.5).clamp(0, 1))
                        .abs().mean().item(), 2e-3)
        gi = golden("g_img2img_ddim_blue_square")
        mom = m["vae"].encode(gi["init_image"])[0]
        ref = gi["latent_dist_mean"]
        self.assertLess((mom - ref).abs().max().item(), 5e-3 * ref.std().item())

    def test_agree_loss(self):
        m, g = self.sd, golden("c_controlnet_euler")
        unet, text, ids, empty = m["unet"], m["text"], g["input_ids"], g["neg_input_ids"]
        xt = torch.randn((3,) + tuple(g["unet_step0_input"].shape[1:]),
                         generator=torch.Generator().manual_seed(3))
        t, drop = torch.tensor([100, 500, 120]), torch.tensor([False, False, True])
        pred = unet(xt, t, text(ids.expand(3, -1)))
        a = train.parse(TINY + ["--cfg-agree", "2", "--cfg-agree-t", "300"])
        with torch.no_grad():
            la = train.agree_loss(a, unet, text, xt, t, pred, drop, empty)
            want = ((pred[:1] - unet(xt[:1], t[:1], text(empty))) ** 2).mean()
            self.assertGreater(want.item(), 0)
            self.assertAlmostEqual(la.item(), want.item(), places=6)  # only example 0 counts
            same = train.agree_loss(a, unet, text, xt, t, unet(xt, t, text(empty.expand(3, -1))),
                                    drop, empty)
            self.assertLess(same.item(), 1e-10)
            self.assertIsNone(train.agree_loss(train.parse(TINY), unet, text, xt, t, pred, drop,
                                               empty))
            self.assertIsNone(train.agree_loss(a, unet, text, xt, t + 300, pred, drop, empty))

    def test_ddim_sampler_end_to_end(self):
        for case, model in (("a_ddim_red_circle", "tiny-sd"), ("v_vq_ddim_red_circle",
                                                               "tiny-ldm-vq")):
            m = self.sd if model == "tiny-sd" else export.load_export(
                os.path.join(DATA, "models", model))
            with open(os.path.join(DATA, "cases", case, "case.json")) as f:
                c = json.load(f)["inputs"]
            img, lat = sample.generate(m, c["prompt"], c["negative_prompt"], c["seed"],
                                       c["num_inference_steps"], c["guidance_scale"], c["width"],
                                       c["height"], return_latents=True)
            g = golden(case)
            self.assertLess((lat - g["final_latents"]).abs().max().item(), 1e-3, case)
            ref = np.array(Image.open(os.path.join(DATA, "cases", case, "image.png")))
            ok, msg = png_close(img, ref)
            self.assertTrue(ok, f"{case}: {msg}")


TINY = ["--quiet", "--tiny", "--size", "64", "--threads", "1", "--ae-crop", "32",
        "--batch-ae", "4", "--batch-unet", "8", "--batch-cn", "4", "--batch-dec", "2",
        "--batch-clip", "8", "--cache", "64", "--disc-start", "2", "--eval-every", "3",
        "--eval-images", "2", "--adherence-images", "2", "--log-every", "1", "--lr-cn", "3e-3"]

FULL = TINY + ["--steps-ae", "6", "--steps-dec", "6", "--steps-clip", "6", "--steps-unet", "6",
               "--loss-weight-cap", "50", "--offset-noise", "0.25", "--clip-weight", "0.5",
               "--loss-weight-cap-late", "8", "--loss-weight-late-from", "3", "--steps-cn", "6"]

FINISHED_TO_UNET = ("ae.pt", "dec.pt", "latents.pt", "clip.pt", "unet.pt", "tokenizer")


class TestConfigs(unittest.TestCase):
    """Model configs from the command line."""

    def test_unet_attn_levels(self):
        u = train.configs(train.parse(["--unet-attn", "0,1,1"]), 600)["unet"]
        self.assertEqual(u["down_block_types"], ["DownBlock2D", "CrossAttnDownBlock2D",
                                                 "CrossAttnDownBlock2D"])
        self.assertEqual(u["up_block_types"], ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                               "UpBlock2D"])
        u = train.configs(train.parse([]), 600)["unet"]  # the shipped model's levels
        self.assertEqual(u["down_block_types"][2], "DownBlock2D")
        for bad in ("1,1", "1,2,0", "yes,no,no"):
            with self.assertRaises(SystemExit):
                train.configs(train.parse(["--unet-attn", bad]), 600)


class TestTraining(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        cls.out = os.path.join(cls.dir, "demo")
        # Full run: 6 AE steps (GAN from step 2), 6 decoder, 6 CLIP, 6 UNet (loss weighting with
        # the cap lowered from step 3, offset noise, the clip loss kept on), 6 ControlNet steps.
        train.main(FULL + ["--ckpt", os.path.join(cls.dir, "a"), "--out", cls.out])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def copy_run(self, name, *files):
        """A new checkpoint folder `name` holding copies of the full run's `files`."""
        d = os.path.join(self.dir, name)
        os.makedirs(d)
        for f in files:
            src = os.path.join(self.dir, "a", f)
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(d, f))
        return d

    def test_log_and_curve(self):
        with open(os.path.join(self.dir, "a", "log.jsonl")) as f:
            recs = [json.loads(l) for l in f]
        for stage in ("ae", "dec", "clip", "unet", "controlnet"):
            done = [r for r in recs if r["stage"] == stage and r.get("done")]
            self.assertEqual(len(done), 1, stage)
            self.assertEqual(done[0]["step"], 6, stage)
            losses = [r.get("loss", r.get("rec")) for r in recs
                      if r["stage"] == stage and "sec_per_step" in r]
            self.assertTrue(losses and all(np.isfinite(losses)), stage)
        self.assertTrue(any("g_adv" in r for r in recs if r["stage"] == "ae"))
        for stage, steps in (("clip", [0, 3, 6]), ("unet", [3, 6])):
            zero_shot = [r for r in recs if r["stage"] == stage and "shape" in r
                         and "adherence_cfg" not in r]
            self.assertEqual([r["step"] for r in zero_shot], steps, stage)
            self.assertTrue(all(0 <= r["shape"] <= 1 and 0 <= r["colour"] <= 1
                                for r in zero_shot))
        self.assertTrue(any("clip_loss" in r for r in recs if r["stage"] == "unet"))
        adh = [r for r in recs if "adherence_cfg" in r]
        self.assertEqual([r["adherence_cfg"] for r in adh], [1.0, 5.0])
        curve = [r for r in recs if r["stage"] == "controlnet" and "edge_f1" in r]
        self.assertEqual([r["step"] for r in curve], [0, 3, 6])
        with open(os.path.join(self.dir, "a", "controlnet_curve.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        with Image.open(os.path.join(self.dir, "a", "controlnet_curve.png")) as im:
            self.assertEqual(im.size, (640, 400))

    def test_decoder_stage_keeps_latent_space(self):
        # The decoder fine-tune changes the decoder only: encoder, quant_conv and codebook
        # (what the UNet's latents are made of) are the autoencoder stage's, bit for bit.
        ae = torch.load(os.path.join(self.dir, "a", "ae.pt"))["vae"]
        dec = torch.load(os.path.join(self.dir, "a", "dec.pt"))["vae"]
        self.assertEqual(set(ae), set(dec))
        for k in ae:
            if not k.startswith(("decoder.", "post_quant_conv.")):
                self.assertTrue(torch.equal(ae[k], dec[k]), k)
        self.assertFalse(all(torch.equal(ae[k], dec[k]) for k in ae if k.startswith("decoder.")))

    def test_swap_shape_hard_negatives(self):
        run = train.Run(train.parse(TINY + ["--ckpt", os.path.join(self.dir, "a")]))
        tok = train.get_tokenizer(run)
        shape_ids = train.shape_token_ids(tok)
        caps = ["a red circle", "a small blue star on the left on a white background",
                "a green square and a pink square",
                "a triangle and a red circle on a cyan background"]
        ids = torch.tensor([tok.sd_ids(c) for c in caps])
        seen = set()
        for k in range(20):
            neg = train.swap_shape(ids, shape_ids, torch.Generator().manual_seed(k))
            for row, cap in enumerate(caps):
                diff = (neg[row] != ids[row]).nonzero().flatten().tolist()
                self.assertEqual(len(diff), 1, cap)
                self.assertIn(int(ids[row, diff[0]]), shape_ids.tolist())
                self.assertIn(int(neg[row, diff[0]]), shape_ids.tolist())
                seen.add((row, diff[0], int(neg[row, diff[0]])))
        # both shape words of two-shape captions get swapped, to every other shape
        self.assertEqual(len({(r, p) for r, p, _ in seen if r == 3}), 2)
        self.assertEqual(len({w for r, p, w in seen if r == 0}), 3)

    def test_unet_stage_starts_from_clip_text_encoder(self):
        c = self.copy_run("c", "ae.pt", "dec.pt", "latents.pt", "clip.pt", "tokenizer")
        train.main(TINY + ["--ckpt", c, "--steps-clip", "6", "--steps-unet", "0",
                           "--stages", "ae,dec,clip,unet", "--no-export"])
        pre = torch.load(os.path.join(c, "clip.pt"))["text"]
        start = torch.load(os.path.join(c, "unet.pt"))["text"]
        self.assertEqual(set(pre), set(start))
        for k in pre:
            self.assertTrue(torch.equal(pre[k], start[k]), k)

    def test_slim_checkpoint_trains_on_to_the_same_weights(self):
        # The four finished stages of run a without the ControlNet, whole and slim: the
        # ControlNet trained from either is the same, bit for bit.
        whole, slim = self.copy_run("w", *FINISHED_TO_UNET), os.path.join(self.dir, "s")
        train.main(["--ckpt", whole, "--slim", slim])
        size = {d: sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
                       if f.endswith(".pt") and f != "latents.pt") for d in (whole, slim)}
        self.assertLess(size[slim], size[whole] / 2)
        self.assertNotIn("vae", torch.load(os.path.join(slim, "ae.pt")))
        for d in (whole, slim):
            train.main(FULL + ["--ckpt", d, "--no-export", "--adherence-images", "0"])
        cn = [torch.load(os.path.join(d, "controlnet.pt")) for d in (whole, slim)]
        self.assertEqual([c["step"] for c in cn], [6, 6])
        for k, v in cn[0]["cn"].items():
            self.assertTrue(torch.equal(v, cn[1]["cn"][k]), k)
        self.assertEqual(cn[0]["curve"], cn[1]["curve"])
        with self.assertRaises(SystemExit) as e:  # no optimiser state to continue with
            train.main(FULL + ["--ckpt", slim, "--no-export", "--steps-unet", "7"])
        self.assertIn("slim", str(e.exception))

    def test_resume_gives_same_weights(self):
        # 3 AE steps, stop, resume to 6: the same weights as 6 steps in one go.
        b = os.path.join(self.dir, "b")
        base = TINY + ["--ckpt", b, "--stages", "ae", "--no-export"]
        st = train.Run(train.parse(base))
        train.main(base + ["--steps-ae", "3"])
        part = torch.load(st.path("ae"))
        self.assertEqual(part["step"], 3)
        part["done"] = False  # as if the budget had run out at step 3
        st.save("ae", part)
        train.main(base + ["--steps-ae", "6"])
        resumed = torch.load(st.path("ae"))["vae"]
        full = torch.load(os.path.join(self.dir, "a", "ae.pt"))["vae"]
        for k in full:
            self.assertTrue(torch.equal(full[k], resumed[k]), k)

    def test_unet_lr_and_focus_batches(self):
        a = train.parse(TINY + ["--warmup", "4", "--lr-unet", "1e-3", "--lr-unet-late", "1e-4",
                                "--lr-unet-late-from", "10", "--lr-unet-decay-steps", "4"])
        lrs = [train.unet_lr(a, i) for i in range(16)]
        self.assertAlmostEqual(lrs[0], 2.5e-4)
        self.assertEqual(lrs[3:10], [1e-3] * 7)
        self.assertAlmostEqual(lrs[11], 5.5e-4)
        self.assertTrue(all(x > y for x, y in zip(lrs[9:14], lrs[10:14])))
        self.assertEqual(lrs[13:], [1e-4] * 3)
        self.assertEqual(train.unet_lr(train.parse(TINY), 500), 3e-4)  # no decay by default
        # Two phases: to 1e-4 over 4 steps from step 10, then to 2e-5 over 8 from step 20.
        b = train.parse(TINY + ["--warmup", "4", "--lr-unet", "1e-3", "--lr-unet-late", "1e-4",
                                "2e-5", "--lr-unet-late-from", "10", "20",
                                "--lr-unet-decay-steps", "4", "8"])
        lrs2 = [train.unet_lr(b, i) for i in range(32)]
        self.assertEqual(lrs2[:20], lrs[:16] + [1e-4] * 4)
        self.assertAlmostEqual(lrs2[23], 6e-5)
        self.assertTrue(all(x > y for x, y in zip(lrs2[19:28], lrs2[20:28])))
        self.assertTrue(all(abs(x - 2e-5) < 1e-12 for x in lrs2[27:]))
        for bad in (["--lr-unet-late", "1e-4", "2e-5", "--lr-unet-late-from", "10"],
                    ["--lr-unet-late", "1e-4", "2e-5", "--lr-unet-late-from", "20", "10"],
                    ["--unet-focus-sizes", "small,big"]):
            with self.assertRaises(SystemExit):
                train.parse(TINY + bad)
        caps = [data.caption(7, i) for i in range(400)]
        size = {c: data.one_shape_size(c) for c in caps}
        for c, w in size.items():
            self.assertEqual(w is None, " and " in c, c)
            if w is not None:
                self.assertEqual(w in ("small", "large"), c.split()[1] in ("small", "large"))
        self.assertEqual(data.one_shape_size("a large red star on the left"), "large")
        self.assertEqual(data.one_shape_size("a red star"), "any")
        self.assertEqual(data.one_shape_size("a small red star and a blue circle"), None)
        self.assertTrue(0.5 < sum(w is not None for w in size.values()) / len(caps) < 0.7)
        r, t = torch.tensor([0.05, 0.3, 0.3, 0.6]), torch.tensor([900, 100, 500, 100])
        self.assertEqual(train.caption_drop(train.parse(TINY), r, t).tolist(),
                         [True, False, False, False])
        low = train.parse(TINY + ["--caption-dropout-low", "0.5", "--caption-dropout-low-t", "300"])
        self.assertEqual(train.caption_drop(low, r, t).tolist(), [True, True, False, False])
        focus = torch.tensor([5, 9, 11])
        for k in range(5):
            idx = train.batch_indices(torch.Generator().manual_seed(k), 1000, focus, 32, 0.5)
            self.assertEqual(idx.shape, (32,))
            self.assertTrue(all(i in (5, 9, 11) for i in idx[:16].tolist()))
            self.assertFalse(all(i in (5, 9, 11) for i in idx[16:].tolist()))
        self.assertFalse(set(train.batch_indices(torch.Generator(), 1000, focus, 32, 0.0)
                             .tolist()) <= {5, 9, 11})

    def test_finished_unet_and_controlnet_stages_continue_with_a_larger_budget(self):
        d = self.copy_run("d", *FINISHED_TO_UNET)
        before = torch.load(os.path.join(d, "unet.pt"))
        args = TINY + ["--ckpt", d, "--stages", "ae,dec,clip,unet", "--no-export",
                       "--clip-weight", "0.5", "--adherence-images", "0", "--warmup", "1",
                       "--lr-unet-late", "1e-5", "--lr-unet-late-from", "6",
                       "--lr-unet-decay-steps", "2", "--unet-focus", "0.5",
                       "--unet-focus-from", "6", "--unet-focus-sizes", "small,large,any",
                       "--cfg-agree", "1", "--cfg-agree-t", "1000"]
        train.main(args + ["--steps-unet", "6"])  # the same budget: nothing to do
        self.assertEqual(torch.load(os.path.join(d, "unet.pt"))["step"], 6)
        train.main(args + ["--steps-unet", "9"])
        after = torch.load(os.path.join(d, "unet.pt"))
        self.assertEqual((after["step"], after["done"]), (9, True))
        self.assertFalse(torch.equal(before["unet"]["conv_in.weight"],
                                     after["unet"]["conv_in.weight"]))
        with open(os.path.join(d, "log.jsonl")) as f:
            recs = [json.loads(l) for l in f if '"unet"' in l]
        self.assertEqual([r["step"] for r in recs if r.get("continued")], [6])
        self.assertEqual([r["lr"] for r in recs if "lr" in r and r["step"] > 6],
                         [1.55e-4, 1e-5, 1e-5])
        self.assertTrue(all(r["agree_loss"] > 0 for r in recs if "lr" in r and r["step"] > 6))
        # the ControlNet trained on the step-6 UNet is not silently reused with this one
        shutil.copy(os.path.join(self.dir, "a", "controlnet.pt"), d)
        with self.assertRaises(SystemExit) as e:
            train.main(args + ["--steps-unet", "9", "--stages", "ae,dec,clip,unet,controlnet"])
        self.assertIn("step 6", str(e.exception))
        # A new ControlNet for it, then a raised ControlNet budget: it continues.
        os.unlink(os.path.join(d, "controlnet.pt"))
        cn_args = args + ["--steps-unet", "9", "--stages", "ae,dec,clip,unet,controlnet"]
        train.main(cn_args + ["--steps-cn", "2"])
        first = torch.load(os.path.join(d, "controlnet.pt"))
        train.main(cn_args + ["--steps-cn", "4"])
        cn = torch.load(os.path.join(d, "controlnet.pt"))
        self.assertEqual((first["step"], cn["step"], cn["done"], cn["unet_step"]), (2, 4, True, 9))
        self.assertEqual([s for s, _ in cn["curve"]], [0, 2, 3, 4])
        self.assertFalse(torch.equal(first["cn"]["controlnet_mid_block.weight"],
                                     cn["cn"]["controlnet_mid_block.weight"]))

    def test_export_layout(self):
        for f in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                  "tokenizer/merges.txt", "text_encoder/config.json",
                  "text_encoder/model.safetensors", "unet/config.json",
                  "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                  "vae/diffusion_pytorch_model.safetensors", "controlnet/config.json",
                  "controlnet/diffusion_pytorch_model.safetensors"):
            self.assertTrue(os.path.exists(os.path.join(self.out, f)), f)
        w = st_io.load(os.path.join(self.out, "unet", "diffusion_pytorch_model.safetensors"))
        self.assertTrue(all(v.dtype == np.float16 for v in w.values()))
        ref = st_io.load(os.path.join(DATA, "models", "tiny-sd", "unet",
                                      "diffusion_pytorch_model.safetensors"))
        self.assertEqual(set(w), set(ref))  # same architecture family: same tensor names
        with open(os.path.join(self.out, "vae", "config.json")) as f:
            cfg = json.load(f)
        self.assertEqual(cfg["_class_name"], "VQModel")
        self.assertNotEqual(cfg["scaling_factor"], 1.0)
        cn = st_io.load(os.path.join(self.out, "controlnet", "diffusion_pytorch_model.safetensors"))
        self.assertGreater(np.abs(cn["controlnet_mid_block.weight"]).max(), 0)  # trained

    @unittest.skipUnless(SDSERVE, "no --sdserve / $SDSERVE given")
    def test_engine_parity(self):
        check_parity(self, self.out, self.dir, 8, 64, 5)

PROMPT = "a small red circle on a blue background"


def engine_image(model, out_png, steps, size, *extra):
    """The C engine's image (DDIM, cfg 5, seed 9, one thread) as an RGB array."""
    r = subprocess.run([SDSERVE, "generate", "--model", model, "--prompt", PROMPT, "--sampler",
                        "ddim", "--steps", str(steps), "--cfg-scale", "5", "--seed", "9",
                        "--width", str(size), "--height", str(size), "--threads", "1", "-o",
                        out_png, *extra], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(r.stderr)
    return np.array(Image.open(out_png).convert("RGB"))


def check_parity(tc, model, tmp, steps, size, control_seed):
    """train/sample.py and the C engine draw the same image (GOLDEN.md's image tolerance) from
    the export in `model`, without and with its ControlNet (which must change the image)."""
    parts = export.load_export(model)
    c_img = engine_image(model, os.path.join(tmp, "c.png"), steps, size)
    py_img = sample.generate(parts, PROMPT, "", 9, steps, 5.0, size, size)
    ok, msg = png_close(c_img, py_img)
    print(f"\nparity text-to-image ({model}): {msg}", file=sys.stderr)
    tc.assertTrue(ok, "text-to-image: " + msg)
    im, _, _ = data.example(control_seed, 123, size)
    ctl = np.repeat(data.canny(im)[..., None], 3, 2)
    ctl_png = os.path.join(tmp, "control.png")
    Image.fromarray(ctl).save(ctl_png)
    c_cn = engine_image(model, os.path.join(tmp, "c_cn.png"), steps, size, "--controlnet",
                        os.path.join(model, "controlnet"), "--control-image", ctl_png)
    py_cn = sample.generate(parts, PROMPT, "", 9, steps, 5.0, size, size, control=ctl)
    ok, msg = png_close(c_cn, py_cn)
    print(f"parity controlnet ({model}): {msg}", file=sys.stderr)
    tc.assertTrue(ok, "controlnet: " + msg)
    tc.assertFalse((py_cn == py_img).all(), "the ControlNet had no effect")


class DemoModelParity(unittest.TestCase):
    """The shipped models/demo: PyTorch sampler and C engine agree at its native size."""

    @unittest.skipUnless(SDSERVE, "no --sdserve / $SDSERVE given")
    def test_demo_parity(self):
        demo = os.path.join(ROOT, "models", "demo")
        self.assertTrue(os.path.exists(os.path.join(demo, "model_index.json")), demo)
        with tempfile.TemporaryDirectory() as tmp:
            check_parity(self, demo, tmp, 20, 128, 777)


if __name__ == "__main__":
    unittest.main(verbosity=2)
