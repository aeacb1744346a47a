"""Batched augmentation == torchvision's functional ops replaying the recorded parameters (saturation:
upstream's HSV form through ``colorsys`` by default, torchvision's with ``saturation_impl="torchvision"``)."""
import dataclasses

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from augmentations import AugConfig, ViewAugment, ViewDraws, config_for_dataset, resized_crop_batch
from augmentations import functional as AF
from tests.augmentations.hsv_reference import hsv_saturation

ATOL = 2e-5  # float32 round-off between batched and per-image arithmetic, on [0, 1] pixels
JITTER = (TF.adjust_brightness, TF.adjust_contrast, hsv_saturation, TF.adjust_hue)
TV_JITTER = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def jitter_ops(cfg):
    return TV_JITTER if cfg.saturation_impl == "torchvision" else JITTER


def replay(img, p, i, cfg):
    """One view from the source image and record row i, with torchvision ops only."""
    top, left, h, w = (int(v) for v in p.box[i].tolist())
    x = TF.resized_crop(img, top, left, h, w, [cfg.size, cfg.size], InterpolationMode.BILINEAR, antialias=True)
    if p.flip[i]:
        x = TF.hflip(x)
    if p.jitter[i]:
        for k in p.jitter_order[i].tolist():
            x = jitter_ops(cfg)[k](x, float(p.jitter_factors[i, k]))
    if p.solarized[i]:
        x = TF.solarize(x, float(p.sol_threshold[i]))
    if p.gray[i]:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if p.blur_sigma[i] > 0:
        s = float(p.blur_sigma[i])
        x = TF.gaussian_blur(x, [cfg.blur_kernel] * 2, [s, s])
    if p.rot_k[i] > 0:
        x = TF.rotate(x, 90.0 * int(p.rot_k[i]))
    return TF.normalize(x, cfg.mean, cfg.std)


def _images(n, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    # Smooth random images with saturated colours, so every op changes pixels.
    small = torch.rand(n, 3, 5, 5, generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("seed,saturation", [(s, "hsv") for s in range(5)] + [(5, "torchvision")])
@pytest.mark.parametrize("dataset", ["cifar10", "stl10_sol", "stl10_rot"])
def test_batched_view_equals_torchvision_replay(dataset, seed, saturation):
    cfg = dataclasses.replace(config_for_dataset(dataset), saturation_impl=saturation)
    side = cfg.size
    imgs = _images(12, side, side, seed)
    views, p = ViewAugment(cfg)(imgs, torch.Generator().manual_seed(seed))
    assert views.shape == (12, 3, side, side)
    for i in range(12):
        ref = replay(imgs[i], p, i, cfg)
        torch.testing.assert_close(views[i], ref, atol=ATOL * 10, rtol=0)
    # The draws exercised every branch at least once over the batch.
    assert p.jitter.any() and p.flip.any() and (~p.flip).any()


def test_color_diff_is_mean_before_minus_after_jitter():
    cfg = config_for_dataset("cifar10")
    imgs = _images(16, 32, 32, 3)
    _, p = ViewAugment(cfg)(imgs, torch.Generator().manual_seed(3))
    for i in range(16):
        top, left, h, w = (int(v) for v in p.box[i].tolist())
        x = TF.resized_crop(imgs[i], top, left, h, w, [32, 32], InterpolationMode.BILINEAR, antialias=True)
        x = TF.hflip(x) if p.flip[i] else x
        y = x
        for k in p.jitter_order[i].tolist():
            y = JITTER[k](y, float(p.jitter_factors[i, k]))
        expected = (x.mean((1, 2)) - y.mean((1, 2))) if p.jitter[i] else torch.zeros(3)
        torch.testing.assert_close(p.color_diff[i], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("saturation", ["hsv", "torchvision"])
def test_color_diff_carries_the_hsv_saturation_shift(saturation):
    """Upstream's HSV saturation at f=0.6 lifts every channel towards the pixel's max, so the mean colour
    moves by about -0.09 per channel; torchvision's blend with grey keeps the mean luma (its shifts cancel)."""
    cfg = dataclasses.replace(config_for_dataset("cifar10"), saturation_impl=saturation)
    img = _images(1, 32, 32, 5)
    p = {"flip": torch.tensor([False]), "jitter": torch.tensor([True]),
         "jitter_factors": torch.tensor([[1.0, 1.0, 0.6, 0.0]]), "jitter_order": torch.tensor([[0, 1, 2, 3]]),
         "gray": torch.tensor([False]), "blur_sigma": torch.zeros(1), "solarized": torch.tensor([False]),
         "sol_threshold": torch.ones(1), "rot_k": torch.zeros(1, dtype=torch.long)}
    ViewAugment(cfg).apply(img.clone(), p)
    if saturation == "hsv":  # the reference shares no code with the package: colorsys, pixel by pixel
        expected = img[0].mean((1, 2)) - hsv_saturation(img[0], 0.6).mean((1, 2))
        torch.testing.assert_close(p["color_diff"][0], expected, atol=1e-6, rtol=0)
        assert (p["color_diff"] < -0.05).all() and p["color_diff"].mean().item() == pytest.approx(-0.09, abs=0.02)
    else:
        luma = (p["color_diff"][0] * torch.tensor([0.2989, 0.587, 0.114])).sum()
        assert luma.abs() < 1e-4 and p["color_diff"].abs().max() > 0.01


def test_jitter_order_is_one_permutation_per_batch():
    cfg = config_for_dataset("cifar10")
    _, p = ViewAugment(cfg)(_images(8, 32, 32, 0), torch.Generator().manual_seed(1))
    assert sorted(p.jitter_order[0].tolist()) == [0, 1, 2, 3]
    assert (p.jitter_order == p.jitter_order[0]).all()


def test_large_crop_without_antialias_matches_interpolate():
    """Crops larger than the output (JPEG sources) are resized without antialiasing."""
    img = _images(1, 64, 80, 0)
    box = torch.tensor([[3.0, 5.0, 50.0, 70.0]])
    out = resized_crop_batch(img, box, 24)
    crop = img[:, :, 3:53, 5:75]
    ref = torch.nn.functional.interpolate(crop, size=(24, 24), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("impl", ["conv", "shift"])
@pytest.mark.parametrize("ksize", [9, 23])
def test_batched_blur_matches_torchvision(ksize, impl):
    imgs = _images(5, 48, 40, 1)
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0, 0.0])
    out = AF.gaussian_blur(imgs, sigma, ksize, impl)
    for i in range(4):
        ref = TF.gaussian_blur(imgs[i], [ksize, ksize], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], ref, atol=ATOL, rtol=0)
    assert torch.equal(out[4], imgs[4])  # sigma 0 = not blurred, bit-exact


def test_blur_impl_is_checked():
    with pytest.raises(ValueError, match="blur impl must be 'conv' or 'shift', got 'fft'"):
        AF.gaussian_blur(_images(1, 8, 8, 0), torch.ones(1), 3, "fft")


def test_hue_matches_torchvision_on_edge_colours():
    # Grays, primaries, ties between channels: the branches of the HSV conversion.
    px = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1],
                       [1, 0, 1], [0.5, 0.5, 0.2], [0.2, 0.5, 0.5], [0.3, 0.2, 0.3]], dtype=torch.float32)
    img = px.t().reshape(3, 1, -1).expand(3, 4, -1).contiguous()
    for f in (-0.5, -0.1, 0.0, 0.07, 0.5):
        out = AF.adjust_hue(img[None], torch.tensor([f]))[0]
        torch.testing.assert_close(out, TF.adjust_hue(img, f), atol=ATOL, rtol=0)


def test_uint8_input_equals_float_input():
    cfg = config_for_dataset("cifar10")
    u8 = (torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    a, pa = ViewAugment(cfg)(u8, torch.Generator().manual_seed(5))
    b, pb = ViewAugment(cfg)(u8.float() / 255, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(pa.box, pb.box)


def test_seed_reproduces_views_and_different_seed_differs():
    cfg = config_for_dataset("stl10")
    imgs = _images(6, 96, 96, 0)
    a, pa = ViewAugment(cfg)(imgs, torch.Generator().manual_seed(11))
    b, pb = ViewAugment(cfg)(imgs, torch.Generator().manual_seed(11))
    c, pc = ViewAugment(cfg)(imgs, torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and torch.equal(pa.box, pb.box) and torch.equal(pa.blur_sigma, pb.blur_sigma)
    assert not torch.equal(a, c) and not torch.equal(pa.box, pc.box)


def test_precropped_path_gives_same_record_and_pixels():
    """Worker-side crop (boxes given) and in-batch crop produce the same views and record."""
    cfg = config_for_dataset("cifar10")
    imgs = _images(6, 32, 32, 2)
    full, p = ViewAugment(cfg)(imgs, torch.Generator().manual_seed(4))
    crops = resized_crop_batch(imgs, p.box, 32)
    g = torch.Generator().manual_seed(4)
    torch.rand(4, 6, 10, generator=g, dtype=torch.float64)  # consume the crop draws
    pre, p2 = ViewAugment(cfg)(crops, g, boxes=p.box, src_size=p.src_size)
    torch.testing.assert_close(pre, full)
    assert torch.equal(p.flip, p2.flip) and torch.equal(p.box, p2.box)


@pytest.mark.parametrize("bad,msg", [
    (torch.rand(2, 1, 8, 8), "3, H, W"),
    (torch.rand(3, 8, 8), "3, H, W"),
    (torch.rand(0, 3, 8, 8), "empty batch"),
    (torch.ones(2, 3, 8, 8, dtype=torch.int32), "uint8 or float"),
])
def test_bad_images_get_clear_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        ViewAugment(AugConfig(8, (0.5,) * 3, (0.5,) * 3))(bad, torch.Generator())


def test_color_aug_strength_scales_jitter_and_gray():
    d, s, w = (config_for_dataset("stl10", k) for k in ("default", "strong", "weak"))
    assert (s.brightness, s.hue, s.p_gray) == pytest.approx((0.8, 0.2, 0.4))
    assert (w.brightness, w.hue, w.p_gray) == pytest.approx((0.2, 0.05, 0.1))
    assert d.jitter_ranges[0] == pytest.approx((0.6, 1.4))
    with pytest.raises(ValueError, match="--color-aug"):
        config_for_dataset("stl10", "extreme")


def test_normalisation_is_upstream_s():
    """C datasets.py:469-470, 492-493: ImageNet's statistics for 224 px data, STL-10's own for 96 px."""
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    stl10 = ((0.43, 0.42, 0.39), (0.27, 0.26, 0.27))
    for dataset, stats in (("imagenet100", imagenet), ("folder", imagenet), ("stl10", stl10), ("stl10_rot", stl10),
                           ("stl10_sol", stl10)):
        cfg = config_for_dataset(dataset)
        assert (cfg.mean, cfg.std) == stats, dataset


@pytest.mark.parametrize("dataset", ["imagenet100", "stl10_rot", "stl10_sol", "cifar10", "folder"])
def test_color_aug_is_for_stl10_only(dataset):
    """Upstream scales the jitter for stl10 alone; elsewhere a strength is refused, not silently dropped."""
    assert config_for_dataset(dataset, "default").brightness == pytest.approx(0.4)
    for strength in ("strong", "weak"):
        with pytest.raises(ValueError, match=f"--color-aug {strength}: only --dataset stl10"):
            config_for_dataset(dataset, strength)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_views_equal_cpu_views_for_same_record():
    cfg = config_for_dataset("stl10")
    imgs = _images(8, 96, 96, 0)
    _, p = ViewAugment(cfg)(imgs, torch.Generator().manual_seed(0))
    aug = ViewAugment(cfg)
    pd = p.drawn()
    crops = resized_crop_batch(imgs, p.box, 96)
    cpu = aug.apply(crops.clone(), dict(pd))
    gpu = aug.apply(crops.cuda(), {k: v.cuda() for k, v in pd.items()})
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


def _drawn_on_device_replays_on_cpu(device: str) -> None:
    import dataclasses

    from augmentations import build_descriptor
    from augmentations.descriptor import DESCRIPTOR_DIMS
    cfg = config_for_dataset("cifar10")
    imgs = _images(64, 32, 32, 1)
    x_dev, rec = ViewAugment(cfg)(imgs.to(device), torch.Generator(device).manual_seed(3))
    cpu = rec.to("cpu")
    pd = cpu.drawn()
    x_cpu = ViewAugment(cfg).apply(resized_crop_batch(imgs, cpu.box, 32), pd)
    torch.testing.assert_close(x_dev.cpu(), x_cpu, atol=2e-4, rtol=0)
    keys = sorted(DESCRIPTOR_DIMS)
    d_dev = build_descriptor(rec, keys, cfg.jitter_ranges)
    d_cpu = build_descriptor(dataclasses.replace(cpu, color_diff=pd["color_diff"]), keys, cfg.jitter_ranges)
    assert d_dev.device.type == device and d_dev.shape == (64, sum(DESCRIPTOR_DIMS.values()))
    torch.testing.assert_close(d_dev.cpu(), d_cpu, atol=1e-5, rtol=0)


def test_records_replay_views_and_descriptors():
    _drawn_on_device_replays_on_cpu("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_drawn_views_and_descriptors_replay_on_cpu():
    _drawn_on_device_replays_on_cpu("cuda")


def _compiled_equals_eager(dataset: str, backend: str, device: str, atol: float, whole_view: bool = False,
                           blur_impl: str = "conv") -> None:
    """A compiled ViewAugment traces each stage (or, ``whole_view``, the whole view) whole (fullgraph)
    and gives eager's views and records, on the in-batch crop path and on the pre-cropped (uint8
    worker crops) path. ``blur_impl`` is the compiled one's; eager blurs with "conv"."""
    from torch._dynamo.utils import counters
    cfg = config_for_dataset(dataset)
    imgs = _images(6, cfg.size + 8, cfg.size + 8, 0).to(device)
    crops = (_images(6, cfg.size, cfg.size, 1) * 255).to(torch.uint8).to(device)
    boxes, src = torch.tensor([[0.0, 0.0, 20.0, 20.0]] * 6, device=device), torch.full((6, 2), 40.0, device=device)
    outs = {}
    graphs = counters["stats"]["unique_graphs"]
    compiled_cfg = dataclasses.replace(cfg, blur_impl=blur_impl)
    for name, backend_or_none in (("eager", None), ("compiled", backend)):
        aug = ViewAugment(compiled_cfg if backend_or_none else cfg, backend_or_none,
                          whole_view=whole_view and backend_or_none is not None)
        g = torch.Generator(device).manual_seed(7)
        host = torch.Generator().manual_seed(7)
        outs[name] = [aug(imgs, g, host_generator=host) for _ in range(3)]  # three jitter orders
        outs[name] += [aug(crops, g, boxes, src, host) for _ in range(2)]
    assert counters["stats"]["unique_graphs"] > graphs  # the stages did go through torch.compile
    for (xe, pe), (xc, pc) in zip(outs["eager"], outs["compiled"]):
        torch.testing.assert_close(xc, xe, atol=atol, rtol=0)
        for f in ("box", "src_size", "flip", "jitter", "jitter_order", "gray", "solarized", "rot_k"):
            assert torch.equal(getattr(pc, f), getattr(pe, f)), f
        for f in ("jitter_factors", "blur_sigma", "sol_threshold", "color_diff"):
            torch.testing.assert_close(getattr(pc, f), getattr(pe, f), atol=atol, rtol=0)


@pytest.mark.parametrize("whole_view", [False, True])
@pytest.mark.parametrize("dataset", ["stl10_sol", "stl10_rot"])
def test_compiled_augmentation_equals_eager(dataset, whole_view):
    _compiled_equals_eager(dataset, "aot_eager", "cpu", atol=0.0, whole_view=whole_view)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("whole_view", [False, True])
@pytest.mark.parametrize("dataset", ["cifar10", "imagenet100"])
def test_cuda_inductor_augmentation_equals_eager(dataset, whole_view):
    _compiled_equals_eager(dataset, "inductor", "cuda", atol=1e-4, whole_view=whole_view)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inductor_shifted_sum_blur_equals_eager_convolution():
    _compiled_equals_eager("imagenet100", "inductor", "cuda", atol=1e-4, blur_impl="shift")


def test_compiled_shifted_sum_blur_equals_eager_convolution():
    """The "shift" blur traced whole gives the eager "conv" views (to float rounding) and the same records."""
    _compiled_equals_eager("stl10", "aot_eager", "cpu", atol=1e-5, blur_impl="shift")


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet100", "stl10_sol", "stl10_rot"])
def test_whole_view_gives_the_staged_views_and_records(dataset):
    """``whole_view`` (one function of the draws, jitter order as a tensor) draws the same numbers in
    the same order and gives the same pixels, bit for bit, on both crop paths and over several orders."""
    cfg = config_for_dataset(dataset)
    imgs = _images(4, cfg.size + 8, cfg.size + 8, 2)
    crops = (_images(4, cfg.size, cfg.size, 3) * 255).to(torch.uint8)
    boxes, src = torch.tensor([[1.0, 2.0, 20.0, 24.0]] * 4), torch.full((4, 2), 40.0)
    outs = {}
    for whole in (False, True):
        aug, g, host = ViewAugment(cfg, whole_view=whole), torch.Generator().manual_seed(5), torch.Generator()
        host.manual_seed(5)
        outs[whole] = [aug(imgs, g, host_generator=host) for _ in range(4)]
        outs[whole] += [aug(crops, g, boxes, src, host) for _ in range(2)]
    assert len({tuple(p.jitter_order[0].tolist()) for _, p in outs[True]}) > 2
    for (xs, ps), (xw, pw) in zip(outs[False], outs[True]):
        assert torch.equal(xs, xw)
        for f in ps.__dataclass_fields__:
            assert torch.equal(getattr(ps, f), getattr(pw, f)), f


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet100", "stl10_sol", "stl10_rot"])
def test_joined_draws_give_the_views_of_one_batch_at_a_time(dataset):
    """Draws taken batch by batch (``draw_view``), joined (``ViewDraws.cat``) and applied in one call
    (``view``) give each batch's views and records as ``__call__`` on that batch alone, bit for bit, on
    both crop paths; the draws join in batch order."""
    cfg = config_for_dataset(dataset)
    batches = [_images(3, cfg.size + 8, cfg.size + 8, k) for k in range(3)]
    crops = (_images(9, cfg.size, cfg.size, 5) * 255).to(torch.uint8)
    boxes, src = torch.rand(9, 4) * 20, torch.full((9, 2), 40.0)
    aug = ViewAugment(cfg)
    g, host = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    one = [aug(x, g, host_generator=host) for x in batches]
    one += [aug(crops[i:i + 3], g, boxes[i:i + 3], src[i:i + 3], host) for i in (0, 3, 6)]
    g.manual_seed(3), host.manual_seed(3)
    drawn = [aug.draw_view(3, g, host) for _ in batches] + [aug.draw_view(3, g, host, crop=False) for _ in range(3)]
    joined = [aug.view(torch.cat(batches), ViewDraws.cat(drawn[:3])),
              aug.view(crops, ViewDraws.cat(drawn[3:]), boxes, src)]
    assert ViewDraws.cat(drawn[:3]).u_crop.shape[1] == 9 and ViewDraws.cat(drawn[3:]).u_crop is None
    assert len({tuple(p.jitter_order[0].tolist()) for _, p in one}) > 2
    for k, (x, p) in enumerate(one):
        xj, pj = joined[k // 3]
        rows = slice(3 * (k % 3), 3 * (k % 3) + 3)
        assert torch.equal(x, xj[rows])
        for f in p.__dataclass_fields__:
            assert torch.equal(getattr(p, f), getattr(pj, f)[rows]), f


@pytest.mark.parametrize("dataset", ["cifar10", "stl10_sol", "stl10_rot"])
def test_sampled_parameters_follow_the_recipe(dataset):
    """Rates and ranges of every draw match the recipe; ops the recipe leaves out never fire."""
    cfg = config_for_dataset(dataset)
    n = 40000
    p, order = ViewAugment(cfg).sample(n, torch.Generator().manual_seed(0))
    rate = lambda m: float(m.float().mean())  # noqa: E731
    assert rate(p["flip"]) == pytest.approx(cfg.p_flip, abs=0.01)
    assert rate(p["jitter"]) == pytest.approx(cfg.p_jitter, abs=0.01)
    assert rate(p["gray"]) == pytest.approx(cfg.p_gray, abs=0.01)
    for k, (lo, hi) in enumerate(cfg.jitter_ranges):
        f = p["jitter_factors"][:, k]
        assert lo <= f.min() < lo + 0.01 and hi - 0.01 < f.max() <= hi
        assert float(f.mean()) == pytest.approx((lo + hi) / 2, abs=0.01)
    blurred = p["blur_sigma"] > 0
    assert rate(blurred) == pytest.approx(cfg.p_blur if cfg.blur_kernel else 0.0, abs=0.01)
    if blurred.any():
        s = p["blur_sigma"][blurred]
        assert cfg.sigma[0] <= s.min() < cfg.sigma[0] + 0.01 and cfg.sigma[1] - 0.01 < s.max() <= cfg.sigma[1]
    assert rate(p["solarized"]) == pytest.approx(cfg.p_solarize if cfg.solarize else 0.0, abs=0.01)
    assert bool((p["sol_threshold"][~p["solarized"]] == 1.0).all())
    turns = torch.bincount(p["rot_k"], minlength=4).float() / n
    if cfg.rotate:  # no turn with prob. 1 - p/4 (not rotated, or rotated by 0); each other turn p/4
        torch.testing.assert_close(turns, torch.tensor([1 - 3 * cfg.p_rotate / 4] + [cfg.p_rotate / 4] * 3),
                                   atol=0.01, rtol=0)
    else:
        assert turns[0] == 1.0
    assert sorted(order) == [0, 1, 2, 3] and bool((p["jitter_order"] == torch.tensor(order)).all())


def test_a_compiled_stage_takes_more_shapes_than_dynamos_default_limit():
    """One process may compile a stage for many recipes and batch shapes (benchmarks, tests); with
    fullgraph=True, Dynamo's default of 8 per function would make the ninth an error."""
    from augmentations.pipeline import N_UNIFORMS, compiled, params_from_uniforms
    fn, cfg = compiled(params_from_uniforms, "aot_eager"), config_for_dataset("cifar10")
    for b in range(1, 11):
        u = torch.rand(b, N_UNIFORMS)
        assert torch.equal(fn(u, cfg)["jitter_factors"], params_from_uniforms(u, cfg)["jitter_factors"])
