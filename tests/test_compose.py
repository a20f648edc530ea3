"""Compositing: the blend is the float32 definition to the bit, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from streammatte.compose import blend


def _definition(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    out = bg.astype(np.float32)
    out += (fg.astype(np.float32) - out) * alpha[..., None]
    result: np.ndarray = np.clip(out + np.float32(0.5), 0, 255).astype(np.uint8)
    return result


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (96, 128)])
def test_blend_is_the_float32_definition_bit_for_bit(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    fg = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    alpha = rng.random(shape, dtype=np.float32)
    alpha.flat[::3] = 0.5  # exact ties: an odd fg − bg lands on .5
    alpha.flat[1::5] = 0.0
    alpha.flat[2::7] = 1.0
    np.testing.assert_array_equal(blend(fg, bg, alpha), _definition(fg, bg, alpha))


def test_blend_rounds_ties_up_and_keeps_the_ends_exact() -> None:
    fg = np.array([[[3, 255, 0]]], np.uint8)
    bg = np.array([[[0, 0, 255]]], np.uint8)
    assert blend(fg, bg, np.array([[0.5]], np.float32)).tolist() == [[[2, 128, 128]]]
    assert blend(fg, bg, np.array([[1.0]], np.float32)).tolist() == fg.tolist()
    assert blend(fg, bg, np.array([[0.0]], np.float32)).tolist() == bg.tolist()


def test_blend_takes_a_strided_alpha() -> None:
    rng = np.random.default_rng(3)
    fg = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    wide = rng.random((20, 60), dtype=np.float32)
    np.testing.assert_array_equal(blend(fg, bg, wide[:, ::2]), _definition(fg, bg, wide[:, ::2]))
