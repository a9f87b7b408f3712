"""The GPU profile's bookkeeping, on kernel names an H100 profile of the ``base`` step reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.train_gpu_profile import kind_of

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "kernel, kind",
    [
        (
            "cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x64_1x4x1_cga1x1x1_kernel0_0",
            "attention",
        ),
        ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float, float, float>", "attention"),
        ("sm80_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize64x64x8_stage3_warpsize1x4x1_ffma_aligna4", "matmul"),
        ("void cutlass::Kernel2<cutlass_80_simt_sgemm_128x256_8x4_nt_align1>", "matmul"),
        ("void at::native::indexFuncLargeIndex<c10::BFloat16, long, unsigned int, 2, 2, -2, true>", "gather_scatter"),
        ("void at::native::vectorized_gather_kernel<16, long>(char*, char*, long*, int, long)", "gather_scatter"),
        ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float, false>", "norm"),
        ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<c10::BFloat16>>", "norm"),
        (
            "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata<4>>",
            "optimizer",
        ),
        ("Memcpy HtoD (Pageable -> Device)", "copy"),
        ("void at::native::vectorized_elementwise_kernel<8, at::native::bfloat16_copy_kernel_cuda>", "copy"),
        (
            "void at::native::vectorized_elementwise_kernel<4, at::native::BUnaryFunctor<float, float, float>>",
            "elementwise/other",
        ),
    ],
)
def test_kernels_are_sorted_into_kinds(kernel, kind):
    assert kind_of(kernel) == kind


@pytest.mark.parametrize(
    "override, message",
    [
        ("dropout", "expected 'key.sub=value'"),
        ("gnn_impl=sparse", "gnn_impl: expected one of 'pyg', 'dense', 'gather'; got 'sparse'"),
    ],
)
def test_bad_overrides_fail_before_any_gpu_work(override, message):
    done = subprocess.run(
        [sys.executable, "benchmarks/train_gpu_profile.py", "--set", override], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 2 and message in done.stderr and not done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report without a GPU")
def test_without_a_gpu_it_reports_the_skip_as_json():
    done = subprocess.run(
        [sys.executable, "benchmarks/train_gpu_profile.py"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == {"benchmark": "train_gpu_profile", "skipped": "needs a CUDA GPU; none is visible"}
