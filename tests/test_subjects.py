"""simulate.subjects: varied anatomy with truth, rendered images, patches.

Subjects are drawn on 3 mm grids (66 x 78 x 63) or as small 1 mm regions so each test takes
well under a second once the template is loaded (about 7 s, once per module).
"""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.errors import InputError
from mrenhance.simulate import subjects as S
from mrenhance.simulate.fields import Lattice, evaluate_field, random_coefficients

COARSE_MM = 3.0
FLAT = {"bias_strength": 0.0, "texture_strength": 0.0}


@pytest.fixture(scope="module", autouse=True)
def _template_loaded():
    pytest.importorskip("nilearn")
    pytest.importorskip("asldro")
    S._template()


def _subject(seed: int, **kwargs) -> S.Subject:
    kwargs.setdefault("voxel_mm", COARSE_MM)
    return S.draw_subject(np.random.default_rng(seed), **kwargs)


def _region_1mm(seed: int, shape=(48, 48, 40), **kwargs) -> S.Subject:
    """A 1 mm region around the brain centre of a freshly drawn subject."""
    params = S.draw_subject_params(np.random.default_rng(seed), **kwargs)
    centre = np.round(S.brain_centre_voxel(params)).astype(int)
    return S.build_subject(params, region_start=centre - np.asarray(shape) // 2, region_shape=shape)


def _arrays(subject: S.Subject) -> dict[str, np.ndarray]:
    out = {f"fraction:{k}": v for k, v in subject.fractions.items()}
    out.update({f"lesion:{k}": v for k, v in subject.lesion_masks.items()})
    out.update(
        labels=subject.labels,
        brain=subject.brain_mask,
        head=subject.head_mask,
        template_vox=subject.template_vox,
    )
    return out


def test_same_seed_gives_a_bit_identical_subject_and_image() -> None:
    a = _subject(7, lesions=("tumour", "infarct"))
    b = _subject(7, lesions=("tumour", "infarct"))
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        assert np.array_equal(arrays_a[key], arrays_b[key]), key
    image_a, truth_a = S.render_image(a, np.random.default_rng(1), contrast="random")
    image_b, truth_b = S.render_image(b, np.random.default_rng(1), contrast="random")
    assert np.array_equal(image_a, image_b)
    assert np.array_equal(truth_a["noise_free"], truth_b["noise_free"])
    assert truth_a["intensities"] == truth_b["intensities"]


def test_different_seeds_give_different_anatomy_and_images() -> None:
    a, b = _subject(1), _subject(2)
    assert not np.array_equal(a.fractions["gm"], b.fractions["gm"])
    assert (a.labels != b.labels).mean() > 0.01
    assert a.params.as_dict() != b.params.as_dict()
    image_a, _ = S.render_image(a, np.random.default_rng(0))
    image_b, _ = S.render_image(a, np.random.default_rng(1))
    assert not np.array_equal(image_a, image_b)


def test_tissue_fractions_are_in_unit_interval_and_sum_to_at_most_one() -> None:
    subject = _subject(3, lesions=("tumour", "infarct"))
    stack = subject.stack()
    assert stack.dtype == np.float32 and stack.shape == (*subject.shape, len(subject.fractions))
    assert subject.tissue_names == S.TISSUES  # every tissue present with both lesions
    assert stack.min() >= 0.0 and stack.max() <= 1.0
    assert stack.sum(-1).max() <= 1.0 + 1e-5
    # the head is full (sum ~1) somewhere and air (sum 0) somewhere
    assert (stack.sum(-1) > 0.999).any() and (stack.sum(-1) == 0).any()


def test_brain_tissue_shares_are_physiological_and_track_the_template() -> None:
    template = S.template_brain_volume_fractions()
    # nilearn's MNI152 2009a maps: GM 0.53, WM 0.36, CSF 0.12 of the intracranial volume
    assert template["gm"] == pytest.approx(0.53, abs=0.01)
    assert template["wm"] == pytest.approx(0.36, abs=0.01)
    assert template["csf"] == pytest.approx(0.12, abs=0.01)
    for seed in range(3):
        subject = _subject(seed, lesions=())
        volumes = {k: float(subject.fractions[k].sum()) for k in ("gm", "wm", "csf")}
        total = sum(volumes.values())
        shares = {k: v / total for k, v in volumes.items()}
        assert 0.35 <= shares["gm"] <= 0.60
        assert 0.30 <= shares["wm"] <= 0.50
        assert 0.05 <= shares["csf"] <= 0.25
        # deformations reshape the brain but do not model atrophy: shares stay near the
        # template's
        for k in shares:
            assert shares[k] == pytest.approx(template[k], abs=0.02)
        # intracranial volume scales with the affine part's determinant
        tpl = S._template()
        icv_template = 1.0e-6 * float(tpl.gm.sum() + tpl.wm.sum() + tpl.csf.sum())  # litres
        icv = total * COARSE_MM**3 * 1.0e-6
        expected = icv_template * float(np.linalg.det(subject.params.deformation.linear()))
        assert icv == pytest.approx(expected, rel=0.06)


def test_undeformed_subject_on_the_template_grid_is_the_template() -> None:
    params = S.draw_subject_params(np.random.default_rng(0), lesions=(), deform="none")
    region = S.build_subject(params, region_start=(60, 80, 50), region_shape=(24, 20, 16))
    tpl = S._template()
    crop = (slice(60, 84), slice(80, 100), slice(50, 66))
    assert np.allclose(region.fractions["gm"], tpl.gm[crop], atol=1e-4)
    assert np.array_equal(region.labels[:, :, :], tpl.labels[crop])
    assert np.allclose(
        region.affine,
        tpl.affine @ np.array([[1, 0, 0, 60], [0, 1, 0, 80], [0, 0, 1, 50], [0, 0, 0, 1]]),
    )
    warped = S.warp_template_map(region, tpl.wm)
    assert np.allclose(warped, tpl.wm[crop], atol=1e-4)


def test_a_region_built_alone_equals_the_crop_of_the_whole_subject() -> None:
    params = S.draw_subject_params(
        np.random.default_rng(5), voxel_mm=COARSE_MM, lesions=("tumour", "infarct")
    )
    whole = S.build_subject(params)
    start, shape = (10, 22, 14), (30, 26, 24)
    region = S.build_subject(params, region_start=start, region_shape=shape)
    crop = tuple(slice(a, a + n) for a, n in zip(start, shape, strict=True))
    for name, frac in whole.fractions.items():
        assert np.allclose(region.fractions[name], frac[crop], atol=1e-5), name
    assert (region.labels == whole.labels[crop]).mean() > 0.999
    image_w, truth_w = S.render_image(whole, np.random.default_rng(2), snr=np.inf)
    image_r, truth_r = S.render_image(region, np.random.default_rng(2), snr=np.inf)
    assert np.allclose(truth_r["clean_hr"], truth_w["clean_hr"][crop], atol=1e-5)


@pytest.mark.parametrize("contrast", ["t1", "t2", "random"])
def test_the_noise_free_image_is_the_partial_volume_mix_of_the_drawn_intensities(
    contrast: str,
) -> None:
    subject = _region_1mm(4, lesions=("tumour",))
    _, truth = S.render_image(
        subject, np.random.default_rng(0), contrast=contrast, snr=np.inf, **FLAT
    )
    clean, intensity = truth["noise_free"], truth["intensities"]
    for name in ("gm", "wm", "csf"):
        # up to 2 % of another tissue in the voxel (the template's GM is rarely above 0.98)
        pure = subject.fraction(name) >= 0.98
        assert pure.sum() > 0, name
        tolerance = 0.02 * max(intensity.values()) + 1e-5
        assert np.allclose(clean[pure], intensity[name], rtol=0, atol=tolerance), name
    expected = sum(intensity[k] * f for k, f in subject.fractions.items())
    assert np.allclose(clean, expected, atol=1e-5)


def test_texture_and_bias_keep_per_label_means_at_the_drawn_intensities() -> None:
    subject = _region_1mm(4, shape=(64, 64, 64), lesions=())
    _, truth = S.render_image(
        subject, np.random.default_rng(0), snr=np.inf, bias_strength=0.2, texture_strength=0.05
    )
    unbiased = truth["clean_hr"] / truth["bias_field"]
    for name in ("gm", "wm", "csf"):
        pure = subject.fraction(name) >= 0.98
        assert unbiased[pure].mean() == pytest.approx(truth["intensities"][name], rel=0.03)
        assert unbiased[pure].std() > 0  # texture is there
    assert truth["bias_field"].std() > 0.01


def test_lesion_masks_are_where_the_lesion_intensities_are() -> None:
    subject = _subject(11, lesions=("tumour", "infarct"))
    intensities = {name: 0.0 for name in S.TISSUES}
    intensities.update(necrosis=1.0, infarct=2.0)
    _, truth = S.render_image(
        subject, np.random.default_rng(0), intensities=intensities, snr=np.inf, **FLAT
    )
    clean = truth["noise_free"]
    for name, value in (("necrosis", 1.0), ("infarct", 2.0)):
        mask = subject.lesion_masks[name]
        assert mask.sum() > 0
        assert np.all(clean[mask] >= 0.5 * value)  # >= half a voxel of the lesion
        assert np.all(subject.labels[mask] == S.LABELS[name])
    assert np.all(
        clean[~(subject.lesion_masks["necrosis"] | subject.lesion_masks["infarct"])] < 2.0
    )
    tumour = subject.lesion_masks["tumour"]
    assert (tumour >= subject.lesion_masks["necrosis"]).all()
    assert not (tumour & subject.lesion_masks["oedema"]).any()
    assert (subject.brain_mask >= tumour).all()


def test_head_contains_brain_and_the_background_is_dark() -> None:
    subject = _subject(6)
    assert (subject.head_mask >= subject.brain_mask).all()
    assert subject.head_mask.sum() > 1.2 * subject.brain_mask.sum()  # skull and scalp
    image, truth = S.render_image(subject, np.random.default_rng(0), contrast="t1", snr=30.0)
    air = ~subject.head_mask
    assert image[air].mean() < 0.1 * image[subject.brain_mask].mean()
    # T1: scalp fat is bright, cortical bone dark
    assert truth["intensities"]["scalp"] > truth["intensities"]["gm"]
    assert truth["intensities"]["skull"] < 0.1 * truth["intensities"]["wm"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_default_deformations_are_smooth_and_do_not_fold(seed: int) -> None:
    subject = _subject(seed, lesions=())
    det = S.deformation_jacobian_determinant(subject)
    assert det.min() > 0.3
    assert det.max() < 2.5
    # smooth: neighbouring voxels' template points are about one (scaled) voxel apart
    step = np.diff(subject.template_vox, axis=1) / COARSE_MM
    assert np.abs(step[0]).max() < 1.6 and np.abs(step[0]).min() > 0.4


def test_undeformed_jacobian_is_one() -> None:
    subject = _subject(0, lesions=(), deform="none")
    assert np.allclose(S.deformation_jacobian_determinant(subject), 1.0, atol=1e-4)


@pytest.mark.parametrize(
    ("contrast", "order"),
    [
        ("t1", ("wm", "gm", "csf")),
        ("t2", ("csf", "gm", "wm")),
        ("pd", ("csf", "gm", "wm")),
        ("flair", ("wm", "csf")),  # GM vs WM is a weak contrast on FLAIR: not asserted
        ("flair", ("gm", "csf")),
    ],
)
def test_contrast_presets_order_the_tissues(contrast: str, order: tuple[str, ...]) -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        intensity, sequence = S.draw_contrast(rng, contrast)
        values = [intensity[name] for name in order]
        assert values == sorted(values, reverse=True), (contrast, intensity, sequence)
        assert max(intensity[k] for k in ("gm", "wm", "csf")) == pytest.approx(1.0)
    if contrast == "flair":  # oedema bright against normal white matter, CSF nulled
        assert intensity["oedema"] > intensity["wm"] > 4 * intensity["csf"]


def test_random_contrast_draws_every_tissue_in_unit_range() -> None:
    rng = np.random.default_rng(0)
    draws = np.array([list(S.draw_contrast(rng, "random")[0].values()) for _ in range(100)])
    assert draws.min() >= 0 and np.isfinite(draws).all()
    orders = {tuple(np.argsort(row[:3])) for row in draws}
    assert len(orders) == 6  # every ordering of GM/WM/CSF occurs


@pytest.mark.parametrize("snr", [10.0, 30.0])
def test_noise_matches_the_requested_snr(snr: float) -> None:
    subject = _subject(8, lesions=())
    image, truth = S.render_image(subject, np.random.default_rng(3), snr=snr, **FLAT)
    sigma = S.snr_reference(truth["intensities"]) / snr
    assert truth["noise_sigma"] == pytest.approx(sigma)
    # in air the magnitude is Rayleigh: mean sigma * sqrt(pi / 2)
    air = subject.stack().sum(-1) == 0
    assert image[air].mean() / np.sqrt(np.pi / 2) == pytest.approx(sigma, rel=0.03)
    # in flat white matter (local SNR ~ 1.5 snr) the Rician std is close to sigma
    wm = subject.fractions["wm"] >= 0.999
    measured = S.snr_reference(truth["intensities"]) / image[wm].std()
    assert measured == pytest.approx(snr, rel=0.06)


def _band_power(image: np.ndarray, axis: int) -> float:
    """Power at high frequency (> 0.3 cycles/voxel) along ``axis``, ~0 (< 0.03) elsewhere."""
    # a Hann window so the patch's edges do not leak broadband power
    window = np.ones(image.shape)
    for dim, n in enumerate(image.shape):
        shape = [1, 1, 1]
        shape[dim] = n
        window = window * np.hanning(n).reshape(shape)
    power = np.abs(np.fft.fftn((image - image.mean()) * window)) ** 2
    freqs = np.meshgrid(*[np.abs(np.fft.fftfreq(n)) for n in image.shape], indexing="ij")
    band = freqs[axis] > 0.3
    for other in range(3):
        if other != axis:
            band &= freqs[other] < 0.03
    return float(power[band].sum())


def test_thick_slices_remove_high_frequencies_along_the_slice_axis_only() -> None:
    params = S.draw_subject_params(np.random.default_rng(2), lesions=())
    centre = np.round(S.brain_centre_voxel(params)).astype(int)
    region = S.build_subject(params, region_start=centre - 24, region_shape=(48, 48, 48))
    _, sharp = S.render_image(region, np.random.default_rng(0), snr=np.inf)
    _, thick = S.render_image(region, np.random.default_rng(0), snr=np.inf, slice_thickness_mm=4.0)
    assert np.array_equal(sharp["clean_hr"], thick["clean_hr"])
    a, b = sharp["noise_free"], thick["noise_free"]
    assert _band_power(b, 2) < 0.1 * _band_power(a, 2)
    assert _band_power(b, 0) == pytest.approx(_band_power(a, 0), rel=0.2)
    assert _band_power(b, 1) == pytest.approx(_band_power(a, 1), rel=0.2)


def test_draw_patch_renders_the_requested_region_around_a_lesion() -> None:
    image, truth, subject = S.draw_patch(
        np.random.default_rng(0), (32, 28, 24), lesions=("tumour",), where="lesion"
    )
    assert image.shape == (32, 28, 24) == subject.shape == truth["noise_free"].shape
    assert image.dtype == np.float32
    assert subject.lesion_masks["tumour"].any()
    again, _, _ = S.draw_patch(
        np.random.default_rng(0), (32, 28, 24), lesions=("tumour",), where="lesion"
    )
    assert np.array_equal(image, again)
    image_b, _, subject_b = S.draw_patch(np.random.default_rng(1), (16, 16, 16))
    assert subject_b.brain_mask.any() and image_b.shape == (16, 16, 16)


def test_crop_shape_is_centred_on_the_brain_and_padded_with_air() -> None:
    subject = _subject(0, shape=(80, 90, 70))  # larger than the 3 mm field of view
    assert subject.shape == (80, 90, 70)
    assert subject.fractions["gm"][0].sum() == 0 and subject.fractions["gm"][-1].sum() == 0
    assert subject.brain_mask[30:50, 35:55, 25:45].mean() > 0.5


def test_bad_arguments_are_refused_in_words() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="unknown lesions"):
        S.draw_subject_params(rng, lesions=("glioma",))
    with pytest.raises(InputError, match="contrast"):
        S.draw_contrast(rng, "t3")
    with pytest.raises(InputError, match="voxel_mm"):
        S.draw_subject_params(rng, voxel_mm=0.0)
    with pytest.raises(TypeError, match="Generator"):
        S.draw_subject_params(0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="lesion"):
        S.draw_patch(rng, (8, 8, 8), lesions=(), where="lesion")


def test_bspline_fields_have_unit_std_and_regions_match() -> None:
    lattice = Lattice.covering((0, 0, 0), (60, 60, 60), 10.0)
    coef = random_coefficients(np.random.default_rng(0), lattice, 300)
    axes = [np.linspace(0, 60, 13)] * 3
    field = evaluate_field(coef, lattice, axes)
    assert field.std() == pytest.approx(1.0, rel=0.05)
    part = evaluate_field(coef[:3], lattice, [axes[0][2:7], axes[1][4:9], axes[2][:5]])
    assert np.allclose(part, field[:3, 2:7, 4:9, :5], atol=1e-5)


@pytest.mark.slow
def test_a_whole_1mm_subject_renders_with_truth() -> None:
    subject = S.draw_subject(np.random.default_rng(0), lesions=("tumour", "infarct"))
    assert subject.shape == (197, 233, 189)
    image, truth = S.render_image(subject, np.random.default_rng(0), contrast="flair")
    assert image.shape == subject.shape and np.isfinite(image).all()
    assert truth["noise_free"].shape == subject.shape
    assert S.deformation_jacobian_determinant(subject).min() > 0
