"""Every extraction backend ranks like the fp32 reference; chunked top-k equals the evaluation's top-k.

The fast checks run the real bundled MiniLM (a random tiny encoder would say
nothing about how reduced precision treats trained weights) on a handful of
sentences against 40 hand-written skills; the RP@5 guard on the real
TECH/HOUSE validation sets is marked slow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_esco_csv
from skillgen.common.paths import default_benchmark_dir, default_esco_path
from skilltrain.evaluation.metrics import top_k_indices
from skilltrain.extraction.backends import check_backend
from skilltrain.extraction.extractor import SkillExtractor
from skilltrain.ranking import top_k_chunked

CPU_BACKENDS = ("torch-bf16", "onnx-fp32")
SKILLS = [
    ("Python (computer programming)", "write Python code for data pipelines"),
    ("SQL", "query relational databases with SQL"),
    ("operate forklift", "drive a forklift truck in the warehouse"),
    ("bake pastry", "bake croissants and pastries every morning"),
    ("perform welding inspection", "inspect welding seams for defects"),
    ("manage payroll", "prepare the monthly payroll for 300 staff"),
    ("care for the elderly", "look after elderly residents in a care home"),
    ("speak German", "fluent German is required"),
    ("negotiate with suppliers", "negotiate prices and terms with our suppliers"),
    ("install electrical wiring", "install electrical wiring in new buildings"),
    ("teach primary school pupils", "teach maths to primary school children"),
    ("drive heavy goods vehicles", "hold a licence to drive lorries across Europe"),
    ("audit financial statements", "audit the annual financial statements of clients"),
    ("use Microsoft Excel", "build reports in Excel spreadsheets"),
    ("repair hydraulic systems", "repair hydraulic pumps and cylinders"),
    ("design marketing campaigns", "plan and design online marketing campaigns"),
    ("clean rooms", "clean and disinfect hotel rooms"),
    ("manage construction projects", "coordinate construction sites and subcontractors"),
    ("analyse sales data", "analyse sales figures to spot trends"),
    ("monitor network security", "watch the network for intrusions and attacks"),
    ("prepare tax returns", "file tax returns for small businesses"),
    ("cook meals", "cook lunch for 200 guests in the canteen"),
    ("sell insurance products", "sell car and home insurance to customers"),
    ("assemble furniture", "assemble flat-pack furniture for customers"),
    ("test software", "test new software releases before launch"),
    ("handle incoming calls", "answer incoming phone calls at reception"),
    ("administer medication", "give patients their prescribed medicines"),
    ("use AutoCAD", "draw technical plans in AutoCAD"),
    ("manage Kubernetes clusters", "run our services on Kubernetes and Docker"),
    ("write technical documentation", "write user manuals and technical documents"),
    ("train new employees", "onboard and train new colleagues"),
    ("plan delivery routes", "plan the routes of our delivery vans"),
    ("maintain production machinery", "maintain the machines on the production line"),
    ("speak French", "good French is a plus"),
    ("provide customer service", "help customers with their questions and complaints"),
    ("operate cash register", "work the till and handle cash payments"),
    ("lay bricks", "build walls by laying bricks"),
    ("prune trees", "prune and fell trees in parks"),
    ("translate documents", "translate contracts from English into Spanish"),
    ("perform laboratory tests", "run blood tests in the hospital laboratory"),
]


@pytest.fixture(scope="module")
def real_extractors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SkillExtractor]:
    """The bundled MiniLM on every CPU backend, one shared index/graph cache."""
    tmp = tmp_path_factory.mktemp("backends")
    rows = [(f"http://example.org/skill/{i}", label, "", "skill/competence", "", "") for i, (label, _) in enumerate(SKILLS)]
    esco = write_esco_csv(tmp / "skills.csv", rows)
    return {
        backend: SkillExtractor.from_pretrained(None, esco, backend=backend, device="cpu", cache_dir=tmp / "cache")
        for backend in ("torch-fp32",) + CPU_BACKENDS
    }


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backend_ranks_like_fp32(real_extractors: dict[str, SkillExtractor], backend: str):
    sentences = [s for _, s in SKILLS]
    reference, fast = real_extractors["torch-fp32"], real_extractors[backend]
    assert fast.backend == backend
    cosine = (reference.encode(sentences) * fast.encode(sentences)).sum(axis=1)
    assert cosine.min() > 0.99, cosine.min()
    ref_top, _ = reference.rank(sentences, top_k=5)
    fast_top, _ = fast.rank(sentences, top_k=5)
    assert (ref_top[:, 0] == np.arange(len(SKILLS))).mean() >= 0.9  # the sample is easy, so agreement means something
    assert (fast_top[:, 0] == ref_top[:, 0]).mean() >= 0.95


def test_onnx_without_onnxruntime_falls_back_with_a_note(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the 'fast' extra were not installed
    assert check_backend("onnx-fp32", torch.device("cpu")) == "torch-fp32"
    assert "onnxruntime" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown backend"):
        check_backend("onnx-int4", torch.device("cpu"))


def test_gpu_backend_code_path_runs_on_cpu(tiny_encoder_dir: Path, esco_csv: Path, tmp_path: Path):
    """The GPU default (fp16 weights, fp16 scores on cuda) is exercised here on CPU: same code, other device."""
    reference = SkillExtractor.from_pretrained(tiny_encoder_dir, esco_csv, backend="torch-fp32", cache_dir=tmp_path)
    half = SkillExtractor.from_pretrained(tiny_encoder_dir, esco_csv, backend="torch-fp16", device="cpu", batch_size=512, cache_dir=tmp_path)
    sentences = ["operate welding systems", "teach pastry", "payroll audits and kubernetes", "sales"]
    assert half.encoder.model.transformer.dtype == torch.float16
    assert ((reference.encode(sentences) * half.encode(sentences)).sum(axis=1) > 0.99).all()


def test_chunked_top_k_equals_evaluation_top_k():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((300, 16)).astype(np.float32)
    matrix[7] = matrix[3]  # exact ties, resolved to the lower index like top_k_indices
    matrix[150:160] = matrix[20]
    queries = np.concatenate([rng.standard_normal((50, 16)), matrix[[3, 20, 20]]]).astype(np.float32)
    for k, chunk in ((1, 7), (5, 16), (12, 1024)):
        idx, scores = top_k_chunked(torch.from_numpy(queries), torch.from_numpy(matrix), k, chunk=chunk)
        expected = top_k_indices(queries @ matrix.T, k)
        assert (idx.numpy() == expected).all()
        assert np.allclose(scores.numpy(), np.take_along_axis(queries @ matrix.T, expected, axis=1), atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not default_esco_path().exists(), reason="ESCO data not available")
def test_every_backend_keeps_rp_at_5_on_validation():
    """The quality guard behind the default: RP@5 on TECH/HOUSE validation within 0.3 of torch-fp32.

    Cheap after the first run: the 13,896 labels are encoded once in fp32 and
    cached; each backend then encodes only the ~500 validation sentences.
    """
    from skilltrain.extraction.quality import MAX_RP5_LOSS, rp_at_5

    esco, bench = default_esco_path(), default_benchmark_dir()
    scores = {
        backend: rp_at_5(SkillExtractor.from_pretrained(None, esco, backend=backend, device="cpu"), "validation", directory=bench)
        for backend in ("torch-fp32",) + CPU_BACKENDS
    }
    for backend in CPU_BACKENDS:
        for name, reference in scores["torch-fp32"].items():
            assert scores[backend][name] >= reference - MAX_RP5_LOSS, (backend, name, scores)
