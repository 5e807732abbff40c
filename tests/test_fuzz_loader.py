"""Fuzzing the loader with hypothesis (fixed seed, bounded budget; the long run is
``python benchmarks/fuzz_loader.py --minutes 10``).

Mutated PNG, JPEG and DICOM files (every DICOM encoding the app decodes) must give only the
documented errors: no other exception, no hang (each call is timed, and a C-level hang ends
the run through faulthandler instead of blocking CI), and bounded memory (traced allocations
per call stay under a bound set by MAX_PIXELS, which the loader checks before decoding).
"""

from __future__ import annotations

import faulthandler
import functools
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop.core import imaging
from desktop.core.errors import CorruptImageError, ImageLoadError
from tests.hostile import INTERESTING, MUTATION_KINDS, Mutation, apply_mutations, valid_samples

#: A call taking longer than this is a hang (a normal one takes milliseconds).
HANG_S = 15.0
#: The pixel limit during fuzzing, and the traced memory one call may use.
FUZZ_MAX_PIXELS = 2_000_000
MEMORY_BOUND = 24 * FUZZ_MAX_PIXELS + 16 * 2**20  # ~ values + pixels + decode buffers + slack

mutations = st.tuples(
    st.sampled_from(MUTATION_KINDS),
    st.floats(0.0, 1.0, exclude_max=True, allow_nan=False),
    st.one_of(
        st.sampled_from(INTERESTING),
        st.integers(0, 2**32 - 1),
        st.binary(min_size=1, max_size=24),
    ),
)

FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.cache
def samples() -> dict[str, bytes]:
    return valid_samples()


@pytest.fixture(autouse=True)
def _guards(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(imaging, "MAX_PIXELS", FUZZ_MAX_PIXELS)
    # A hang inside C code cannot be interrupted: dump the stacks and end the run instead.
    faulthandler.dump_traceback_later(600, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def check_one(name: str, ops: list[Mutation]) -> None:
    data = apply_mutations(samples()[name], ops)
    label = f"fuzz_{name}"
    error: ImageLoadError | None = None
    tracemalloc.start()
    start = time.perf_counter()
    try:
        imaging.load_xray(data, name=label)
    except ImageLoadError as exc:  # anything else fails the test
        error = exc
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if error is not None:
        assert label in str(error)
        assert error.reason
    assert elapsed < HANG_S, f"{name} {ops}: {elapsed:.1f} s"
    assert peak < MEMORY_BOUND, f"{name} {ops}: {peak / 2**20:.0f} MiB traced"


@settings(FUZZ_SETTINGS, max_examples=300)
@given(name=st.sampled_from(["valid.png", "valid16.png"]), ops=st.lists(mutations, min_size=1, max_size=5))
def test_fuzz_png(name: str, ops: list[Mutation]) -> None:
    check_one(name, ops)


@settings(FUZZ_SETTINGS, max_examples=200)
@given(ops=st.lists(mutations, min_size=1, max_size=5))
def test_fuzz_jpeg(ops: list[Mutation]) -> None:
    check_one("valid.jpg", ops)


DICOM_SEEDS = sorted(n for n in valid_samples() if n.endswith(".dcm"))


@settings(FUZZ_SETTINGS, max_examples=800)
@given(name=st.sampled_from(DICOM_SEEDS), ops=st.lists(mutations, min_size=1, max_size=5))
def test_fuzz_dicom(name: str, ops: list[Mutation]) -> None:
    check_one(name, ops)


def test_fuzz_seeds_cover_every_decoder() -> None:
    tss = {imaging.load_xray(d).metadata.transfer_syntax for n, d in samples().items() if n.endswith(".dcm")}
    expected = {
        "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.50",
    }
    assert expected <= tss
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return
    assert "1.2.840.10008.1.2.4.70" in tss  # JPEG Lossless through python-gdcm


@pytest.mark.parametrize(
    ("name", "ops"),
    [
        # Regressions found by benchmarks/fuzz_loader.py:
        # CharLS spent ~30 s on a JPEG-LS frame cut before its end marker.
        ("valid_jls.dcm", [("insert", 0.9876334722769882, b"\xee\xa3")]),
        # pylibjpeg-rle panicked (a Rust BaseException) on an RLE segment one byte too long.
        ("valid_mono1_rle.dcm", [("dup", 0.6162528677178152, 1)]),
    ],
)
def test_fuzz_regressions(name: str, ops: list[Mutation]) -> None:
    if name not in samples():
        pytest.skip(f"{name} needs python-gdcm to be generated")
    check_one(name, ops)


def test_gdcm_never_sees_a_lossless_jpeg_without_huffman_table() -> None:
    """The crash input: the DHT marker of the JPEG Lossless frame overwritten."""
    data = samples().get("valid_jpll.dcm")
    if data is None:
        pytest.skip("python-gdcm not installed")
    pos = data.find(b"\xff\xc4")
    broken = data[:pos] + b"\x00\x00" + data[pos + 2 :]
    with pytest.raises(CorruptImageError, match=r"damaged JPEG Lossless pixel data"):
        imaging.load_xray(broken, name="nodht.dcm")
